//! [`ControlPlaneRig`]: `sprinters serve` as it runs for real, on a
//! loopback socket: signed webhooks over HTTP, the durable SQLite store, and
//! the real AWS SDK and octocrab clients talking to in-process stand-ins
//! for STS, EC2 and GitHub, each answering after a chosen delay.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_credential_types::provider::SharedCredentialsProvider;
use secrecy::SecretString;
use sprinters_aws::AwsClientConfig;
use sprinters_aws::testing::{AwsStandIn, STAND_IN_ACCOUNT, X64_AMI};
use sprinters_core::domain::{InstallationId, Repository, RunnerName};
use sprinters_core::ports::{CreateJitRunner, RunnerRegistry};
use sprinters_github::testing::{
    GithubStandIn, TEST_APP_PRIVATE_KEY_PEM, TEST_APP_PUBLIC_KEY_PEM, WorkflowJobWebhook,
};
use sprinters_github::webhook::sign;
use sprinters_github::{GithubApp, GithubAppConfig, GithubRegistry};
use sprinters_server::config::Config;
use sprinters_server::server::ControlPlane;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const APP_ID: u64 = 515151;
const INSTALLATION: u64 = 4242;
/// The GitHub account id of `octo-org`.
const OWNER_ID: u64 = 31337;
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/sprinters-bench";

/// The control plane and its stand-ins.
pub struct ControlPlaneRig {
    addr: SocketAddr,
    secret: SecretString,
    /// The EC2/STS stand-in.
    pub aws: AwsStandIn,
    /// The GitHub stand-in.
    pub github: GithubStandIn,
    /// The control plane's store.
    pub store: Arc<sprinters_store::SqliteJobStore>,
    next_job: AtomicU64,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), String>>>,
    dir: tempfile::TempDir,
}

impl ControlPlaneRig {
    /// Starts everything; every stand-in call takes `delay`.
    pub async fn start(delay: Duration) -> Self {
        Self::start_with(delay, "").await
    }

    /// [`ControlPlaneRig::start`] with more `[server]` settings (TOML
    /// lines, such as `header_timeout_seconds = 2`).
    pub async fn start_with(delay: Duration, server_settings: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        sprinters_server::data_dir::create(&data).unwrap();
        sprinters_store::MasterKey::create_file(&data.join("master.key")).unwrap();
        let secret = format!("bench-webhook-secret-{:016x}", fastrand::u64(..));
        std::fs::write(dir.path().join("webhook-secret"), &secret).unwrap();
        std::fs::write(dir.path().join("app.pem"), TEST_APP_PRIVATE_KEY_PEM).unwrap();
        std::fs::write(dir.path().join("external-id"), "bench-external-id").unwrap();

        let aws = AwsStandIn::start().await.unwrap();
        let github = GithubStandIn::start(APP_ID, TEST_APP_PUBLIC_KEY_PEM.as_bytes())
            .await
            .unwrap();
        github.install("octo-org", OWNER_ID, INSTALLATION);
        aws.set_delay(delay);
        github.set_delay(delay);
        let text = format!(
            r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{data}"
controller_id = "bench"
{server_settings}

[github]
app_id = {APP_ID}
private_key_file = "{dir}/app.pem"
webhook_secret_file = "{dir}/webhook-secret"
api_url = "{api}"

[aws]
endpoint_url = "{aws}"
[aws.images."ubuntu-24.04"]
us-east-1 = "{X64_AMI}"

[[accounts]]
github_owner = "octo-org"
aws_account_id = "{STAND_IN_ACCOUNT}"
role_arn = "{ROLE_ARN}"
external_id_file = "{dir}/external-id"

[limits]
max_concurrent_per_account = 100000
"#,
            data = data.display(),
            dir = dir.path().display(),
            api = github.uri(),
            aws = aws.uri(),
        );
        let config = Config::parse(&text, &BTreeMap::new()).unwrap();
        let plane = ControlPlane::builder(config)
            .platform_credentials(platform_credentials())
            .build()
            .await
            .unwrap();
        let sprinters_server::server::PlaneStore::Embedded(store) = plane.store().clone() else {
            panic!("the rig runs on the embedded store");
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(plane.serve(listener, async {
            let _ = stopped.await;
        }));
        let rig = Self {
            addr,
            secret: SecretString::from(secret),
            aws,
            github,
            store,
            next_job: AtomicU64::new(1),
            stop: Some(stop),
            server: Some(server),
            dir,
        };
        // Warm up: the first launch looks up the network, the group and
        // the image, assumes the role and gets an installation token.
        let mut connection = rig.connect().await;
        rig.lifecycle(&mut connection).await;
        rig
    }

    /// Where the control plane listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The webhook secret GitHub signs with.
    pub fn secret(&self) -> &SecretString {
        &self.secret
    }

    /// A job's webhooks, with a fresh job id.
    pub fn new_job(&self) -> WorkflowJobWebhook {
        self.job()
    }

    /// A keep-alive connection to the webhook endpoint.
    pub async fn connect(&self) -> Connection {
        let stream = TcpStream::connect(self.addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Connection {
            stream,
            buffer: Vec::with_capacity(4096),
        }
    }

    fn job(&self) -> WorkflowJobWebhook {
        let id = self.next_job.fetch_add(1, Ordering::Relaxed);
        WorkflowJobWebhook {
            job_id: id,
            run_id: 1_000_000 + id,
            run_attempt: 1,
            repository: "octo-org/bench".to_owned(),
            installation_id: INSTALLATION,
            owner_id: OWNER_ID,
            // Pinned: each job's runner is its own.
            labels: vec![
                "sprinters:aws:ubuntu-24.04".to_owned(),
                format!("{}-1-build", 1_000_000 + id),
            ],
            name: "build".to_owned(),
        }
    }

    async fn deliver(&self, connection: &mut Connection, id: &str, body: &[u8]) {
        let status = connection.post(self.addr, &self.secret, id, body).await;
        assert!((200..300).contains(&status), "webhook {id}: {status}");
    }

    /// One job, queued → launched → in progress → completed → its instance
    /// terminated. Returns the time from sending the queued webhook to
    /// EC2 answering `RunInstances` for it.
    pub async fn lifecycle(&self, connection: &mut Connection) -> Duration {
        let job = self.job();
        let launched = self.aws.expect_launch(job.job_id);
        let sent = Instant::now();
        let id = job.job_id;
        self.deliver(
            connection,
            &format!("{id}-q"),
            &job.body("queued", None, None),
        )
        .await;
        let instance = launched.await.unwrap();
        let latency = instance.launched.duration_since(sent);
        let terminated = self.aws.expect_termination(&instance.id);
        let runner = instance.tags.get("sprinters:runner").unwrap().clone();
        // GitHub reports the id of the runner the engine registered.
        let runner_id = self.github.runner_id(&job.repository, &runner).unwrap();
        let picked = Some((runner_id, runner.as_str()));
        self.deliver(
            connection,
            &format!("{id}-p"),
            &job.body("in_progress", picked, None),
        )
        .await;
        self.deliver(
            connection,
            &format!("{id}-c"),
            &job.body("completed", picked, Some("success")),
        )
        .await;
        terminated.await.unwrap();
        latency
    }

    /// The unavoidable path of a launch with the same clients and
    /// stand-ins: `AssumeRole` and the JIT config side by side, then
    /// `RunInstances`. The floor the control plane's latency is held to.
    pub async fn unavoidable_path(&self, baseline: &Baseline, n: u64) -> Duration {
        let started = Instant::now();
        let assume = baseline
            .sts
            .assume_role()
            .role_arn(ROLE_ARN)
            .role_session_name("baseline")
            .external_id("bench-external-id")
            .duration_seconds(900)
            .send();
        let runner = RunnerName::parse(&format!("baseline-{n}-{:08x}", fastrand::u32(..))).unwrap();
        let jit = baseline.registry.create_jit_runner(CreateJitRunner::new(
            InstallationId::new(INSTALLATION),
            Repository::parse("octo-org/baseline").unwrap(),
            runner,
            vec!["sprinters:aws:ubuntu-24.04".to_owned()],
        ));
        let (assumed, jit) = tokio::join!(assume, jit);
        assumed.unwrap();
        jit.unwrap();
        self.run_instances_alone(baseline).await;
        started.elapsed()
    }

    /// One `RunInstances` through the SDK against the stand-in, alone: what
    /// the launch's one EC2 call costs, for the breakdown.
    pub async fn run_instances_alone(&self, baseline: &Baseline) {
        baseline
            .ec2
            .run_instances()
            .image_id(X64_AMI)
            .min_count(1)
            .max_count(1)
            .subnet_id("subnet-0a5a1d10000000001")
            .send()
            .await
            .unwrap();
    }

    /// One signed `ping` webhook: what the HTTP edge and the signature
    /// check cost, for the breakdown.
    pub async fn ping(&self, connection: &mut Connection) {
        let id = format!("ping-{:016x}", fastrand::u64(..));
        let status = connection
            .post_event(
                self.addr,
                &self.secret,
                "ping",
                &id,
                br#"{"zen":"Keep it logically awesome.","hook_id":1}"#,
            )
            .await;
        assert!((200..300).contains(&status), "ping: {status}");
    }

    /// The clients of [`ControlPlaneRig::unavoidable_path`].
    pub async fn baseline(&self) -> Baseline {
        let config = AwsClientConfig::new().endpoint_url(self.aws.uri()).unwrap();
        let credentials = sprinters_core::ports::Credentials {
            access_key_id: "AKIABASELINE".to_owned(),
            secret_access_key: SecretString::from("baseline".to_owned()),
            session_token: None,
            expires_at: None,
        };
        let app = GithubAppConfig::from_key_file(APP_ID, self.dir.path().join("app.pem"))
            .and_then(|c| c.api_url(self.github.uri()))
            .unwrap();
        let baseline = Baseline {
            sts: config.sts(
                &sprinters_core::domain::Region::us_east_1(),
                platform_credentials(),
            ),
            ec2: config.ec2(&sprinters_core::domain::Region::us_east_1(), &credentials),
            registry: GithubRegistry::new(Arc::new(GithubApp::new(app).unwrap())),
        };
        // Warm: the installation token and the connections.
        self.unavoidable_path(&baseline, 0).await;
        baseline
    }

    /// Stops the control plane, draining it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

/// The clients of the unavoidable path.
pub struct Baseline {
    sts: aws_sdk_sts::Client,
    ec2: aws_sdk_ec2::Client,
    registry: GithubRegistry,
}

fn platform_credentials() -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(aws_credential_types::Credentials::new(
        "AKIAPLATFORMBENCH",
        "platform-bench-secret",
        None,
        None,
        "bench",
    ))
}

/// A keep-alive HTTP/1.1 connection that posts signed webhooks.
pub struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    async fn post(
        &mut self,
        addr: SocketAddr,
        secret: &SecretString,
        delivery: &str,
        body: &[u8],
    ) -> u16 {
        self.post_event(addr, secret, "workflow_job", delivery, body)
            .await
    }

    async fn post_event(
        &mut self,
        addr: SocketAddr,
        secret: &SecretString,
        event: &str,
        delivery: &str,
        body: &[u8],
    ) -> u16 {
        let head = format!(
            "POST /webhooks/github HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             X-GitHub-Event: {event}\r\nX-GitHub-Delivery: {delivery}\r\nX-Hub-Signature-256: {}\r\n\
             Content-Length: {}\r\n\r\n",
            sign(secret, body),
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        match self.exchange(&request).await {
            Some(status) => status,
            None => {
                // The server closed the connection while it was idle
                // (keep-alive's race): a client sends again on a new one,
                // and the delivery id makes it safe.
                self.stream = TcpStream::connect(addr).await.unwrap();
                self.stream.set_nodelay(true).unwrap();
                self.exchange(&request)
                    .await
                    .unwrap_or_else(|| panic!("the control plane closed a fresh connection"))
            }
        }
    }

    /// Sends `request` and reads one response's status; `None` when the
    /// connection was closed before any byte of it.
    async fn exchange(&mut self, request: &[u8]) -> Option<u16> {
        if self.stream.write_all(request).await.is_err() {
            return None;
        }
        // Read one response: headers, then Content-Length bytes of body.
        self.buffer.clear();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buffer[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if self.buffer.len() >= end + 4 + length {
                    return head.split(' ').nth(1).and_then(|s| s.parse().ok());
                }
            }
            let n = self.stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                assert!(
                    self.buffer.is_empty(),
                    "the control plane closed the connection mid-response"
                );
                return None;
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
