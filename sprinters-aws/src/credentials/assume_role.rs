//! [`AssumeRoleProvider`]: the customer's role, assumed with the agreed
//! external id.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::provider::SharedCredentialsProvider;
use secrecy::{ExposeSecret, SecretString};
use sprinters_core::domain::{AccountId, Owner, OwnerId, Region};
use sprinters_core::ports::{CredentialProvider, Credentials, CredentialsRequest};
use sprinters_core::time::{Clock, SystemClock, Timestamp};
use sprinters_core::{Error, ErrorKind, Result};

use super::cache::{ConnectionKey, CredentialCache};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::error::{Failure, map_sdk_error};
use crate::policy::validate_external_id;
use crate::sdk::AwsClientConfig;

/// STS's minimum: the shortest useful session.
const SESSION: Duration = Duration::from_secs(900);
/// Credentials are refreshed this long before they expire, so a launch
/// never starts with credentials about to lapse.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// The role of one customer account and the external id agreed with it.
#[derive(Clone)]
pub struct CustomerRole {
    role_arn: String,
    external_id: SecretString,
}

impl CustomerRole {
    /// `role_arn` must be an IAM role of `account`; the external id must
    /// follow IAM's rules.
    pub fn new(account: &AccountId, role_arn: &str, external_id: SecretString) -> Result<Self> {
        let role = role_arn
            .strip_prefix("arn:")
            .and_then(|r| r.split_once(":iam::"))
            .filter(|(partition, _)| partition.starts_with("aws"))
            .and_then(|(_, r)| r.split_once(":role/"))
            .filter(|(acct, name)| *acct == account.as_str() && !name.is_empty());
        if role.is_none() {
            return Err(Error::config(format!(
                "role {role_arn:?} is not an IAM role of account {account}; \
                 expected arn:aws:iam::{account}:role/NAME (the RoleArn output of the stack)"
            )));
        }
        validate_external_id(external_id.expose_secret())?;
        Ok(Self {
            role_arn: role_arn.to_owned(),
            external_id,
        })
    }

    /// The role's ARN.
    pub fn role_arn(&self) -> &str {
        &self.role_arn
    }

    /// Whether `other` is assumed with the same external id: two owners'
    /// connections to one account must not share one.
    pub fn same_external_id(&self, other: &CustomerRole) -> bool {
        self.external_id.expose_secret() == other.external_id.expose_secret()
    }
}

impl fmt::Debug for CustomerRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustomerRole")
            .field("role_arn", &self.role_arn)
            .field("external_id", &"[REDACTED]")
            .finish()
    }
}

/// Assumes each customer's role with `sts:AssumeRole` and its external id,
/// for 15 minutes, and keeps the credentials until 5 minutes before they
/// expire. Concurrent callers for one connection share one call.
///
/// Roles are kept per connection, an owner (GitHub account id) and an AWS
/// account: an owner naming another owner's account finds no role, and
/// two owners sharing an account each assume their own role with their own
/// external id. Connections can be added and removed while it runs.
#[derive(Debug)]
pub struct AssumeRoleProvider {
    sts: aws_sdk_sts::Client,
    roles: RwLock<HashMap<ConnectionKey, CustomerRole>>,
    platform_account: Option<AccountId>,
    cache: CredentialCache,
    clock: Arc<dyn Clock>,
}

impl AssumeRoleProvider {
    /// A builder; the platform's own credentials come from the SDK's default
    /// chain unless [`AssumeRoleProviderBuilder::platform_credentials`] sets them.
    pub fn builder(config: AwsClientConfig) -> AssumeRoleProviderBuilder {
        AssumeRoleProviderBuilder {
            config,
            region: Region::us_east_1(),
            platform_credentials: None,
            platform_account: None,
            roles: HashMap::new(),
            clock: Arc::new(SystemClock),
        }
    }

    fn role(&self, key: &ConnectionKey) -> Option<CustomerRole> {
        self.roles
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// Connects `account` to the owner `owner_id` through `role`, replacing
    /// the connection's role if it had one.
    pub fn connect(&self, owner_id: OwnerId, account: AccountId, role: CustomerRole) {
        let key = (owner_id, account);
        let previous = self
            .roles
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), role.clone());
        // Another role or external id: credentials of the old one go.
        if previous.is_some_and(|p| p.role_arn != role.role_arn || !p.same_external_id(&role)) {
            self.cache.evict(&key);
        }
    }

    /// Removes the connection: its role is never assumed again.
    pub fn disconnect(&self, owner_id: OwnerId, account: &AccountId) {
        let key = (owner_id, account.clone());
        self.roles
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        self.cache.evict(&key);
    }

    fn session_name(owner: &Owner) -> String {
        // IAM allows [\w+=,.@-]{2,64}; GitHub logins are letters, digits
        // and hyphens, so only the length needs care.
        let mut name = format!("sprinters-{}", owner.as_str());
        name.truncate(64);
        name
    }

    async fn assume(
        &self,
        role: &CustomerRole,
        request: &CredentialsRequest,
    ) -> Result<Credentials> {
        let output = self
            .sts
            .assume_role()
            .role_arn(&role.role_arn)
            .role_session_name(Self::session_name(&request.owner))
            .external_id(role.external_id.expose_secret())
            .duration_seconds(SESSION.as_secs() as i32)
            .send()
            .await
            .map_err(|e| self.assume_error(e, role, &request.account))?;
        let issued = output.credentials().ok_or_else(|| {
            Error::unavailable(format!(
                "STS returned no credentials for {} (account {})",
                role.role_arn, request.account
            ))
        })?;
        let expires_at = SystemTime::try_from(*issued.expiration())
            .map(Timestamp::from_system_time)
            .unwrap_or_else(|_| self.clock.now().saturating_add(SESSION));
        Ok(Credentials {
            access_key_id: issued.access_key_id().to_owned(),
            secret_access_key: SecretString::from(issued.secret_access_key().to_owned()),
            session_token: Some(SecretString::from(issued.session_token().to_owned())),
            expires_at: Some(expires_at),
        })
    }

    /// A refused AssumeRole almost always means the trust policy: say what
    /// it must contain (but never the external id itself).
    fn assume_error<E, R>(
        &self,
        err: SdkError<E, R>,
        role: &CustomerRole,
        account: &AccountId,
    ) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: fmt::Debug + Send + Sync + 'static,
    {
        let failure = Failure::of(&err);
        if failure.kind != ErrorKind::PermissionDenied {
            let context = format!("assuming {} for account {account}", role.role_arn);
            return map_sdk_error(err, "sts:AssumeRole", &context);
        }
        let platform = self.platform_account.as_ref().map_or_else(
            || "the platform's AWS account".to_owned(),
            |a| format!("arn:aws:iam::{a}:root"),
        );
        let message = format!(
            "cannot assume {} for account {account} ({}: {}). The role must exist and its trust \
             policy must allow sts:AssumeRole to {platform} with the condition StringEquals \
             sts:ExternalId = the external id agreed for this account (print the policy with \
             `sprinters policy trust`)",
            role.role_arn, failure.code, failure.detail
        );
        Error::new(ErrorKind::PermissionDenied, message).with_source(err)
    }
}

#[async_trait]
impl CredentialProvider for AssumeRoleProvider {
    async fn credentials(&self, request: CredentialsRequest) -> Result<Credentials> {
        let key = (request.owner_id, request.account.clone());
        let role = self.role(&key).ok_or_else(|| {
            Error::not_found(format!(
                "no role is connected for account {} of {} ({}); connect its RoleArn and external id",
                request.account, request.owner, request.owner_id
            ))
        })?;
        self.cache.get(&key, || self.assume(&role, &request)).await
    }
}

/// Builds an [`AssumeRoleProvider`].
#[derive(Debug)]
pub struct AssumeRoleProviderBuilder {
    config: AwsClientConfig,
    region: Region,
    platform_credentials: Option<SharedCredentialsProvider>,
    platform_account: Option<AccountId>,
    roles: HashMap<ConnectionKey, CustomerRole>,
    clock: Arc<dyn Clock>,
}

impl AssumeRoleProviderBuilder {
    /// The region of the STS endpoint (default `us-east-1`).
    pub fn region(mut self, region: Region) -> Self {
        self.region = region;
        self
    }

    /// The platform's own credentials, which call `sts:AssumeRole`.
    pub fn platform_credentials(mut self, credentials: SharedCredentialsProvider) -> Self {
        self.platform_credentials = Some(credentials);
        self
    }

    /// The platform's account, named in error messages about trust.
    pub fn platform_account(mut self, account: AccountId) -> Self {
        self.platform_account = Some(account);
        self
    }

    /// The role to assume for `account` on behalf of the owner `owner_id`.
    pub fn role(mut self, owner_id: OwnerId, account: AccountId, role: CustomerRole) -> Self {
        self.roles.insert((owner_id, account), role);
        self
    }

    /// The clock expiries are checked against.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The provider. Loads the SDK's default credential chain when no
    /// platform credentials were given.
    pub async fn build(self) -> AssumeRoleProvider {
        let platform = match self.platform_credentials {
            Some(p) => p,
            None => SharedCredentialsProvider::new(
                aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                    .build()
                    .await,
            ),
        };
        AssumeRoleProvider {
            sts: self.config.sts(&self.region, platform),
            roles: RwLock::new(self.roles),
            platform_account: self.platform_account,
            cache: CredentialCache::new(self.clock.clone(), REFRESH_BEFORE),
            clock: self.clock,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> AccountId {
        AccountId::parse("123456789012").unwrap()
    }

    #[test]
    fn a_role_must_belong_to_its_account() {
        let ext = || SecretString::from("agreed-external-id".to_owned());
        assert!(
            CustomerRole::new(
                &account(),
                "arn:aws:iam::123456789012:role/Sprinters",
                ext()
            )
            .is_ok()
        );
        for bad in [
            "arn:aws:iam::210987654321:role/Sprinters",
            "arn:aws:iam::123456789012:user/Sprinters",
            "arn:aws:iam::123456789012:role/",
            "123456789012",
        ] {
            let err = CustomerRole::new(&account(), bad, ext()).unwrap_err();
            assert_eq!(*err.kind(), ErrorKind::Config, "{bad}");
            assert!(err.message().contains(bad), "{err}");
        }
        let short = CustomerRole::new(
            &account(),
            "arn:aws:iam::123456789012:role/Sprinters",
            SecretString::from("x".to_owned()),
        );
        assert!(short.is_err(), "an external id of one character is refused");
    }

    #[test]
    fn the_external_id_never_shows_in_debug() {
        let role = CustomerRole::new(
            &account(),
            "arn:aws:iam::123456789012:role/Sprinters",
            SecretString::from("agreed-external-id".to_owned()),
        )
        .unwrap();
        assert!(!format!("{role:?}").contains("agreed-external-id"));
    }

    #[test]
    fn session_names_fit_iam() {
        let long = Owner::parse(&"a".repeat(39)).unwrap();
        let name = AssumeRoleProvider::session_name(&long);
        assert!(name.len() <= 64 && name.starts_with("sprinters-"), "{name}");
    }
}
