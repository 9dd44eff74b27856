//! The SQLite store passes the core conformance suites, before and after a
//! reopen.

// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sprinters_core::ports::{JobStore, ListJobs};
use sprinters_core::testing;
use sprinters_store::{MasterKey, SqliteJobStore};

#[tokio::test]
async fn sqlite_store_passes_the_job_store_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteJobStore::open_with_key(dir.path(), &MasterKey::generate()).unwrap();
    testing::job_store(&store).await;
}

/// The launch slots a claim holds are counted from the rows, not from
/// anything the process kept: they hold across a reopen.
#[tokio::test]
async fn a_reopened_store_still_counts_the_slots_held() {
    use sprinters_core::domain::AccountId;
    use sprinters_core::ports::{Claim, ClaimJob, PutJob, SlotCaps};
    use sprinters_core::time::Timestamp;
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate();
    let now = Timestamp::from_millis(10_000);
    let ttl = Duration::from_secs(60);
    let caps = SlotCaps::new(Some(1), None, None);
    let job = |n: u64| {
        let mut r = testing::sample_record(n, "octo/app", 1_000 + n);
        r.account = Some(AccountId::parse("111111111111").unwrap());
        r
    };
    {
        let store = SqliteJobStore::open_with_key(dir.path(), &key).unwrap();
        for n in [1, 2] {
            store.put_job(PutJob::create(job(n))).await.unwrap();
        }
        let first = ClaimJob::new(job(1).key, "a", now, ttl).within(caps);
        assert!(store.claim_job(first).await.unwrap().granted().is_some());
    }
    let store = SqliteJobStore::open_with_key(dir.path(), &key).unwrap();
    let second = ClaimJob::new(job(2).key, "a", now, ttl).within(caps);
    assert!(
        matches!(store.claim_job(second).await.unwrap(), Claim::Full(_)),
        "the claim taken before the reopen still holds the account's one slot"
    );
}

#[tokio::test]
async fn sqlite_store_passes_the_vault_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteJobStore::open_with_key(dir.path(), &MasterKey::generate()).unwrap();
    testing::credential_vault(&store).await;
}

#[tokio::test]
async fn everything_survives_a_reopen() {
    use sprinters_core::domain::{AccountId, DeliveryId, OwnerId};
    use sprinters_core::ports::{AcquireLease, PutJob, RecordDelivery};
    use sprinters_core::time::Timestamp;
    use sprinters_core::vault::{CredentialVault, StoredAccessKey};

    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate();
    let mut expected = Vec::new();
    {
        let store = SqliteJobStore::open_with_key(dir.path(), &key).unwrap();
        for i in 0..50u64 {
            let mut r = testing::sample_record(i + 1, "octo/app", 1_000 + i);
            r.account = AccountId::parse(if i % 2 == 0 {
                "111111111111"
            } else {
                "222222222222"
            })
            .ok();
            let v = store.put_job(PutJob::create(r.clone())).await.unwrap();
            r.name = Some(format!("renamed {i}"));
            store.put_job(PutJob::replace(r.clone(), v)).await.unwrap();
            expected.push(r);
        }
        store
            .record_delivery(RecordDelivery::new(
                DeliveryId::parse("d-1").unwrap(),
                Timestamp::from_millis(5),
            ))
            .await
            .unwrap();
        store
            .acquire_lease(AcquireLease::new(
                "leader",
                "a",
                Timestamp::from_millis(10),
                std::time::Duration::from_secs(60),
            ))
            .await
            .unwrap();
        let secret = StoredAccessKey {
            access_key_id: "AKIA1".into(),
            secret_access_key: "s3cr3t".to_owned().into(),
        };
        store
            .put_access_key(
                OwnerId::new(1),
                AccountId::parse("111111111111").unwrap(),
                secret,
            )
            .await
            .unwrap();
    }
    let store = SqliteJobStore::open_with_key(dir.path(), &key).unwrap();
    assert_eq!(store.job_count().await.unwrap(), 50);
    let page = store.list_jobs(ListJobs::newest(100)).await.unwrap();
    let mut got: Vec<_> = page
        .jobs
        .into_iter()
        .map(|j| (j.version, j.value))
        .collect();
    got.reverse();
    assert_eq!(got.len(), 50);
    for ((version, record), want) in got.iter().zip(&expected) {
        assert_eq!(record, want);
        assert_eq!(*version, 2);
    }
    assert!(
        store
            .delivery_seen(DeliveryId::parse("d-1").unwrap())
            .await
            .unwrap()
    );
    let grant = store
        .acquire_lease(AcquireLease::new(
            "leader",
            "b",
            Timestamp::from_millis(20),
            std::time::Duration::from_secs(60),
        ))
        .await
        .unwrap();
    assert!(!grant.acquired, "the lease survived the reopen");
    let stored = store
        .access_key(OwnerId::new(1), AccountId::parse("111111111111").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.access_key_id, "AKIA1");
}

#[tokio::test]
async fn a_second_opener_fails_fast_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate();
    let _first = SqliteJobStore::open_with_key(dir.path(), &key).unwrap();
    let err = SqliteJobStore::open_with_key(dir.path(), &key).unwrap_err();
    assert!(
        err.to_string().contains("another process has the store"),
        "{err}"
    );
}

#[tokio::test]
async fn tenant_records_survive_a_reopen() {
    use sprinters_core::domain::{AccountId, InstallationId, Owner, OwnerId};
    use sprinters_core::ports::PutTenant;
    use sprinters_core::tenant::{Connection, TenantRecord};
    use sprinters_core::time::Timestamp;

    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate();
    let mut kept = TenantRecord::new(
        OwnerId::new(1),
        InstallationId::new(10),
        Owner::parse("kept-org").unwrap(),
    );
    kept.connections.push(Connection::pending(
        AccountId::parse("111111111111").unwrap(),
        Timestamp::from_millis(1),
    ));
    {
        let store = SqliteJobStore::open_with_key(dir.path(), &key).unwrap();
        let v = store
            .put_tenant(PutTenant::create(kept.clone()))
            .await
            .unwrap();
        kept.suspended = true;
        store
            .put_tenant(PutTenant::replace(kept.clone(), v))
            .await
            .unwrap();
        let gone = TenantRecord::new(
            OwnerId::new(2),
            InstallationId::new(20),
            Owner::parse("gone-org").unwrap(),
        );
        let v = store.put_tenant(PutTenant::create(gone)).await.unwrap();
        store.delete_tenant(OwnerId::new(2), v).await.unwrap();
    }
    let store = SqliteJobStore::open_with_key(dir.path(), &key).unwrap();
    let listed = store.list_tenants().await.unwrap();
    assert_eq!(listed.len(), 1, "the deleted owner stays deleted");
    assert_eq!(listed[0].value, kept);
    assert_eq!(listed[0].version, 2);
    let after = store.get_tenant(OwnerId::new(1)).await.unwrap().unwrap();
    assert_eq!(after.value, kept);
}

#[tokio::test]
async fn rotated_keys_keep_every_record_readable() {
    use sprinters_core::domain::{AccountId, JobId, JobKey, RunAttempt};
    use sprinters_core::ports::PutJob;

    let dir = tempfile::tempdir().unwrap();
    let old = MasterKey::generate();
    let new = MasterKey::generate();
    let accounts = ["111111111111", "222222222222"];
    let store = SqliteJobStore::open_with_key(dir.path(), &old).unwrap();
    let put = |id: u64, account: &str| {
        let mut r = testing::sample_record(id, "octo/app", id);
        r.account = AccountId::parse(account).ok();
        store.put_job(PutJob::create(r))
    };
    for (i, account) in accounts.iter().enumerate() {
        put(i as u64 + 1, account).await.unwrap();
    }
    // A new data key for one account: older records keep theirs.
    store
        .rotate_data_key(AccountId::parse(accounts[0]).ok().as_ref())
        .await
        .unwrap();
    put(3, accounts[0]).await.unwrap();
    store.rotate_master_key(&new).await.unwrap();
    put(4, accounts[1]).await.unwrap();
    drop(store);
    let err = SqliteJobStore::open_with_key(dir.path(), &old).unwrap_err();
    assert!(err.to_string().contains("does not open"), "{err}");
    let store = SqliteJobStore::open_with_key(dir.path(), &new).unwrap();
    for id in 1..=4 {
        let key = JobKey::new(JobId::new(id), RunAttempt::FIRST);
        assert!(
            store.get_job(key).await.unwrap().is_some(),
            "job {id} reads after the rotations"
        );
    }
}
