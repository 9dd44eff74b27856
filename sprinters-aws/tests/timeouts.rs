//! Every AWS call has a deadline: against an endpoint that accepts the
//! connection and never answers, EC2 and STS calls fail within the
//! configured operation timeout, as retryable errors, and hold nothing.

// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;
use secrecy::SecretString;
use sprinters_aws::{AssumeRoleProvider, AwsClientConfig, CustomerRole, Ec2Launcher};
use sprinters_core::ErrorKind;
use sprinters_core::domain::{AccountId, Owner, OwnerId, Region};
use sprinters_core::ports::{
    CloudLauncher, CredentialProvider, Credentials, CredentialsRequest, ListOwned,
};
use tokio::net::TcpListener;

/// An endpoint that takes every connection and never says a word, as a
/// wedged proxy or a black-holed route does. Returns its URL.
async fn silent_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

async fn config(timeout: Duration) -> AwsClientConfig {
    AwsClientConfig::new()
        .endpoint_url(silent_endpoint().await)
        .unwrap()
        .max_attempts(1)
        .operation_timeout(timeout)
}

fn account() -> AccountId {
    AccountId::parse("123456789012").unwrap()
}

/// Well past the 1 s timeout, well short of the SDK's defaults: the test
/// fails (rather than hangs) if the deadline is not applied.
const GUARD: Duration = Duration::from_secs(20);

#[tokio::test]
async fn an_ec2_call_to_a_silent_endpoint_times_out_as_retryable() {
    let launcher = Ec2Launcher::new(config(Duration::from_secs(1)).await);
    let credentials = Credentials {
        access_key_id: "AKIAEXAMPLE".to_owned(),
        secret_access_key: SecretString::from("secret".to_owned()),
        session_token: None,
        expires_at: None,
    };
    let call = launcher.list_owned(ListOwned::new(
        account(),
        credentials,
        Region::us_east_1(),
        "ctrl".into(),
    ));
    let err = tokio::time::timeout(GUARD, call)
        .await
        .expect("the operation timeout ends the call")
        .unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable(), "{err}");
    assert!(err.message().contains("ec2:DescribeInstances"), "{err}");
}

#[tokio::test]
async fn an_sts_call_to_a_silent_endpoint_times_out_as_retryable() {
    let role = CustomerRole::new(
        &account(),
        "arn:aws:iam::123456789012:role/SprintersRole",
        SecretString::from("the-agreed-external-id".to_owned()),
    )
    .unwrap();
    let platform = SharedCredentialsProvider::new(aws_credential_types::Credentials::new(
        "AKIAPLATFORM",
        "platform-secret",
        None,
        None,
        "test",
    ));
    let provider = AssumeRoleProvider::builder(config(Duration::from_secs(1)).await)
        .platform_credentials(platform)
        .platform_account(AccountId::parse("999988887777").unwrap())
        .role(OwnerId::new(31337), account(), role)
        .build()
        .await;
    let ask = CredentialsRequest::new(
        account(),
        OwnerId::new(31337),
        Owner::parse("octo-org").unwrap(),
    );
    let err = tokio::time::timeout(GUARD, provider.credentials(ask.clone()))
        .await
        .expect("the operation timeout ends the call")
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(!err.message().contains("the-agreed-external-id"), "{err}");
    // Nothing held: a second call is not stuck behind the first.
    let again = tokio::time::timeout(GUARD, provider.credentials(ask))
        .await
        .expect("a second call is not held by the first");
    assert!(again.unwrap_err().is_retryable());
}
