//! What the database stores share: how a record becomes a sealed body and
//! clear columns, and back. The PostgreSQL and SQLite stores differ only in
//! their SQL.

use secrecy::{ExposeSecret, SecretString};
use sprinters_core::domain::{AccountId, InstallationId, Owner, OwnerId, Repository};
use sprinters_core::job::{JobRecord, Lease};
use sprinters_core::tenant::{Connection, TenantRecord};
use sprinters_core::time::Timestamp;
use sprinters_core::vault::StoredAccessKey;
use sprinters_core::{Error, Result};
use zeroize::Zeroizing;

/// A time as the integer milliseconds a column holds.
pub(crate) fn millis(t: Timestamp) -> i64 {
    i64::try_from(t.as_millis()).unwrap_or(i64::MAX)
}

/// A job's key as the bytes its opaque id is computed from.
pub(crate) fn job_id_bytes(key: sprinters_core::domain::JobKey) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..8].copy_from_slice(&key.job_id.get().to_le_bytes());
    b[8..].copy_from_slice(&key.run_attempt.get().to_le_bytes());
    b
}

/// An opaque id read back from a column: 16 bytes, or the store is damaged.
pub(crate) fn opaque_id(raw: &[u8], what: &str) -> Result<[u8; 16]> {
    raw.try_into()
        .map_err(|_| Error::integrity(format!("a {what} id in the store is not 16 bytes")))
}

/// A job record's body: the record without its launch claim, which lives
/// in clear columns (taken and renewed without re-sealing).
pub(crate) fn job_plaintext(record: &JobRecord) -> Result<Zeroizing<Vec<u8>>> {
    let mut bare = record.clone();
    bare.lease = None;
    postcard::to_allocvec(&bare)
        .map(Zeroizing::new)
        .map_err(|e| Error::integrity(format!("encoding a record: {e}")))
}

/// A job record from its opened body and its claim columns.
pub(crate) fn job_record(
    plaintext: &[u8],
    lease_owner: Option<String>,
    lease_expires: Option<i64>,
) -> Result<JobRecord> {
    let mut record: JobRecord = postcard::from_bytes(plaintext)
        .map_err(|e| Error::integrity(format!("a job record is undecodable: {e}")))?;
    record.lease = match (lease_owner, lease_expires) {
        (Some(owner), Some(at)) => Some(Lease {
            owner,
            expires_at: Timestamp::from_millis(at.max(0) as u64),
        }),
        _ => None,
    };
    Ok(record)
}

/// An owner's record from its opened body. Records written before owners
/// had policies lack the last field; they read as having none.
/// Either layout must take the whole body: postcard ignores trailing bytes,
/// so a record of today misread as the old layout would lose its policy.
pub(crate) fn tenant_record(plaintext: &[u8]) -> Result<TenantRecord> {
    match postcard::take_from_bytes::<TenantRecord>(plaintext) {
        Ok((record, [])) => return Ok(record),
        Ok(_) => {
            return Err(Error::integrity(
                "a tenant record has bytes after its end: written by a newer release?",
            ));
        }
        Err(_) => {}
    }
    let old: TenantRecordBeforePolicies = match postcard::take_from_bytes(plaintext) {
        Ok((old, [])) => old,
        Ok(_) => {
            return Err(Error::integrity(
                "a tenant record is undecodable: neither layout takes all of it",
            ));
        }
        Err(e) => {
            return Err(Error::integrity(format!(
                "a tenant record is undecodable: {e}"
            )));
        }
    };
    let mut record = TenantRecord::new(old.owner_id, old.installation_id, old.login);
    record.configured_as = old.configured_as;
    record.suspended = old.suspended;
    record.removed_repositories = old.removed_repositories;
    record.connections = old.connections;
    record.uninstalled = old.uninstalled;
    Ok(record)
}

/// [`TenantRecord`] as it was written before its `policy` field: postcard
/// has no field names, so the old layout is read as its own struct.
#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct TenantRecordBeforePolicies {
    owner_id: OwnerId,
    installation_id: InstallationId,
    login: Owner,
    configured_as: Option<Owner>,
    suspended: bool,
    removed_repositories: Vec<Repository>,
    connections: Vec<Connection>,
    uninstalled: bool,
}

/// A label set's bytes, for its keyed-hash column.
pub(crate) fn label_set_bytes(labels: &sprinters_core::labels::LabelSetKey) -> Result<Vec<u8>> {
    postcard::to_allocvec(labels)
        .map_err(|e| Error::integrity(format!("encoding a label set: {e}")))
}

/// A stored access key's body; the secret is wiped once sealed.
pub(crate) fn access_key_plaintext(
    owner: OwnerId,
    account: &AccountId,
    key: &StoredAccessKey,
) -> Result<Zeroizing<Vec<u8>>> {
    postcard::to_allocvec(&(
        owner,
        account,
        &key.access_key_id,
        key.secret_access_key.expose_secret(),
    ))
    .map(Zeroizing::new)
    .map_err(|e| Error::integrity(format!("encoding an access key: {e}")))
}

/// A stored access key and whose it is, from its opened body.
pub(crate) fn access_key(plaintext: &[u8]) -> Result<((OwnerId, AccountId), StoredAccessKey)> {
    let (owner, account, access_key_id, secret): (OwnerId, AccountId, String, String) =
        postcard::from_bytes(plaintext)
            .map_err(|e| Error::integrity(format!("a stored access key is undecodable: {e}")))?;
    let secret = Zeroizing::new(secret);
    Ok((
        (owner, account),
        StoredAccessKey {
            access_key_id,
            secret_access_key: SecretString::from(secret.as_str().to_owned()),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owners_record_written_before_policies_reads_as_having_none() {
        // The old layout, as an older release wrote it.
        let login = Owner::parse("octo-org").unwrap();
        let old = TenantRecordBeforePolicies {
            owner_id: OwnerId::new(9919),
            installation_id: InstallationId::new(4242),
            login: login.clone(),
            configured_as: Some(login.clone()),
            suspended: true,
            removed_repositories: vec![Repository::parse("octo-org/gone").unwrap()],
            connections: Vec::new(),
            uninstalled: false,
        };
        let read = tenant_record(&postcard::to_allocvec(&old).unwrap()).unwrap();
        assert_eq!(read.owner_id, old.owner_id);
        assert!(read.suspended);
        assert_eq!(read.removed_repositories, old.removed_repositories);
        assert_eq!(read.policy, None);

        // A record of today keeps its policy.
        let mut new = read.clone();
        new.policy = Some(serde_json::from_str(r#"{"max_vcpus": 8}"#).unwrap());
        let back = tenant_record(&postcard::to_allocvec(&new).unwrap()).unwrap();
        assert_eq!(back, new);
        assert!(tenant_record(b"\xff\xff").is_err());
        // A record with more than either layout holds is refused, never
        // read as the old layout without its policy.
        let mut longer = postcard::to_allocvec(&new).unwrap();
        longer.push(0);
        assert!(tenant_record(&longer).is_err());
    }
}
