//! `embed-engine` as an operator runs it, against the GitHub stand-in and
//! the AWS API emulator: a signed `workflow_job.queued` webhook becomes
//! one JIT runner on GitHub and one instance in the customer's account,
//! reached through its role.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use secrecy::SecretString;
use sprinters_aws::{AssumeRoleProvider, AwsClientConfig, CustomerRole};
use sprinters_core::domain::{AccountId, Owner, OwnerId, Region};
use sprinters_core::ports::{CredentialProvider, CredentialsRequest};
use sprinters_github::testing::GithubStandIn;
use sprinters_github::webhook::sign;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "embed-engine-webhook-secret";

fn endpoint() -> String {
    std::env::var("SPRINTERS_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!("SPRINTERS_TEST_AWS_ENDPOINT is not set: run scripts/test, which starts the AWS emulator")
    })
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../sprinters-github/tests/fixtures")
        .join(name)
}

/// An EC2 client in `account` (through its role, as the program reaches
/// it) with a runner image published there, as the launcher looks it up.
async fn customer_ec2(account: &AccountId, role_arn: &str) -> aws_sdk_ec2::Client {
    let aws = AwsClientConfig::new().endpoint_url(endpoint()).unwrap();
    let role = CustomerRole::new(account, role_arn, SecretString::from("x".repeat(16))).unwrap();
    let owner = OwnerId::new(9919);
    let platform = aws_credential_types::Credentials::new(
        "AKIAPLATFORMEXAMPLE",
        "platform-secret",
        None,
        None,
        "test",
    );
    let roles = AssumeRoleProvider::builder(aws.clone())
        .platform_credentials(
            aws_credential_types::provider::SharedCredentialsProvider::new(platform),
        )
        .role(owner, account.clone(), role);
    let request =
        CredentialsRequest::new(account.clone(), owner, Owner::parse("octo-org").unwrap());
    let credentials = roles.build().await.credentials(request).await.unwrap();
    let ec2 = aws.ec2(&Region::us_east_1(), &credentials);
    sprinters_aws::testing::publish_runner_image(&ec2, "ubuntu-24.04")
        .await
        .unwrap();
    ec2
}

async fn post_webhook(addr: &str, id: &str, body: &[u8]) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let signature = sign(&SecretString::from(SECRET.to_owned()), body);
    let head = format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nX-GitHub-Event: workflow_job\r\n\
         X-GitHub-Delivery: {id}\r\nX-Hub-Signature-256: {signature}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_webhook_becomes_one_runner_and_one_instance() {
    let dir = tempfile::tempdir().unwrap();
    let account =
        AccountId::parse(&fastrand::u64(100_000_000_000..1_000_000_000_000).to_string()).unwrap();
    let role_arn = format!("arn:aws:iam::{account}:role/SprintersRole");
    let ec2 = customer_ec2(&account, &role_arn).await;
    let public_key = std::fs::read(fixture("test-app-public-key.pem")).unwrap();
    let github = GithubStandIn::start(123456, &public_key).await.unwrap();
    // The fixtures' owner and installation ids.
    github.install("octo-org", 9919, 4242);
    std::fs::write(dir.path().join("webhook.secret"), SECRET).unwrap();
    std::fs::write(dir.path().join("external.id"), "agreed-external-id").unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_embed-engine"))
        .env_clear()
        .envs([
            ("GITHUB_APP_ID", "123456".to_owned()),
            (
                "GITHUB_APP_KEY_FILE",
                fixture("test-app-private-key.pem").display().to_string(),
            ),
            (
                "GITHUB_WEBHOOK_SECRET_FILE",
                dir.path().join("webhook.secret").display().to_string(),
            ),
            ("GITHUB_API_URL", github.uri()),
            ("OWNER_LOGIN", "octo-org".to_owned()),
            ("OWNER_ID", "9919".to_owned()),
            ("INSTALLATION_ID", "4242".to_owned()),
            ("AWS_ACCOUNT_ID", account.to_string()),
            ("ROLE_ARN", role_arn),
            (
                "EXTERNAL_ID_FILE",
                dir.path().join("external.id").display().to_string(),
            ),
            ("DATA_DIR", dir.path().join("data").display().to_string()),
            (
                "SPRINTERS_MASTER_KEY",
                "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".to_owned(),
            ),
            ("LISTEN", "127.0.0.1:0".to_owned()),
            ("AWS_ENDPOINT_URL", endpoint()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", "AKIAPLATFORMEXAMPLE".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "platform-secret".to_owned()),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("webhooks on http://")
        .and_then(|rest| rest.strip_suffix("/webhooks/github"))
        .unwrap_or_else(|| panic!("the address line: {line:?}"))
        .to_owned();

    let queued = std::fs::read(fixture("webhooks/workflow_job.queued.json")).unwrap();
    assert_eq!(post_webhook(&addr, "embed-queued", &queued).await, 202);

    // The launch runs in the background: bounded polling of the emulator.
    let mut instances = Vec::new();
    for _ in 0..100 {
        let tagged = aws_sdk_ec2::types::Filter::builder()
            .name("tag:sprinters:job")
            .values("30433642")
            .build();
        let found = ec2
            .describe_instances()
            .filters(tagged)
            .send()
            .await
            .unwrap();
        instances = found
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .cloned()
            .collect();
        if !instances.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        instances.len(),
        1,
        "one instance for the job, in the customer's account"
    );
    assert_eq!(github.runners().len(), 1, "one JIT runner registered");
}
