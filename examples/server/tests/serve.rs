//! `serve` end to end on one machine: the control plane on a loopback
//! socket, the AWS emulator (moto, started by `scripts/test`) behind the
//! real EC2 client, and the GitHub stand-in. A signed `queued` webhook
//! launches an instance in the emulator; `completed` ends it; the API and
//! the metrics say so; shutdown drains and returns.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use sprinters_aws::AwsClientConfig;
use sprinters_core::domain::{AccountId, Region};
use sprinters_core::ports::Credentials;
use sprinters_core::vault::{CredentialVault, StoredAccessKey};
use sprinters_github::testing::GithubStandIn;
use sprinters_github::webhook::sign;
use sprinters_server::config::Config;
use sprinters_server::server::ControlPlane;
use sprinters_store::{MasterKey, SqliteJobStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "serve-test-webhook-secret";
const TOKEN: &str = "octo-org-token-0123456789";
const ACCOUNT: &str = "123456789012";

fn github_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../sprinters-github/tests/fixtures")
        .join(name)
}

fn endpoint() -> String {
    std::env::var("SPRINTERS_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!("SPRINTERS_TEST_AWS_ENDPOINT is not set: run scripts/test, which starts the AWS emulator")
    })
}

fn key() -> Credentials {
    Credentials {
        access_key_id: "AKIASERVETESTEXAMPLE".to_owned(),
        secret_access_key: SecretString::from("serve-test-secret".to_owned()),
        session_token: None,
        expires_at: None,
    }
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

async fn webhook(addr: std::net::SocketAddr, event: &str, id: &str, body: &[u8]) -> u16 {
    let headers = [
        ("X-GitHub-Event", event.to_owned()),
        ("X-GitHub-Delivery", id.to_owned()),
        (
            "X-Hub-Signature-256",
            sign(&SecretString::from(SECRET.to_owned()), body),
        ),
        ("Content-Type", "application/json".to_owned()),
    ];
    http(addr, "POST", "/webhooks/github", &headers, body)
        .await
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_webhook_launches_in_the_emulator_and_completion_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    sprinters_server::data_dir::create(&data).unwrap();
    let master = MasterKey::create_file(&data.join("master.key")).unwrap();
    {
        // The customer's access key, in the vault before serve opens it.
        let store = SqliteJobStore::open_with_key(&data, &master).unwrap();
        let account = AccountId::parse(ACCOUNT).unwrap();
        let k = key();
        store
            .put_access_key(
                sprinters_core::domain::OwnerId::new(9919),
                account,
                StoredAccessKey {
                    access_key_id: k.access_key_id,
                    secret_access_key: k.secret_access_key,
                },
            )
            .await
            .unwrap();
    }
    let aws = AwsClientConfig::new().endpoint_url(endpoint()).unwrap();
    let ec2 = aws.ec2(&Region::us_east_1(), &key());
    let stock = ec2
        .describe_images()
        .owners("099720109477")
        .send()
        .await
        .unwrap();
    let ami = stock
        .images()
        .iter()
        .find(|i| {
            i.architecture().map(|a| a.as_str()) == Some("x86_64")
                && i.image_id().is_some_and(|id| id.len() == 12)
        })
        .and_then(|i| i.image_id())
        .unwrap()
        .to_owned();

    let github = GithubStandIn::start(
        123456,
        &std::fs::read(github_fixture("test-app-public-key.pem")).unwrap(),
    )
    .await
    .unwrap();
    // The App on octo-org (the fixtures' account and installation ids):
    // serve binds the configured login to them at start.
    github.install("octo-org", 9919, 4242);
    std::fs::write(dir.path().join("webhook-secret"), SECRET).unwrap();
    let controller = format!("serve-test-{:08x}", fastrand::u32(..));
    // A free loopback port for /metrics, bound by serve itself.
    let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
metrics_listen = "{metrics_addr}"
data_dir = "{data}"
controller_id = "{controller}"
[[server.api_tokens]]
token = "{TOKEN}"
owners = ["octo-org"]

[github]
app_id = 123456
private_key_file = "{key}"
webhook_secret_file = "{secret}"
api_url = "{api}"

[aws]
endpoint_url = "{aws}"
[aws.images."ubuntu-24.04"]
us-east-1 = "{ami}"

[[accounts]]
github_owner = "octo-org"
aws_account_id = "{ACCOUNT}"
credentials = "vault"
"#,
        data = data.display(),
        key = github_fixture("test-app-private-key.pem").display(),
        secret = dir.path().join("webhook-secret").display(),
        api = github.uri(),
        aws = endpoint(),
    );
    let config = Config::parse(&text, &BTreeMap::new()).unwrap();
    let plane = ControlPlane::build(config).await.unwrap();
    let engine = plane.engine().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(plane.serve(listener, async {
        let _ = stopped.await;
    }));

    assert_eq!(http(addr, "GET", "/healthz", &[], b"").await.0, 200);
    assert_eq!(http(addr, "GET", "/readyz", &[], b"").await.0, 200);

    let queued = std::fs::read(github_fixture("webhooks/workflow_job.queued.json")).unwrap();
    assert_eq!(
        webhook(addr, "workflow_job", "delivery-queued", &queued).await,
        202
    );
    assert_eq!(
        webhook(addr, "workflow_job", "delivery-queued", &queued).await,
        200,
        "a duplicate"
    );
    let forged = http(
        addr,
        "POST",
        "/webhooks/github",
        &[
            ("X-GitHub-Event", "workflow_job".into()),
            ("X-GitHub-Delivery", "forged".into()),
            ("X-Hub-Signature-256", "sha256=00".into()),
        ],
        &queued,
    )
    .await;
    assert_eq!(forged.0, 401);
    engine.drain().await;

    let tagged = |job: &str| {
        aws_sdk_ec2::types::Filter::builder()
            .name("tag:sprinters:job")
            .values(job)
            .build()
    };
    let controller_tag = aws_sdk_ec2::types::Filter::builder()
        .name("tag:sprinters:controller")
        .values(&controller)
        .build();
    let found = ec2
        .describe_instances()
        .filters(tagged("30433642"))
        .filters(controller_tag.clone())
        .send()
        .await
        .unwrap();
    let instances: Vec<_> = found
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .collect();
    assert_eq!(instances.len(), 1, "one instance for the job");
    let instance_id = instances[0].instance_id().unwrap().to_owned();
    assert_eq!(github.runners().len(), 1, "one JIT runner registered");

    let (status, body) = http(
        addr,
        "GET",
        "/api/jobs",
        &[("Authorization", format!("Bearer {TOKEN}"))],
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["jobs"][0]["job_id"], 30433642);
    assert_eq!(page["jobs"][0]["instance_id"], instance_id.as_str());
    assert_eq!(
        http(addr, "GET", "/api/jobs", &[], b"").await.0,
        401,
        "no token"
    );
    assert_eq!(
        http(
            addr,
            "GET",
            "/api/jobs?owner=someone-else",
            &[("Authorization", format!("Bearer {TOKEN}"))],
            b""
        )
        .await
        .0,
        403,
        "another owner's jobs"
    );
    let (_, metrics) = http(metrics_addr, "GET", "/metrics", &[], b"").await;
    assert!(
        metrics.contains("sprinters_webhooks_total{event=\"workflow_job\",outcome=\"accepted\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("outcome=\"bad_signature\"} 1"),
        "{metrics}"
    );

    // The job ran on its runner (sprinters-30433642-2-1, the name the
    // engine gave it) and finished: its instance is ended.
    // GitHub reports the id of the runner the engine registered.
    let runner_id = *github.runners().keys().next().unwrap();
    let with_runner_id = |name: &str| {
        let mut body: serde_json::Value =
            serde_json::from_slice(&std::fs::read(github_fixture(name)).unwrap()).unwrap();
        body["workflow_job"]["runner_id"] = runner_id.into();
        body.to_string().into_bytes()
    };
    let in_progress = with_runner_id("webhooks/workflow_job.in_progress.json");
    let done = with_runner_id("webhooks/workflow_job.completed.json");
    assert_eq!(
        webhook(addr, "workflow_job", "delivery-started", &in_progress).await,
        202
    );
    assert_eq!(
        webhook(addr, "workflow_job", "delivery-completed", &done).await,
        202
    );
    engine.drain().await;
    let after = ec2
        .describe_instances()
        .instance_ids(&instance_id)
        .send()
        .await
        .unwrap();
    let state = after.reservations()[0].instances()[0]
        .state()
        .and_then(|s| s.name())
        .map(|n| n.as_str().to_owned());
    assert!(
        matches!(state.as_deref(), Some("shutting-down" | "terminated")),
        "{state:?}"
    );

    assert_eq!(
        http(addr, "GET", "/metrics", &[], b"").await.0,
        404,
        "/metrics is on its own listener"
    );
    let (_, metrics) = http(metrics_addr, "GET", "/metrics", &[], b"").await;
    for expected in [
        "sprinters_webhook_to_launch_seconds_count 1",
        "sprinters_instances_terminated_total{reason=\"job_completed\"} 1",
        "sprinters_api_calls_total{api=\"launcher\",operation=\"launch\"} 1",
        "sprinters_api_calls_total{api=\"registry\",operation=\"create_jit_runner\"} 1",
        // The store's calls are observed and timed like the others.
        "sprinters_api_calls_total{api=\"store\",operation=\"put_job\"}",
        "sprinters_api_call_seconds_total{api=\"store\",operation=\"put_job\"}",
        "sprinters_api_call_seconds_total{api=\"launcher\",operation=\"launch\"}",
        "sprinters_store_sync_seconds_bucket{le=\"+Inf\"}",
        "sprinters_job_state_changes_total{state=\"cleaned\"} 1",
    ] {
        assert!(metrics.contains(expected), "{expected} in:\n{metrics}");
    }
    // The duplicate delivery's `Duplicate` from the store is an answer,
    // not a failure.
    assert!(
        !metrics.contains("sprinters_api_errors_total{"),
        "no API failed: {metrics}"
    );

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
