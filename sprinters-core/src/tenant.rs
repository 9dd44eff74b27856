//! The tenant record: what the store keeps about one owner, so that every
//! replica serves the same owners, bound to the same ids, with the same
//! connections, and a restart never asks GitHub again who holds a login.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::domain::{AccountId, InstallationId, Owner, OwnerId, Repository};
use crate::time::Timestamp;

/// The external id of one owner's connection to one AWS account: made by
/// the control plane (32 random bytes, hex), never chosen by the customer,
/// shown once to the operator for the customer's stack. `Debug` hides it.
#[derive(Clone)]
pub struct ExternalId(SecretString);

impl ExternalId {
    /// A new random external id (256 bits from the operating system).
    pub fn generate() -> Self {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self(SecretString::from(hex))
    }

    /// Wraps an external id agreed out of band (the TOML's).
    pub fn from_secret(secret: SecretString) -> Self {
        Self(secret)
    }

    /// The secret itself.
    pub fn secret(&self) -> &SecretString {
        &self.0
    }
}

impl fmt::Debug for ExternalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ExternalId([REDACTED])")
    }
}

impl PartialEq for ExternalId {
    fn eq(&self, other: &Self) -> bool {
        self.0.expose_secret() == other.0.expose_secret()
    }
}

impl Eq for ExternalId {}

// Serialized only into the store's sealed bodies (AES-256-GCM at rest).
impl Serialize for ExternalId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.expose_secret())
    }
}

impl<'de> Deserialize<'de> for ExternalId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Self(SecretString::from(s)))
    }
}

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// Made, with its external id; the customer's stack is not verified
    /// yet. Nothing launches through it.
    Pending,
    /// Verified: the role was assumed with the external id and a dry-run
    /// launch was allowed.
    Connected,
    /// Being disconnected: nothing launches through it, and its
    /// credentials serve only to end what runs there.
    Closing,
}

impl ConnectionState {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Pending => "pending",
            ConnectionState::Connected => "connected",
            ConnectionState::Closing => "closing",
        }
    }
}

/// One owner's connection to one AWS account, made at run time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Connection {
    /// The account.
    pub account: AccountId,
    /// The external id the role's trust policy requires.
    pub external_id: ExternalId,
    /// The role, once the customer gave its ARN.
    pub role_arn: Option<String>,
    /// Where it is.
    pub state: ConnectionState,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it was last verified.
    pub verified_at: Option<Timestamp>,
}

impl Connection {
    /// A pending connection to `account` with a fresh external id.
    pub fn pending(account: AccountId, now: Timestamp) -> Self {
        Self {
            account,
            external_id: ExternalId::generate(),
            role_arn: None,
            state: ConnectionState::Pending,
            created_at: now,
            verified_at: None,
        }
    }
}

/// What the store keeps about one owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TenantRecord {
    /// GitHub's account id: the tenant.
    pub owner_id: OwnerId,
    /// Its installation of the App.
    pub installation_id: InstallationId,
    /// Its login as last seen.
    pub login: Owner,
    /// The login a configured (`[[accounts]]`) entry named when it was
    /// bound: after a restart the entry is bound to this id again without
    /// asking GitHub, whoever holds the login by then.
    pub configured_as: Option<Owner>,
    /// Whether its installation is suspended.
    pub suspended: bool,
    /// Repositories taken out of its installation.
    pub removed_repositories: Vec<Repository>,
    /// Connections made at run time (the configured ones live in the
    /// configuration).
    pub connections: Vec<Connection>,
    /// The App was uninstalled. A configured owner keeps its record so
    /// that its login stays bound to its id across restarts: whoever takes
    /// the login meanwhile gets nothing, and the owner reinstalling gets
    /// its configuration back.
    pub uninstalled: bool,
    /// Its own policy over the platform's, set through the admin API
    /// (absent in records written before policies existed).
    #[serde(default)]
    pub policy: Option<crate::policy::OwnerPolicy>,
}

impl TenantRecord {
    /// A record for the owner `owner_id` bound to `installation_id`.
    pub fn new(owner_id: OwnerId, installation_id: InstallationId, login: Owner) -> Self {
        Self {
            owner_id,
            installation_id,
            login,
            configured_as: None,
            suspended: false,
            removed_repositories: Vec::new(),
            connections: Vec::new(),
            uninstalled: false,
            policy: None,
        }
    }

    /// Its connection to `account`.
    pub fn connection(&self, account: &AccountId) -> Option<&Connection> {
        self.connections.iter().find(|c| &c.account == account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_ids_are_random_long_and_never_shown() {
        let a = ExternalId::generate();
        let b = ExternalId::generate();
        assert_ne!(a, b);
        assert_eq!(a.secret().expose_secret().len(), 64, "256 bits in hex");
        assert!(!format!("{a:?}").contains(a.secret().expose_secret()));
        let c = Connection::pending(
            AccountId::parse("123456789012").unwrap(),
            Timestamp::from_millis(1),
        );
        assert!(!format!("{c:?}").contains(c.external_id.secret().expose_secret()));
    }
}
