//! Verifying a connection before any job uses it: the customer's role is
//! assumed with the connection's external id, then a `DryRun` launch of the
//! default runner asks EC2 whether the role may launch it.

use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;
use secrecy::SecretString;
use sprinters_core::Result;
use sprinters_core::domain::{
    AccountId, JobId, JobKey, Owner, OwnerId, Repository, RunAttempt, RunId, RunnerName,
};
use sprinters_core::labels::RunnerSpec;
use sprinters_core::ports::{CredentialProvider, CredentialsRequest, LaunchRequest, Market};

use crate::{AssumeRoleProvider, AwsClientConfig, CustomerRole, Ec2Launcher};

/// One owner's connection to one account, to verify.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectionCheck {
    /// The owner (GitHub account id), which names the STS session.
    pub owner_id: OwnerId,
    /// Its login.
    pub owner: Owner,
    /// The customer's account.
    pub account: AccountId,
    /// The role, with the connection's external id.
    pub role: CustomerRole,
    /// What a default job would launch (its region, image and type).
    pub spec: RunnerSpec,
    /// The deployment's controller id (tagged on the dry-run request).
    pub controller_id: String,
}

impl ConnectionCheck {
    /// A check of `role` for `account` on behalf of `owner`, with the
    /// default launch `spec`.
    pub fn new(
        owner_id: OwnerId,
        owner: Owner,
        account: AccountId,
        role: CustomerRole,
        spec: RunnerSpec,
        controller_id: impl Into<String>,
    ) -> Self {
        Self {
            owner_id,
            owner,
            account,
            role,
            spec,
            controller_id: controller_id.into(),
        }
    }
}

/// Assumes the connection's role (a refused trust is `PermissionDenied`
/// saying what the trust policy must hold), then asks EC2 for a `DryRun`
/// of the default launch with those credentials (a missing permission is
/// `PermissionDenied` naming it). Nothing is launched.
pub async fn verify_connection(
    aws: &AwsClientConfig,
    platform: Option<SharedCredentialsProvider>,
    launcher: &Ec2Launcher,
    check: ConnectionCheck,
) -> Result<()> {
    let mut roles = AssumeRoleProvider::builder(aws.clone()).role(
        check.owner_id,
        check.account.clone(),
        check.role.clone(),
    );
    if let Some(platform) = platform {
        roles = roles.platform_credentials(platform);
    }
    let credentials = roles
        .build()
        .await
        .credentials(CredentialsRequest::new(
            check.account.clone(),
            check.owner_id,
            check.owner.clone(),
        ))
        .await?;
    let job = JobKey::new(JobId::new(1), RunAttempt::FIRST);
    let repository = Repository::parse(&format!("{}/sprinters-verify", check.owner))
        .map_err(|e| sprinters_core::Error::config(e.to_string()))?;
    let request = LaunchRequest::new(
        check.account,
        credentials,
        check.controller_id,
        job,
        RunId::new(1),
        repository,
        RunnerName::for_launch(job, 1),
        check.spec,
        Market::OnDemand,
        format!("sprinters-verify-{:016x}", fastrand::u64(..)),
        // No runner ever starts from a dry run ("dry-run", base64).
        SecretString::from("ZHJ5LXJ1bg==".to_owned()),
        Duration::from_secs(900),
    );
    launcher.dry_run(request).await
}
