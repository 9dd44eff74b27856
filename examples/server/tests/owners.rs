//! Owners connected at run time through `/api/owners/{owner}/accounts`:
//! the control plane on a loopback socket, the AWS emulator (moto, from
//! `scripts/test`) behind the real STS and EC2 clients, the GitHub
//! stand-in; the SQLite store, and PostgreSQL shared by two replicas.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde_json::{Value, json};
use sprinters_aws::AwsClientConfig;
use sprinters_core::domain::Region;
use sprinters_core::ports::Credentials;
use sprinters_github::testing::{GithubStandIn, WorkflowJobWebhook};
use sprinters_github::webhook::sign;
use sprinters_server::config::Config;
use sprinters_server::server::ControlPlane;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "owners-test-webhook-secret";
const ADMIN: &str = "admin-token-0123456789abcdef";
const SCOPED: &str = "newco-token-0123456789abcdef";
const APP: u64 = 123456;
const OWNER_ID: u64 = 6100;
const INSTALLATION: u64 = 610;

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

/// A fresh 12-digit account, so runs sharing one emulator never meet.
fn fresh_account() -> String {
    fastrand::u64(100_000_000_000..1_000_000_000_000).to_string()
}

/// An Ubuntu image the emulator lists, pinned for the launches.
async fn stock_ami() -> String {
    let aws = AwsClientConfig::new().endpoint_url(endpoint()).unwrap();
    let key = Credentials {
        access_key_id: "AKIAOWNERSTESTEXAMPLE".to_owned(),
        secret_access_key: SecretString::from("owners-test-secret".to_owned()),
        session_token: None,
        expires_at: None,
    };
    let ec2 = aws.ec2(&Region::us_east_1(), &key);
    let stock = ec2
        .describe_images()
        .owners("099720109477")
        .send()
        .await
        .unwrap();
    stock
        .images()
        .iter()
        .find(|i| {
            i.architecture().map(|a| a.as_str()) == Some("x86_64")
                && i.image_id().is_some_and(|id| id.len() == 12)
        })
        .and_then(|i| i.image_id())
        .unwrap()
        .to_owned()
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
    extra: &[(&str, String)],
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if !body.is_empty() && extra.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in extra {
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

async fn json_call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let (status, text) = http(addr, method, path, token, body.as_bytes(), &[]).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn webhook(addr: std::net::SocketAddr, id: &str, body: &[u8]) -> u16 {
    event(addr, "workflow_job", id, body).await
}

async fn event(addr: std::net::SocketAddr, kind: &str, id: &str, body: &[u8]) -> u16 {
    let headers = [
        ("X-GitHub-Event", kind.to_owned()),
        ("X-GitHub-Delivery", id.to_owned()),
        (
            "X-Hub-Signature-256",
            sign(&SecretString::from(SECRET.to_owned()), body),
        ),
        ("Content-Type", "application/json".to_owned()),
    ];
    http(addr, "POST", "/webhooks/github", None, body, &headers)
        .await
        .0
}

fn job(n: u64) -> WorkflowJobWebhook {
    let id = 61_000_000 + fastrand::u64(..1_000_000) * 10 + n;
    WorkflowJobWebhook {
        job_id: id,
        run_id: id * 10,
        run_attempt: 1,
        repository: "newco/app".to_owned(),
        installation_id: INSTALLATION,
        owner_id: OWNER_ID,
        labels: vec!["sprinters:aws:ubuntu-24.04".to_owned()],
        name: format!("job {n}"),
    }
}

/// A control plane with no configured owner, an admin (`*`) token and a
/// token scoped to `newco`, over `store` (a TOML `[store]` section).
async fn plane(dir: &Path, github: &GithubStandIn, ami: &str, store: &str) -> ControlPlane {
    let data = dir.join("data");
    sprinters_server::data_dir::create(&data).unwrap();
    let master = data.join("master.key");
    if !master.exists() {
        sprinters_store::MasterKey::create_file(&master).unwrap();
    }
    std::fs::write(dir.join("webhook-secret"), SECRET).unwrap();
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{data}"
controller_id = "owners-test-{controller:08x}"
[[server.api_tokens]]
token = "{ADMIN}"
owners = ["*"]
[[server.api_tokens]]
token = "{SCOPED}"
owners = ["newco"]

[github]
app_id = {APP}
private_key_file = "{key}"
webhook_secret_file = "{secret}"
api_url = "{api}"

[aws]
endpoint_url = "{aws}"
platform_account_id = "999988887777"
cloudformation_template_url = "https://example-bucket.s3.amazonaws.com/sprinters-role.json"
[aws.images."ubuntu-24.04"]
us-east-1 = "{ami}"
{store}
"#,
        data = data.display(),
        controller = fastrand::u32(..),
        key = github_fixture("test-app-private-key.pem").display(),
        secret = dir.join("webhook-secret").display(),
        api = github.uri(),
        aws = endpoint(),
    );
    let config = Config::parse(&text, &BTreeMap::new()).unwrap();
    // The platform's own (emulated) credentials, which assume the roles.
    let platform = aws_credential_types::provider::SharedCredentialsProvider::new(
        aws_credential_types::Credentials::new(
            "AKIAPLATFORMEXAMPLE",
            "platform-secret",
            None,
            None,
            "test",
        ),
    );
    ControlPlane::builder(config)
        .platform_credentials(platform)
        .build()
        .await
        .unwrap()
}

async fn listen(plane: &ControlPlane) -> std::net::SocketAddr {
    let router = plane.router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

async fn stand_in() -> GithubStandIn {
    let github = GithubStandIn::start(
        APP,
        &std::fs::read(github_fixture("test-app-public-key.pem")).unwrap(),
    )
    .await
    .unwrap();
    github.install("newco", OWNER_ID, INSTALLATION);
    github
}

/// The state EC2 reports for `instance` in `account`, asked with the
/// customer's role as the platform would assume it.
async fn instance_state(
    account: &str,
    role_arn: &str,
    external_id: &str,
    instance: &str,
) -> String {
    let aws = AwsClientConfig::new().endpoint_url(endpoint()).unwrap();
    let platform = aws_credential_types::provider::SharedCredentialsProvider::new(
        aws_credential_types::Credentials::new(
            "AKIAPLATFORMEXAMPLE",
            "platform-secret",
            None,
            None,
            "test",
        ),
    );
    let assumed = aws
        .sts(&Region::us_east_1(), platform)
        .assume_role()
        .role_arn(role_arn)
        .role_session_name("owners-test")
        .external_id(external_id)
        .send()
        .await
        .unwrap();
    let c = assumed.credentials().unwrap();
    let credentials = Credentials {
        access_key_id: c.access_key_id().to_owned(),
        secret_access_key: SecretString::from(c.secret_access_key().to_owned()),
        session_token: Some(SecretString::from(c.session_token().to_owned())),
        expires_at: None,
    };
    let _ = account;
    let found = aws
        .ec2(&Region::us_east_1(), &credentials)
        .describe_instances()
        .instance_ids(instance)
        .send()
        .await
        .unwrap();
    found.reservations()[0].instances()[0]
        .state()
        .and_then(|s| s.name())
        .map(|n| n.as_str().to_owned())
        .unwrap_or_default()
}

/// Connects `account` to newco and verifies it with the stack's role:
/// (external id, role ARN).
async fn connect_and_verify(addr: std::net::SocketAddr, account: &str) -> (String, String) {
    let path = "/api/owners/newco/accounts";
    let (status, opened) = json_call(
        addr,
        "POST",
        path,
        Some(ADMIN),
        Some(json!({ "aws_account_id": account })),
    )
    .await;
    assert_eq!(status, 201, "{opened}");
    let external_id = opened["external_id"].as_str().unwrap().to_owned();
    let role_arn = format!("arn:aws:iam::{account}:role/Sprinters");
    let (status, verified) = json_call(
        addr,
        "PUT",
        &format!("{path}/{account}"),
        Some(ADMIN),
        Some(json!({ "role_arn": role_arn })),
    )
    .await;
    assert_eq!(status, 200, "{verified}");
    (external_id, role_arn)
}

/// The newest job of newco through the scoped token.
async fn newest_job(addr: std::net::SocketAddr) -> Value {
    let (status, page) = json_call(addr, "GET", "/api/jobs", Some(SCOPED), None).await;
    assert_eq!(status, 200, "{page}");
    page["jobs"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_is_connected_verified_used_and_disconnected_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let github = stand_in().await;
    let ami = stock_ami().await;
    let plane = plane(dir.path(), &github, &ami, "").await;
    let engine = plane.engine().clone();
    let addr = listen(&plane).await;
    let account = fresh_account();
    let path = "/api/owners/newco/accounts";
    let body = json!({ "aws_account_id": account });

    assert_eq!(
        json_call(addr, "POST", path, None, Some(body.clone()))
            .await
            .0,
        401,
        "no token"
    );
    assert_eq!(
        json_call(addr, "POST", path, Some(SCOPED), Some(body.clone()))
            .await
            .0,
        403,
        "a scoped token, even the owner's own"
    );
    let (status, bad) = json_call(
        addr,
        "POST",
        path,
        Some(ADMIN),
        Some(json!({ "aws_account_id": "12345" })),
    )
    .await;
    assert_eq!(status, 400, "{bad}");
    assert!(bad.to_string().contains("aws_account_id"), "{bad}");

    let (status, opened) = json_call(addr, "POST", path, Some(ADMIN), Some(body.clone())).await;
    assert_eq!(status, 201, "{opened}");
    assert_eq!(opened["state"], "pending");
    assert_eq!(opened["aws_account_id"], account.as_str());
    assert_eq!(opened["owner_id"], OWNER_ID);
    let external_id = opened["external_id"].as_str().unwrap().to_owned();
    assert_eq!(external_id.len(), 64, "256 random bits");
    assert!(external_id.bytes().all(|b| b.is_ascii_hexdigit()));
    let cf = &opened["cloudformation"];
    assert_eq!(cf["parameters"]["ExternalId"], external_id.as_str());
    assert_eq!(cf["parameters"]["PlatformAccountId"], "999988887777");
    let quick = cf["quick_create_url"].as_str().unwrap();
    assert!(
        quick.contains(&format!("param_ExternalId={external_id}")),
        "{quick}"
    );
    assert_eq!(
        json_call(addr, "POST", path, Some(ADMIN), Some(body.clone()))
            .await
            .0,
        409,
        "one connection per owner and account: a new external id needs a disconnect"
    );

    // Listed by login and by id, without the external id.
    for owner in ["newco", &OWNER_ID.to_string()] {
        let (status, listed) = json_call(
            addr,
            "GET",
            &format!("/api/owners/{owner}/accounts"),
            Some(ADMIN),
            None,
        )
        .await;
        assert_eq!(status, 200, "{listed}");
        assert_eq!(listed["accounts"][0]["state"], "pending");
        assert!(!listed.to_string().contains(&external_id), "{listed}");
    }

    // Pending: a job launches nothing, and says why.
    let first = job(1);
    assert_eq!(
        webhook(addr, "d-1", &first.body("queued", None, None)).await,
        202
    );
    engine.drain().await;
    let record = newest_job(addr).await;
    assert_eq!(record["state"], "rejected", "{record}");

    // A role of another account is refused before any call.
    let put = format!("{path}/{account}");
    let (status, refused) = json_call(
        addr,
        "PUT",
        &put,
        Some(ADMIN),
        Some(json!({ "role_arn": "arn:aws:iam::210987654321:role/Sprinters" })),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    // The stack's role: assumed with the external id, then a dry run.
    let role_arn = format!("arn:aws:iam::{account}:role/sprinters-SprintersRole-TEST");
    let (status, verified) = json_call(
        addr,
        "PUT",
        &put,
        Some(ADMIN),
        Some(json!({ "role_arn": role_arn })),
    )
    .await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["state"], "connected");
    assert!(
        !verified.to_string().contains(&external_id),
        "shown once only"
    );

    // Connected: a job launches in that account.
    let second = job(2);
    assert_eq!(
        webhook(addr, "d-2", &second.body("queued", None, None)).await,
        202
    );
    engine.drain().await;
    let record = newest_job(addr).await;
    assert_eq!(record["job_id"], second.job_id, "{record}");
    assert_eq!(record["state"], "launched", "{record}");
    assert_eq!(record["account"], account.as_str());
    let instance = record["instance_id"].as_str().unwrap().to_owned();
    assert!(instance.starts_with("i-"));

    // Disconnected: its instance ends, its records are shredded, and
    // nothing launches there any more.
    let (status, gone) = json_call(addr, "DELETE", &put, Some(ADMIN), None).await;
    assert_eq!(status, 200, "{gone}");
    assert_eq!(gone["records_shredded"], true, "{gone}");
    // Seen from EC2, with the customer's role: the instance is ending.
    let state = instance_state(&account, &role_arn, &external_id, &instance).await;
    assert!(
        matches!(state.as_str(), "shutting-down" | "terminated"),
        "{instance} is {state}"
    );
    let (_, page) = json_call(addr, "GET", "/api/jobs", Some(SCOPED), None).await;
    assert!(
        page["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["account"] != account.as_str()),
        "{page}"
    );
    let (_, listed) = json_call(addr, "GET", path, Some(ADMIN), None).await;
    assert_eq!(listed["accounts"], json!([]), "{listed}");
    // A connection never verified proves no control of the account: its
    // removal shreds nothing (another owner's history could be there).
    let other = fresh_account();
    json_call(
        addr,
        "POST",
        path,
        Some(ADMIN),
        Some(json!({ "aws_account_id": other })),
    )
    .await;
    let (status, gone) = json_call(
        addr,
        "DELETE",
        &format!("{path}/{other}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{gone}");
    assert_eq!(gone["records_shredded"], false, "{gone}");
    let third = job(3);
    webhook(addr, "d-3", &third.body("queued", None, None)).await;
    engine.drain().await;
    let record = newest_job(addr).await;
    assert_eq!(record["job_id"], third.job_id);
    assert_eq!(record["state"], "rejected", "{record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_made_through_one_postgres_replica_is_used_by_another() {
    let server = std::env::var("SPRINTERS_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("SPRINTERS_TEST_POSTGRES_URL is not set: run scripts/test, which starts PostgreSQL")
    });
    let ca = std::env::var("SPRINTERS_TEST_POSTGRES_CA").unwrap();
    // A database of its own.
    let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let name = format!("owners_{:08x}", fastrand::u32(..));
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let db_url = format!("{}/{name}", server.rsplit_once('/').unwrap().0);
    let store = format!("[store]\nurl = \"{db_url}\"\nca_file = \"{ca}\"\n");

    let github = stand_in().await;
    let ami = stock_ami().await;
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = plane(one.path(), &github, &ami, &store).await;
    // Replicas share the master key that seals the database's rows.
    std::fs::create_dir_all(two.path().join("data")).unwrap();
    std::fs::copy(
        one.path().join("data/master.key"),
        two.path().join("data/master.key"),
    )
    .unwrap();
    let b = plane(two.path(), &github, &ami, &store).await;
    let (addr_a, addr_b) = (listen(&a).await, listen(&b).await);
    let account = fresh_account();
    let path = "/api/owners/newco/accounts";
    connect_and_verify(addr_a, &account).await;

    // Replica B learns it on its next tick.
    b.engine().sync_tenants().await.unwrap();
    let (_, listed) = json_call(addr_b, "GET", path, Some(ADMIN), None).await;
    assert_eq!(listed["accounts"][0]["state"], "connected", "{listed}");
    let j = job(1);
    assert_eq!(
        webhook(addr_b, "pg-1", &j.body("queued", None, None)).await,
        202
    );
    b.engine().drain().await;
    let record = newest_job(addr_b).await;
    assert_eq!(record["job_id"], j.job_id, "{record}");
    assert_eq!(record["state"], "launched", "{record}");
    assert_eq!(record["account"], account.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_connect_list_and_disconnect_with_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let github = stand_in().await;
    let ami = stock_ami().await;
    let plane = plane(dir.path(), &github, &ami, "").await;
    let addr = listen(&plane).await;
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{ADMIN}\n")).unwrap();
    let account = fresh_account();
    let sprinters = |args: &[&str]| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_sprinters"));
        command
            .arg("accounts")
            .args(args)
            .args(["--server", &format!("http://{addr}")])
            .arg("--token-file")
            .arg(&token_file);
        command
    };
    let out = sprinters(&["connect", "--owner", "newco", "--account", &account])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let opened: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(opened["state"], "pending");
    assert_eq!(opened["external_id"].as_str().unwrap().len(), 64);

    let out = sprinters(&["list", "--owner", &OWNER_ID.to_string()])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["accounts"][0]["aws_account_id"], account.as_str());

    let out = sprinters(&["disconnect", "--owner", "newco", "--account", &account])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = sprinters(&["disconnect", "--owner", "newco", "--account", &account])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "no such connection any more");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("404"),
        "{out:?}"
    );

    // A scoped token is refused, and says so.
    std::fs::write(&token_file, SCOPED).unwrap();
    let out = sprinters(&["list", "--owner", "newco"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("403"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uninstalling_the_app_ends_the_owners_instances_and_shreds_its_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let github = stand_in().await;
    let ami = stock_ami().await;
    let plane = plane(dir.path(), &github, &ami, "").await;
    let engine = plane.engine().clone();
    let addr = listen(&plane).await;
    let account = fresh_account();
    let (external_id, role_arn) = connect_and_verify(addr, &account).await;
    let j = job(1);
    webhook(addr, "u-1", &j.body("queued", None, None)).await;
    engine.drain().await;
    let record = newest_job(addr).await;
    assert_eq!(record["state"], "launched", "{record}");
    let instance = record["instance_id"].as_str().unwrap().to_owned();

    // GitHub's installation.deleted for newco (its ids, as GitHub signs them).
    let deleted = json!({
        "action": "deleted",
        "installation": { "id": INSTALLATION, "account": { "login": "newco", "id": OWNER_ID } },
        "sender": { "login": "newco" },
    })
    .to_string();
    let status = event(addr, "installation", "u-2", deleted.as_bytes()).await;
    assert!((200..300).contains(&status), "{status}");
    engine.drain().await;
    let state = instance_state(&account, &role_arn, &external_id, &instance).await;
    assert!(
        matches!(state.as_str(), "shutting-down" | "terminated"),
        "{instance} is {state}"
    );
    // The shredding runs beside the webhook: its history goes.
    let mut gone = false;
    for _ in 0..200 {
        let (_, page) = json_call(addr, "GET", "/api/jobs", Some(ADMIN), None).await;
        if page["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["account"] != account.as_str())
        {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(gone, "the account's records are shredded");
    // And nothing launches for newco any more.
    let next = job(2);
    webhook(addr, "u-3", &next.body("queued", None, None)).await;
    engine.drain().await;
    let (_, page) = json_call(addr, "GET", "/api/jobs", Some(ADMIN), None).await;
    let theirs: Vec<&Value> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["job_id"] == next.job_id)
        .collect();
    assert!(
        theirs
            .iter()
            .all(|j| j["state"] == "rejected" && j["instance_id"].is_null()),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owners_policy_is_set_read_and_enforced_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let github = stand_in().await;
    let ami = stock_ami().await;
    let platform = "[policy]\nmax_temp_gib = 100\ninstance_types = [\"t3.*\", \"c7i.*\"]\n";
    let plane = plane(dir.path(), &github, &ami, platform).await;
    let engine = plane.engine().clone();
    let addr = listen(&plane).await;
    connect_and_verify(addr, &fresh_account()).await;
    let path = "/api/owners/newco/policy";
    let policy = json!({ "instance_types": ["t3.*"], "max_vcpus": 2 });

    assert_eq!(json_call(addr, "GET", path, None, None).await.0, 401);
    assert_eq!(
        json_call(addr, "PUT", path, Some(SCOPED), Some(policy.clone()))
            .await
            .0,
        403,
        "an owner's own token does not set its policy"
    );
    // Nothing set yet: the owner's keys are none, the platform's fill in.
    let (status, own) = json_call(addr, "GET", path, Some(ADMIN), None).await;
    assert_eq!((status, &own["policy"]), (200, &json!({})), "{own}");

    let (status, set) = json_call(addr, "PUT", path, Some(ADMIN), Some(policy.clone())).await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["policy"], policy);
    let (_, own) = json_call(addr, "GET", path, Some(ADMIN), None).await;
    assert_eq!(own["policy"], policy, "GET answers what PUT set");
    let (_, effective) = json_call(
        addr,
        "GET",
        &format!("{path}?effective=true"),
        Some(ADMIN),
        None,
    )
    .await;
    let e = &effective["policy"];
    assert_eq!(e["max_vcpus"], 2);
    assert_eq!(e["max_temp_gib"], 100, "from [policy]: {e}");
    assert_eq!(e["public_repositories"], "deny", "the default: {e}");

    // A wrong key is named, and changes nothing.
    let (status, refused) = json_call(
        addr,
        "PUT",
        path,
        Some(ADMIN),
        Some(json!({ "max_cpus": 4 })),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    assert!(refused.to_string().contains("max_cpus"), "{refused}");
    let (_, own) = json_call(addr, "GET", path, Some(ADMIN), None).await;
    assert_eq!(own["policy"], policy);

    // A job asking for more is rejected with the rule and the value.
    let mut big = job(1);
    big.labels = vec!["sprinters:aws:ubuntu-24.04:c7i.large".to_owned()];
    assert_eq!(
        webhook(addr, "policy-1", &big.body("queued", None, None)).await,
        202
    );
    engine.drain().await;
    let record = newest_job(addr).await;
    assert_eq!(record["state"], "rejected", "{record}");
    assert_eq!(
        record["message"], "instance type c7i.large is not allowed for newco (allowed: t3.*)",
        "{record}"
    );
}
