//! Helpers of the tests that run against the AWS API emulator (moto).
//! `scripts/test` starts it and sets `SPRINTERS_TEST_AWS_ENDPOINT`; a test
//! run without it fails and says so, never skips.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::{Intercept, SharedInterceptor};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use secrecy::SecretString;
use sprinters_aws::{AssumeRoleProvider, AwsClientConfig, CustomerRole};
use sprinters_core::domain::{AccountId, Owner, OwnerId, Region};
use sprinters_core::ports::{CredentialProvider, Credentials, CredentialsRequest};

/// The emulator's URL.
pub fn endpoint() -> String {
    std::env::var("SPRINTERS_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "SPRINTERS_TEST_AWS_ENDPOINT is not set: run the tests with scripts/test, which \
             starts the AWS emulator (moto_server) and sets it, or start one yourself: \
             .venv/bin/moto_server -p 5000 & export SPRINTERS_TEST_AWS_ENDPOINT=http://127.0.0.1:5000"
        )
    })
}

/// Client settings for the emulator.
pub fn config() -> AwsClientConfig {
    AwsClientConfig::new()
        .endpoint_url(endpoint())
        .unwrap()
        .operation_timeout(Duration::from_secs(60))
}

/// A fresh 12-digit account id, so that tests sharing one emulator never
/// see each other's instances, groups or images.
pub fn fresh_account() -> AccountId {
    let n = fastrand::u64(100_000_000_000..1_000_000_000_000);
    AccountId::parse(&n.to_string()).unwrap()
}

/// Unique per test run, for controller ids.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", fastrand::u32(..))
}

/// The platform's own (emulated) credentials.
pub fn platform_credentials() -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(aws_credential_types::Credentials::new(
        "AKIAPLATFORMEXAMPLE",
        "platform-secret",
        None,
        None,
        "test",
    ))
}

/// Credentials in `account`, by assuming its role in the emulator (which,
/// like AWS, then acts in that account).
pub async fn customer_credentials(account: &AccountId) -> Credentials {
    let role = CustomerRole::new(
        account,
        &format!("arn:aws:iam::{account}:role/SprintersRole"),
        SecretString::from("agreed-external-id".to_owned()),
    )
    .unwrap();
    let provider = AssumeRoleProvider::builder(config())
        .platform_credentials(platform_credentials())
        .role(OwnerId::new(31337), account.clone(), role)
        .build()
        .await;
    provider
        .credentials(CredentialsRequest::new(
            account.clone(),
            OwnerId::new(31337),
            Owner::parse("octo-org").unwrap(),
        ))
        .await
        .unwrap()
}

/// A raw EC2 client in `account`, for setting up and inspecting what the
/// launcher did (not through the launcher).
pub fn ec2(credentials: &Credentials, region: &Region) -> aws_sdk_ec2::Client {
    config().ec2(region, credentials)
}

/// A runner image published in the emulator account `client` acts in.
pub async fn publish_image(client: &aws_sdk_ec2::Client, image_name: &str) -> String {
    sprinters_aws::testing::publish_runner_image(client, image_name)
        .await
        .unwrap()
}

/// Records the name of every AWS operation a client calls.
#[derive(Debug, Clone, Default)]
pub struct OperationLog {
    calls: Arc<Mutex<Vec<String>>>,
}

impl OperationLog {
    /// `service:Operation` of each call, in order (e.g. `ec2:RunInstances`).
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    /// As an interceptor to add to a client config.
    pub fn interceptor(&self) -> SharedInterceptor {
        SharedInterceptor::new(self.clone())
    }
}

impl Intercept for OperationLog {
    fn name(&self) -> &'static str {
        "OperationLog"
    }

    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(meta) = cfg.load::<Metadata>() {
            let service = match meta.service() {
                "EC2" | "ec2" => "ec2",
                "STS" | "sts" => "sts",
                other => other,
            };
            self.calls.lock().unwrap().push(format!(
                "{}:{}",
                service.to_ascii_lowercase(),
                meta.name()
            ));
        }
        Ok(())
    }
}
