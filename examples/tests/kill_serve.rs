//! `sprinters serve` killed with SIGKILL, again and again, while jobs
//! arrive: the real binary with the file store, the AWS emulator (moto,
//! started by `scripts/test`) and the GitHub stand-in in this process.
//! Jobs are sent as signed webhooks, one after the other; at random points
//! of that stream (seeded, `SEED=...` replays) the server is killed and
//! started again; a delivery it did not answer is sent again, as GitHub
//! redelivers. Afterwards, against the emulator and the store: every job
//! launched exactly once (the job tag on the instances), nothing left
//! running, and the store opens with every job it acknowledged, cleaned.
//!
//! `SPRINTERS_KILL_JOBS` and `SPRINTERS_KILLS` size it (scripts/soak runs
//! it larger).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use sprinters_aws::AwsClientConfig;
use sprinters_core::domain::{AccountId, JobId, JobKey, Region, RunAttempt};
use sprinters_core::job::JobState;
use sprinters_core::ports::{Credentials, JobStore};
use sprinters_core::vault::{CredentialVault, StoredAccessKey};
use sprinters_github::testing::{
    GithubStandIn, TEST_APP_PRIVATE_KEY_PEM, TEST_APP_PUBLIC_KEY_PEM, WorkflowJobWebhook,
};
use sprinters_github::webhook::sign;
use sprinters_store::{FileJobStore, MasterKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ACCOUNT: &str = "123456789012";
const SECRET: &str = "kill-test-webhook-secret";

fn endpoint() -> String {
    std::env::var("SPRINTERS_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!("SPRINTERS_TEST_AWS_ENDPOINT is not set: run scripts/test, which starts the AWS emulator")
    })
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
        .unwrap_or(default)
}

fn key() -> Credentials {
    Credentials {
        access_key_id: "AKIAKILLTESTEXAMPLE1".to_owned(),
        secret_access_key: SecretString::from("kill-test-secret".to_owned()),
        session_token: None,
        expires_at: None,
    }
}

/// The `serve` process and how to start it again.
struct Server {
    config: PathBuf,
    log: PathBuf,
    addr: SocketAddr,
    child: Option<Child>,
    starts: u32,
}

impl Server {
    async fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sprinters"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .env(
                "RUST_LOG",
                std::env::var("SERVE_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.starts += 1;
        // Ready once it answers; a start that fails is in the log.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut s) = tokio::net::TcpStream::connect(self.addr).await {
                let _ = s
                    .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .await;
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer).await;
                if answer.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "serve exited ({status}) at start {}:\n{}",
                    self.starts,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "serve did not become ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts it again if it died; otherwise gives it a moment.
    async fn start_if_dead(&mut self) {
        let dead = match self.child.as_mut() {
            None => true,
            Some(child) => child.try_wait().unwrap().is_some(),
        };
        if dead {
            self.child = None;
            self.start().await;
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(&mut self) {
        self.kill_now();
    }

    fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            Command::new("kill").args(["-TERM", &pid]).status().unwrap();
            let status = child.wait().unwrap();
            assert!(status.success(), "SIGTERM drains and exits 0: {status}");
        }
    }
}

/// A failed test must not leave its server running.
impl Drop for Server {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// Sends one signed delivery: `Ok(true)` when acknowledged, `Ok(false)`
/// when the server did not answer it (down, or killed while handling it),
/// `Err` with the answer when it refused it.
async fn deliver(addr: SocketAddr, id: &str, body: &[u8]) -> Result<bool, String> {
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return Ok(false);
    };
    let head = format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-GitHub-Event: workflow_job\r\n\
         X-GitHub-Delivery: {id}\r\nX-Hub-Signature-256: {}\r\nContent-Length: {}\r\n\r\n",
        sign(&SecretString::from(SECRET.to_owned()), body),
        body.len()
    );
    if stream.write_all(head.as_bytes()).await.is_err() || stream.write_all(body).await.is_err() {
        return Ok(false);
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    match answer.split(' ').nth(1) {
        Some(status) if status.starts_with('2') => Ok(true),
        Some(status) if status.starts_with('5') || status.is_empty() => {
            eprintln!("delivery {id} not taken in: {answer}");
            Ok(false)
        }
        Some(_) => Err(format!("delivery {id} was refused: {answer}")),
        None => Ok(false),
    }
}

/// This run's instances in the emulator: job → (instance id, runner, alive).
async fn instances(
    ec2: &aws_sdk_ec2::Client,
    controller: &str,
) -> BTreeMap<u64, Vec<(String, String, bool)>> {
    for _ in 0..10 {
        if let Some(seen) = instances_once(ec2, controller).await {
            return seen;
        }
    }
    panic!("the emulator did not answer DescribeInstances ten times in a row");
}

async fn instances_once(
    ec2: &aws_sdk_ec2::Client,
    controller: &str,
) -> Option<BTreeMap<u64, Vec<(String, String, bool)>>> {
    let filter = aws_sdk_ec2::types::Filter::builder()
        .name("tag:sprinters:controller")
        .values(controller)
        .build();
    // Every page: the emulator, like EC2, answers 100 reservations at most.
    let mut pages = ec2
        .describe_instances()
        .filters(filter)
        .into_paginator()
        .send();
    let mut reservations = Vec::new();
    while let Some(page) = pages.next().await {
        match page {
            Ok(page) => reservations.extend(page.reservations().iter().cloned()),
            // The emulator is one Python process; under load it may time
            // out. Asking again later is what the caller does anyway.
            Err(e) => {
                println!("asking the emulator failed ({e}); asking again");
                return None;
            }
        }
    }
    let mut by_job: BTreeMap<u64, Vec<(String, String, bool)>> = BTreeMap::new();
    for instance in reservations.iter().flat_map(|r| r.instances()) {
        let tag = |k: &str| {
            instance
                .tags()
                .iter()
                .find(|t| t.key() == Some(k))
                .and_then(|t| t.value())
                .unwrap_or_default()
                .to_owned()
        };
        let alive = !matches!(
            instance.state().and_then(|s| s.name()).map(|n| n.as_str()),
            Some("terminated" | "shutting-down")
        );
        by_job
            .entry(tag("sprinters:job").parse().unwrap())
            .or_default()
            .push((
                instance.instance_id().unwrap().to_owned(),
                tag("sprinters:runner"),
                alive,
            ));
    }
    Some(by_job)
}

fn write_config(dir: &Path, addr: SocketAddr, controller: &str, api: &str, ami: &str) -> PathBuf {
    let data = dir.join("data");
    std::fs::write(dir.join("webhook-secret"), SECRET).unwrap();
    std::fs::write(dir.join("app.pem"), TEST_APP_PRIVATE_KEY_PEM).unwrap();
    let text = format!(
        r#"
[server]
listen = "{addr}"
data_dir = "{data}"
controller_id = "{controller}"

[github]
app_id = 777
private_key_file = "{dir}/app.pem"
webhook_secret_file = "{dir}/webhook-secret"
api_url = "{api}"

[aws]
endpoint_url = "{aws}"
[aws.images."ubuntu-24.04"]
us-east-1 = "{ami}"

[[accounts]]
github_owner = "octo-org"
aws_account_id = "{ACCOUNT}"
credentials = "vault"

[limits]
idle_grace_seconds = 2
reconcile_interval_seconds = 1
"#,
        data = data.display(),
        dir = dir.display(),
        aws = endpoint(),
    );
    let path = dir.join("sprinters.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_serve_launches_every_job_exactly_once_and_leaves_nothing_running() {
    let jobs = env_number("SPRINTERS_KILL_JOBS", 240);
    let kills = env_number("SPRINTERS_KILLS", 20);
    let seed = env_number("SEED", fastrand::u64(..));
    println!("SEED={seed} ({jobs} jobs, {kills} kills)");
    let mut rng = fastrand::Rng::with_seed(seed);

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    sprinters_examples::data_dir::create(&data).unwrap();
    let master = MasterKey::create_file(&data.join("master.key")).unwrap();
    {
        let (store, _) = FileJobStore::open_with_key(&data, &master).unwrap();
        let k = key();
        store
            .put_access_key(
                AccountId::parse(ACCOUNT).unwrap(),
                StoredAccessKey {
                    access_key_id: k.access_key_id,
                    secret_access_key: k.secret_access_key,
                },
            )
            .await
            .unwrap();
    }
    let ec2 = AwsClientConfig::new()
        .endpoint_url(endpoint())
        .unwrap()
        .ec2(&Region::us_east_1(), &key());
    let images = ec2
        .describe_images()
        .owners("099720109477")
        .send()
        .await
        .unwrap();
    let ami = images.images()[0].image_id().unwrap().to_owned();
    let github = GithubStandIn::start(777, TEST_APP_PUBLIC_KEY_PEM.as_bytes())
        .await
        .unwrap();
    let addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let controller = format!("kill-{seed:016x}");
    let mut server = Server {
        config: write_config(dir.path(), addr, &controller, &github.uri(), &ami),
        log: dir.path().join("serve.log"),
        addr,
        child: None,
        starts: 0,
    };
    server.start().await;

    let first = 1 + (seed % 1000) * 1_000_000;
    let webhook = |n: u64| WorkflowJobWebhook {
        job_id: first + n,
        run_id: 9_000_000 + first + n,
        run_attempt: 1,
        repository: "octo-org/kill".to_owned(),
        installation_id: 4242,
        labels: vec![
            "sprinters:aws:ubuntu-24.04".to_owned(),
            format!("{}-1-build", 9_000_000 + first + n),
        ],
        name: format!("job {n}"),
    };
    // Kill points, counted in deliveries sent: one at a random place in
    // each of `kills` equal stretches of the run.
    let total_deliveries = jobs * 3;
    let stretch = (total_deliveries / kills.max(1)).max(1);
    let mut kill_at: VecDeque<u64> = (0..kills)
        .map(|i| i * stretch + rng.u64(1..=stretch))
        .collect();
    let mut pending: VecDeque<(String, Vec<u8>)> = VecDeque::new();
    let mut started = vec![false; jobs as usize];
    let mut next_job = 0;
    let mut sent = 0u64;
    let mut killed = 0;
    let mut acknowledged_queued = Vec::new();
    let run_started = Instant::now();
    // Generous: a hung run fails rather than blocking CI; a soak scales it.
    let deadline = Instant::now() + Duration::from_secs(300 + jobs * 2);
    while next_job < jobs || !pending.is_empty() || started.iter().any(|s| !s) {
        assert!(Instant::now() < deadline, "the run did not finish");
        if next_job < jobs && pending.len() < 8 {
            pending.push_back((
                format!("{}-queued", first + next_job),
                webhook(next_job).body("queued", None, None),
            ));
            next_job += 1;
        }
        if let Some((id, body)) = pending.front().cloned() {
            let delivered = deliver(addr, &id, &body).await.unwrap_or_else(|e| {
                panic!(
                    "{e}\nserve's log:\n{}",
                    std::fs::read_to_string(&server.log).unwrap_or_default()
                )
            });
            if delivered {
                pending.pop_front();
                if id.ends_with("-queued") {
                    acknowledged_queued.push(id.clone());
                }
                sent += 1;
                if sent.is_multiple_of(100) {
                    println!(
                        "{sent}/{total_deliveries} deliveries, {killed} kills, {:.0} s",
                        run_started.elapsed().as_secs_f64()
                    );
                }
                if kill_at.front().is_some_and(|k| *k <= sent) {
                    kill_at.pop_front();
                    server.kill();
                    killed += 1;
                    server.start().await;
                }
            } else {
                // Down or killed mid-request: it comes back; so does GitHub.
                server.start_if_dead().await;
            }
            continue;
        }
        // Nothing to send: GitHub hands each launched runner its job.
        let seen = instances(&ec2, &controller).await;
        let mut progressed = false;
        for n in 0..jobs {
            let job_id = first + n;
            if started[n as usize] {
                continue;
            }
            if let Some((_, runner, _)) = seen.get(&job_id).and_then(|v| v.first()) {
                let runner = Some((1, runner.as_str()));
                let w = webhook(n);
                pending.push_back((
                    format!("{job_id}-started"),
                    w.body("in_progress", runner, None),
                ));
                pending.push_back((
                    format!("{job_id}-done"),
                    w.body("completed", runner, Some("success")),
                ));
                started[n as usize] = true;
                progressed = true;
            }
        }
        if !progressed {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    assert_eq!(killed as u64, kills, "every planned SIGKILL happened");

    // Settle: every instance ends (completions, and the reconciler).
    let mut settle_polls = 0u32;
    let live = loop {
        let seen = instances(&ec2, &controller).await;
        let live: usize = seen
            .values()
            .flatten()
            .filter(|(_, _, alive)| *alive)
            .count();
        if live == 0 || Instant::now() > deadline {
            break (live, seen);
        }
        if settle_polls.is_multiple_of(40) {
            println!("settling: {live} instances still running");
        }
        settle_polls += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    server.stop();
    let (live, seen) = live;
    assert_eq!(live, 0, "instances left running");
    for n in 0..jobs {
        let launched = seen.get(&(first + n)).map_or(0, Vec::len);
        assert_eq!(
            launched,
            1,
            "job {} was launched {launched} times",
            first + n
        );
    }

    let (store, report) = FileJobStore::open_with_key(&data, &master).unwrap();
    assert_eq!(report.shredded, 0);
    assert_eq!(acknowledged_queued.len() as u64, jobs);
    for n in 0..jobs {
        let key = JobKey::new(JobId::new(first + n), RunAttempt::FIRST);
        let record = store
            .get_job(key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged job {key} is missing"));
        assert_eq!(record.value.state, JobState::Cleaned, "job {key}");
    }
    println!(
        "{jobs} jobs, {killed} SIGKILLs survived ({} starts); every job launched once; 0 instances left",
        server.starts
    );
}
