//! `sprinters-demo`: the whole product on one machine, with no cloud
//! account. `serve` runs in-process on loopback with the encrypted file
//! store, the GitHub stand-in and the AWS API emulator (moto); jobs arrive
//! as signed webhooks and the demo checks, against the emulator and the
//! store, that every one was served and every instance is gone.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use sprinters_aws::AwsClientConfig;
use sprinters_core::domain::{AccountId, JobId, JobKey, Region, RunAttempt};
use sprinters_core::job::{JobRecord, JobState};
use sprinters_core::observe::{EngineObserver, Launching};
use sprinters_core::ports::{Credentials, JobStore};
use sprinters_core::vault::{CredentialVault, StoredAccessKey};
use sprinters_github::testing::{
    GithubStandIn, TEST_APP_PRIVATE_KEY_PEM, TEST_APP_PUBLIC_KEY_PEM, WorkflowJobWebhook,
};
use sprinters_github::webhook::sign;
use sprinters_store::{MasterKey, SqliteJobStore, StaticKeyProvider};

use sprinters_server::config::Config;
use sprinters_server::server::ControlPlane;

/// The account the emulator acts in.
const ACCOUNT: &str = "123456789012";
const APP_ID: u64 = 424242;
const INSTALLATION: u64 = 4242;
/// The GitHub account id of `octo-org`.
const OWNER_ID: u64 = 31337;
const REPOSITORY: &str = "octo-org/demo";
/// How long the whole demo may take before it gives up.
const DEADLINE: Duration = Duration::from_secs(180);

/// What to run.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// How many jobs (one of them with a label error).
    pub jobs: usize,
    /// The AWS API emulator.
    pub aws_endpoint: String,
    /// Where the store goes (a fresh directory under the system's
    /// temporary directory by default).
    pub data_dir: Option<PathBuf>,
}

/// What a demo job is meant to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Picked up, runs a moment, succeeds (or fails: the job's own result).
    Run { fails: bool },
    /// Cancelled before any runner picked it up.
    CancelBeforePickup,
    /// Carries an invalid Sprinters label.
    LabelError,
}

#[derive(Debug, Clone)]
struct DemoJob {
    webhook: WorkflowJobWebhook,
    plan: Plan,
}

impl DemoJob {
    fn key(&self) -> JobKey {
        JobKey::new(JobId::new(self.webhook.job_id), RunAttempt::FIRST)
    }
}

/// The labels of job `n`: a mix of images, types, zones, spot and pinning.
fn demo_jobs(count: usize, first_id: u64) -> Vec<DemoJob> {
    const LABELS: [&str; 5] = [
        "sprinters:aws:ubuntu-latest",
        "sprinters:aws:ubuntu-22.04:m7i.large",
        "sprinters:aws:us-east-1b:ubuntu-24.04:c7i.xlarge",
        "sprinters:aws:ubuntu-latest:spot=auto",
        "sprinters:aws:ubuntu-24.04:t3.xlarge:temp=gp3/32",
    ];
    (0..count)
        .map(|n| {
            let job_id = first_id + n as u64;
            let run_id = first_id / 10 + n as u64;
            let plan = if n == count / 2 {
                Plan::LabelError
            } else if n % 5 == 4 {
                Plan::CancelBeforePickup
            } else {
                Plan::Run { fails: n % 7 == 6 }
            };
            let mut labels = vec![match plan {
                Plan::LabelError => "sprinters:aws:ubuntu-99.04".to_owned(),
                _ => LABELS[n % LABELS.len()].to_owned(),
            }];
            // Pinned jobs can only land on their own runner; a cancelled
            // one's runner is then a spare the engine ends after the grace.
            if n % 2 == 0 || plan == Plan::CancelBeforePickup {
                labels.push(format!("{run_id}-1-build"));
            }
            DemoJob {
                webhook: WorkflowJobWebhook {
                    job_id,
                    run_id,
                    run_attempt: 1,
                    repository: REPOSITORY.to_owned(),
                    installation_id: INSTALLATION,
                    owner_id: OWNER_ID,
                    labels,
                    name: format!("build #{}", n + 1),
                },
                plan,
            }
        })
        .collect()
}

/// When each job's webhook was sent and its launch called.
#[derive(Debug, Default)]
struct LaunchTimes {
    sent: Mutex<HashMap<JobKey, Instant>>,
    latencies: Mutex<Vec<Duration>>,
}

impl EngineObserver for LaunchTimes {
    fn launching(&self, event: &Launching) {
        if event.launch_number != 1 {
            return;
        }
        let sent = self
            .sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&event.job)
            .copied();
        if let Some(sent) = sent {
            self.latencies
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(sent.elapsed());
        }
    }
}

/// One row of the demo's table.
#[derive(Debug, Clone)]
pub struct DemoRow {
    /// The job id.
    pub job_id: u64,
    /// Its labels.
    pub labels: Vec<String>,
    /// The instance, if one was launched for it.
    pub instance_id: Option<String>,
    /// Its type.
    pub instance_type: Option<String>,
    /// Its zone.
    pub availability_zone: Option<String>,
    /// Spot capacity.
    pub spot: bool,
    /// The engine's state at the end.
    pub state: String,
    /// GitHub's conclusion.
    pub conclusion: Option<String>,
    /// The message of a rejection or failure.
    pub message: Option<String>,
    /// From the queued webhook to the last instance of it ending.
    pub duration: Option<Duration>,
}

/// What the demo saw.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// One row per job.
    pub rows: Vec<DemoRow>,
    /// Jobs sent.
    pub jobs: usize,
    /// Instances launched.
    pub launched: usize,
    /// Of them, terminated (or shutting down) in the emulator.
    pub terminated: usize,
    /// Jobs rejected for their label.
    pub rejected: usize,
    /// Jobs cancelled before pickup.
    pub cancelled: usize,
    /// Instances of this demo still alive in the emulator.
    pub orphans_left: usize,
    /// Webhook sent → `RunInstances` called, sorted.
    pub latencies: Vec<Duration>,
    /// What went wrong, if anything.
    pub problems: Vec<String>,
    /// The store's directory.
    pub data_dir: PathBuf,
}

impl DemoReport {
    /// Every job served, every instance ended, the label error recorded.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// The `q`-th percentile of the launch latencies.
    pub fn latency(&self, q: f64) -> Option<Duration> {
        if self.latencies.is_empty() {
            return None;
        }
        let rank = ((q / 100.0) * (self.latencies.len() - 1) as f64).round() as usize;
        self.latencies.get(rank).copied()
    }
}

/// Says what the emulator needs, for a missing or unreachable endpoint.
pub fn emulator_hint() -> &'static str {
    "run scripts/demo, which installs and starts the AWS API emulator (moto) and runs the demo; \
     or start one yourself: python3 -m pip install 'moto[server]==5.2.5' && moto_server -p 5000 & \
     then: sprinters-demo --aws-endpoint http://127.0.0.1:5000"
}

/// Runs the demo, telling `progress` how it goes.
pub async fn run(
    options: DemoOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<DemoReport, String> {
    reachable(&options.aws_endpoint).await?;
    let data_dir = match &options.data_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("sprinters-demo-{:08x}", fastrand::u32(..))),
    };
    sprinters_server::data_dir::create(&data_dir)?;
    let run = Setup::prepare(&options, &data_dir).await?;
    let times = Arc::new(LaunchTimes::default());
    let plane = ControlPlane::builder(run.config(&data_dir)?)
        .observer(times.clone())
        .build()
        .await?;
    let store = plane.store().jobs();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen on loopback: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on loopback: {e}"))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(plane.serve(listener, async {
        let _ = stopped.await;
    }));
    progress(&format!(
        "control plane on http://{addr} · store {} · GitHub stand-in {} · AWS emulator {}",
        data_dir.display(),
        run.github.uri(),
        options.aws_endpoint
    ));

    let first_id = 1_000_000 * u64::from(fastrand::u16(1..9999));
    let jobs = demo_jobs(options.jobs.max(1), first_id);
    let client = Client {
        addr,
        secret: run.secret.clone(),
    };
    let started = Instant::now();
    let tasks: Vec<_> = jobs
        .iter()
        .cloned()
        .enumerate()
        .map(|(n, job)| {
            let client = client.clone();
            let store = store.clone();
            let times = times.clone();
            tokio::spawn(async move {
                // A steady trickle rather than one burst: like a busy repository.
                tokio::time::sleep(Duration::from_millis(40 * n as u64)).await;
                drive(&client, store.as_ref(), &times, &job).await
            })
        })
        .collect();
    let mut problems = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    let mut pending = tasks;
    let mut done = 0;
    while !pending.is_empty() {
        ticker.tick().await;
        let mut still = Vec::new();
        for task in pending {
            if task.is_finished() {
                done += 1;
                match task.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => problems.push(e),
                    Err(e) => problems.push(format!("a job's task failed: {e}")),
                }
            } else {
                still.push(task);
            }
        }
        pending = still;
        let live = run.live_instances().await.unwrap_or(0);
        progress(&format!(
            "{done}/{} jobs through their webhooks · {live} instances alive · {:.0} s",
            jobs.len(),
            started.elapsed().as_secs_f64()
        ));
        if started.elapsed() > DEADLINE {
            problems.push("jobs did not finish within the deadline".to_owned());
            break;
        }
    }

    // Spares of cancelled jobs end after the (short) idle grace.
    let records = loop {
        let records = records(store.as_ref(), &jobs).await?;
        let settled = records.values().all(|r| {
            matches!(
                r.state,
                JobState::Cleaned | JobState::Cancelled | JobState::Rejected | JobState::Failed
            ) && r.launches.iter().all(|l| l.ended.is_some())
        });
        let live = run.live_instances().await?;
        if (settled && live == 0) || started.elapsed() > DEADLINE {
            break records;
        }
        progress(&format!(
            "waiting for {live} instances to end · {:.0} s",
            started.elapsed().as_secs_f64()
        ));
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let orphans_left = run.live_instances().await?;
    let _ = stop.send(());
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => problems.push(format!("serve: {e}")),
        Err(e) => problems.push(format!("serve: {e}")),
    }
    let mut latencies = times
        .latencies
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    latencies.sort();
    Ok(report(
        &jobs,
        &records,
        orphans_left,
        latencies,
        problems,
        data_dir,
    ))
}

fn report(
    jobs: &[DemoJob],
    records: &BTreeMap<JobKey, JobRecord>,
    orphans_left: usize,
    latencies: Vec<Duration>,
    mut problems: Vec<String>,
    data_dir: PathBuf,
) -> DemoReport {
    let mut rows = Vec::new();
    let (mut launched, mut terminated, mut rejected, mut cancelled) = (0, 0, 0, 0);
    for job in jobs {
        let Some(record) = records.get(&job.key()) else {
            problems.push(format!("job {} has no record", job.webhook.job_id));
            continue;
        };
        launched += record
            .launches
            .iter()
            .filter(|l| l.instance_id.is_some())
            .count();
        terminated += record
            .launches
            .iter()
            .filter(|l| l.instance_id.is_some() && l.ended.is_some())
            .count();
        match job.plan {
            Plan::LabelError => {
                rejected += usize::from(record.state == JobState::Rejected);
                let said = record
                    .message
                    .as_deref()
                    .is_some_and(|m| m.contains("ubuntu-99.04"));
                if record.state != JobState::Rejected || !said {
                    problems.push(format!(
                        "job {}: the label error was not recorded with its message ({:?}, {:?})",
                        job.webhook.job_id, record.state, record.message
                    ));
                }
            }
            Plan::CancelBeforePickup => {
                cancelled += 1;
                if !matches!(record.state, JobState::Cancelled | JobState::Cleaned) {
                    problems.push(format!(
                        "job {} was cancelled but is {}",
                        job.webhook.job_id,
                        record.state.as_str()
                    ));
                }
            }
            Plan::Run { .. } => {
                if record.state != JobState::Cleaned {
                    problems.push(format!(
                        "job {} was not served to the end: {}{}",
                        job.webhook.job_id,
                        record.state.as_str(),
                        record
                            .message
                            .as_deref()
                            .map(|m| format!(" ({m})"))
                            .unwrap_or_default()
                    ));
                }
            }
        }
        let launch = record
            .ran_on
            .as_ref()
            .and_then(|r| record.launch_by_runner(r))
            .or_else(|| record.launches.last());
        let ended = record
            .launches
            .iter()
            .filter_map(|l| l.ended.map(|(at, _)| at))
            .max();
        rows.push(DemoRow {
            job_id: job.webhook.job_id,
            labels: record.labels.clone(),
            instance_id: launch
                .and_then(|l| l.instance_id.as_ref())
                .map(ToString::to_string),
            instance_type: launch.map(|l| l.instance_type.to_string()),
            availability_zone: launch
                .and_then(|l| l.availability_zone.as_ref())
                .map(ToString::to_string),
            spot: launch.is_some_and(|l| l.spot),
            state: record.state.as_str().to_owned(),
            conclusion: record.conclusion.map(|c| c.as_str().to_owned()),
            message: record.message.clone(),
            duration: ended.map(|e| e.since(record.queued_at)),
        });
    }
    if orphans_left > 0 {
        problems.push(format!(
            "{orphans_left} instances of this demo are still alive in the emulator"
        ));
    }
    DemoReport {
        rows,
        jobs: jobs.len(),
        launched,
        terminated,
        rejected,
        cancelled,
        orphans_left,
        latencies,
        problems,
        data_dir,
    }
}

async fn records(
    store: &dyn JobStore,
    jobs: &[DemoJob],
) -> Result<BTreeMap<JobKey, JobRecord>, String> {
    let mut out = BTreeMap::new();
    for job in jobs {
        if let Some(record) = store
            .get_job(job.key())
            .await
            .map_err(|e| format!("store: {e}"))?
        {
            out.insert(job.key(), record.value);
        }
    }
    Ok(out)
}

/// Sends a job's webhooks as GitHub would, as the job's life goes.
async fn drive(
    client: &Client,
    store: &dyn JobStore,
    times: &LaunchTimes,
    job: &DemoJob,
) -> Result<(), String> {
    let w = &job.webhook;
    let id = w.job_id;
    times
        .sent
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(job.key(), Instant::now());
    client
        .send(&format!("{id}-queued"), &w.body("queued", None, None))
        .await?;
    match job.plan {
        Plan::LabelError => return Ok(()),
        Plan::CancelBeforePickup => {
            let body = w.body("completed", None, Some("cancelled"));
            return client.send(&format!("{id}-cancelled"), &body).await;
        }
        Plan::Run { .. } => {}
    }
    // GitHub hands the job to the runner launched for it once it is up.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (runner_id, runner_name) = loop {
        let record = store
            .get_job(job.key())
            .await
            .map_err(|e| format!("store: {e}"))?;
        let launch = record.as_ref().and_then(|r| {
            r.value
                .launches
                .iter()
                .find(|l| l.instance_id.is_some())
                .cloned()
        });
        if let Some(launch) = launch {
            break (launch.runner_id.unwrap_or(0), launch.runner_name);
        }
        if let Some(r) = &record
            && r.value.state == JobState::Failed
        {
            return Err(format!(
                "job {id}: launch failed: {}",
                r.value.message.as_deref().unwrap_or("no message")
            ));
        }
        if Instant::now() > deadline {
            return Err(format!("job {id}: no instance within 60 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let runner = Some((runner_id, runner_name.as_str()));
    client
        .send(
            &format!("{id}-started"),
            &w.body("in_progress", runner, None),
        )
        .await?;
    // The job's steps.
    tokio::time::sleep(Duration::from_millis(fastrand::u64(800..2500))).await;
    let conclusion = match job.plan {
        Plan::Run { fails: true } => "failure",
        _ => "success",
    };
    client
        .send(
            &format!("{id}-completed"),
            &w.body("completed", runner, Some(conclusion)),
        )
        .await
}

/// Signed webhook deliveries to the control plane.
#[derive(Debug, Clone)]
struct Client {
    addr: SocketAddr,
    secret: SecretString,
}

impl Client {
    async fn send(&self, delivery: &str, body: &[u8]) -> Result<(), String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connecting to the control plane: {e}"))?;
        let head = format!(
            "POST /webhooks/github HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\n\
             X-GitHub-Event: workflow_job\r\nX-GitHub-Delivery: {delivery}\r\nX-Hub-Signature-256: {}\r\n\
             Content-Length: {}\r\n\r\n",
            self.addr,
            sign(&self.secret, body),
            body.len()
        );
        stream
            .write_all(head.as_bytes())
            .await
            .and(stream.write_all(body).await)
            .map_err(|e| format!("sending webhook {delivery}: {e}"))?;
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .await
            .map_err(|e| format!("reading the answer to {delivery}: {e}"))?;
        let answer = String::from_utf8_lossy(&answer);
        let status = answer.split(' ').nth(1).unwrap_or("");
        if status.starts_with('2') {
            Ok(())
        } else {
            Err(format!(
                "webhook {delivery} was answered {status}: {}",
                answer.split("\r\n\r\n").nth(1).unwrap_or("").trim()
            ))
        }
    }
}

/// Everything outside the control plane: the keys and files of its
/// configuration, the GitHub stand-in, the emulator.
struct Setup {
    github: GithubStandIn,
    secret: SecretString,
    aws_endpoint: String,
    ami: String,
    controller_id: String,
    ec2: aws_sdk_ec2::Client,
}

fn demo_key() -> Credentials {
    Credentials {
        access_key_id: "AKIADEMOEXAMPLE00001".to_owned(),
        secret_access_key: SecretString::from("demo-secret-access-key".to_owned()),
        session_token: None,
        expires_at: None,
    }
}

fn write_secret_file(path: &Path, contents: &str) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

impl Setup {
    async fn prepare(options: &DemoOptions, data_dir: &Path) -> Result<Self, String> {
        let key_file = data_dir.join("master.key");
        let master = if key_file.exists() {
            MasterKey::from_file(&key_file).map_err(|e| format!("{}: {e}", key_file.display()))?
        } else {
            MasterKey::create_file(&key_file).map_err(|e| format!("{}: {e}", key_file.display()))?
        };
        {
            // The customer's access key, encrypted in the store's vault.
            let store = SqliteJobStore::open(data_dir, &StaticKeyProvider::new(master))
                .await
                .map_err(|e| format!("store {}: {e}", data_dir.display()))?;
            let key = demo_key();
            store
                .put_access_key(
                    sprinters_core::domain::OwnerId::new(OWNER_ID),
                    AccountId::parse(ACCOUNT).map_err(|e| e.to_string())?,
                    StoredAccessKey {
                        access_key_id: key.access_key_id,
                        secret_access_key: key.secret_access_key,
                    },
                )
                .await
                .map_err(|e| format!("storing the demo's access key: {e}"))?;
        }
        let secret = format!("demo-webhook-secret-{:016x}", fastrand::u64(..));
        write_secret_file(&data_dir.join("webhook-secret"), &secret)?;
        write_secret_file(&data_dir.join("github-app.pem"), TEST_APP_PRIVATE_KEY_PEM)?;
        let github = GithubStandIn::start(APP_ID, TEST_APP_PUBLIC_KEY_PEM.as_bytes()).await?;
        github.install("octo-org", OWNER_ID, INSTALLATION);

        let aws = AwsClientConfig::new()
            .endpoint_url(options.aws_endpoint.clone())
            .map_err(|e| e.to_string())?;
        let ec2 = aws.ec2(&Region::us_east_1(), &demo_key());
        let images = ec2
            .describe_images()
            .owners("099720109477")
            .send()
            .await
            .map_err(|e| {
                format!(
                    "the emulator at {} did not answer DescribeImages ({}); {}",
                    options.aws_endpoint,
                    aws_sdk_ec2::error::DisplayErrorContext(&e),
                    emulator_hint()
                )
            })?;
        // moto ships one Ubuntu image: every demo image runs on it.
        let ami = images
            .images()
            .iter()
            .find(|i| i.architecture().map(|a| a.as_str()) == Some("x86_64"))
            .and_then(|i| i.image_id())
            .ok_or_else(|| {
                format!(
                    "the emulator at {} has no x86_64 Ubuntu image; is it moto?",
                    options.aws_endpoint
                )
            })?
            .to_owned();
        Ok(Self {
            github,
            secret: SecretString::from(secret),
            aws_endpoint: options.aws_endpoint.clone(),
            ami,
            controller_id: format!("demo-{:08x}", fastrand::u32(..)),
            ec2,
        })
    }

    fn config(&self, data_dir: &Path) -> Result<Config, String> {
        let text = format!(
            r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{data}"
controller_id = "{controller}"

[github]
app_id = {APP_ID}
private_key_file = "{data}/github-app.pem"
webhook_secret_file = "{data}/webhook-secret"
api_url = "{api}"

[aws]
endpoint_url = "{aws}"
[aws.images."ubuntu-24.04"]
us-east-1 = "{ami}"
[aws.images."ubuntu-22.04"]
us-east-1 = "{ami}"

[[accounts]]
github_owner = "octo-org"
aws_account_id = "{ACCOUNT}"
credentials = "vault"

[limits]
# Short, so that the spare runner of a job cancelled before pickup ends
# within the demo.
idle_grace_seconds = 2
reconcile_interval_seconds = 1
"#,
            data = data_dir.display(),
            controller = self.controller_id,
            api = self.github.uri(),
            aws = self.aws_endpoint,
            ami = self.ami,
        );
        Config::parse(&text, &BTreeMap::new()).map_err(|e| format!("demo config: {e}"))
    }

    /// This demo's instances the emulator has not terminated.
    async fn live_instances(&self) -> Result<usize, String> {
        let filter = |name: &str, value: &str| {
            aws_sdk_ec2::types::Filter::builder()
                .name(name)
                .values(value)
                .build()
        };
        let found = self
            .ec2
            .describe_instances()
            .filters(filter("tag:sprinters:controller", &self.controller_id))
            .send()
            .await
            .map_err(|e| {
                format!(
                    "DescribeInstances: {}",
                    aws_sdk_ec2::error::DisplayErrorContext(&e)
                )
            })?;
        Ok(found
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| {
                !matches!(
                    i.state().and_then(|s| s.name()).map(|n| n.as_str()),
                    Some("terminated" | "shutting-down")
                )
            })
            .count())
    }
}

/// Fails with what to run when nothing listens at `endpoint`.
async fn reachable(endpoint: &str) -> Result<(), String> {
    let authority = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .map(|rest| rest.split('/').next().unwrap_or(rest))
        .ok_or_else(|| format!("--aws-endpoint {endpoint:?} is not an http:// URL"))?;
    let authority = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    match tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect(&authority),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        _ => Err(format!(
            "no AWS API emulator answers at {endpoint}: {}",
            emulator_hint()
        )),
    }
}
