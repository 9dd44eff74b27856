//! Crypto-shredding on SQLite leaves nothing of the account in the files:
//! its wrapped data keys and sealed bodies are gone from the database and
//! its WAL, not merely unlinked into free space.

// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sprinters_core::domain::{AccountId, JobId, JobKey, OwnerId, RunAttempt};
use sprinters_core::ports::{JobStore, PutJob};
use sprinters_core::testing::sample_record;
use sprinters_core::vault::{CredentialVault, StoredAccessKey};
use sprinters_store::{DATABASE_FILE, MasterKey, SqliteJobStore};

fn record(id: u64, account: &str) -> sprinters_core::job::JobRecord {
    let mut r = sample_record(id, "octo/app", id);
    r.account = AccountId::parse(account).ok();
    r
}

/// Every wrapped key and sealed body in the file now, read as SQLite
/// sees it.
fn sealed_values(path: &std::path::Path) -> Vec<Vec<u8>> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut out = Vec::new();
    for sql in [
        "SELECT CAST(wrapped AS BLOB) FROM data_keys WHERE wrapped IS NOT NULL",
        "SELECT body FROM jobs",
        "SELECT body FROM vault",
    ] {
        let mut s = conn.prepare(sql).unwrap();
        let rows = s.query_map([], |r| r.get::<_, Vec<u8>>(0)).unwrap();
        out.extend(rows.map(|r| r.unwrap()));
    }
    out
}

fn on_disk(dir: &std::path::Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for name in [DATABASE_FILE.to_owned(), format!("{DATABASE_FILE}-wal")] {
        if let Ok(b) = std::fs::read(dir.join(name)) {
            bytes.extend(b);
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    // A 24-byte window of each value is enough to find it anywhere.
    let needle = &needle[..needle.len().min(24)];
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_account_leaves_no_key_or_body_in_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteJobStore::open_with_key(dir.path(), &MasterKey::generate()).unwrap();
    let doomed = AccountId::parse("111111111111").unwrap();
    for id in 1..=30 {
        store
            .put_job(PutJob::create(record(id, doomed.as_str())))
            .await
            .unwrap();
    }
    store
        .put_access_key(
            OwnerId::new(7),
            doomed.clone(),
            StoredAccessKey {
                access_key_id: "AKIAEXAMPLEEXAMPLE01".into(),
                secret_access_key: "s3cr3t-s3cr3t-s3cr3t".to_owned().into(),
            },
        )
        .await
        .unwrap();
    // Everything sealed so far is the doomed account's.
    let doomed_values = sealed_values(&dir.path().join(DATABASE_FILE));
    assert!(
        doomed_values.len() >= 32,
        "a key, 30 bodies and a vault entry"
    );
    for id in 100..=110 {
        store
            .put_job(PutJob::create(record(id, "222222222222")))
            .await
            .unwrap();
    }
    let before = on_disk(dir.path());
    assert!(
        doomed_values.iter().all(|v| contains(&before, v)),
        "the test sees the values in the files before the shred"
    );

    assert_eq!(store.delete_account(&doomed).await.unwrap(), 30);

    let after = on_disk(dir.path());
    let left = doomed_values.iter().filter(|v| contains(&after, v)).count();
    assert_eq!(
        left, 0,
        "{left} wrapped keys or sealed bodies of the shredded account are still in the files"
    );
    // The other account is untouched.
    let kept = JobKey::new(JobId::new(105), RunAttempt::FIRST);
    assert!(store.get_job(kept).await.unwrap().is_some());
}
