//! Bad input and tampering on the SQLite store's files: nothing of a record
//! is readable on disk, a sealed body moved to another row (a job's or a
//! vault entry's), version or key, or with a flipped byte, fails to open
//! with an integrity error, and a wrong master key is
//! refused before anything is written. Nothing is ever garbage: either the
//! right record or an error.

// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use sprinters_core::ErrorKind;
use sprinters_core::domain::{AccountId, JobId, JobKey, RunAttempt};
use sprinters_core::ports::{JobStore, PutJob};
use sprinters_core::testing::sample_record;
use sprinters_store::{DATABASE_FILE, MasterKey, SqliteJobStore};

fn key(id: u64) -> JobKey {
    JobKey::new(JobId::new(id), RunAttempt::FIRST)
}

/// A store with `n` jobs of account 111111111111 and one of account
/// 222222222222 (job 100, under a data key of its own), closed again.
async fn seeded(dir: &Path, master: &MasterKey, n: u64) {
    let store = SqliteJobStore::open_with_key(dir, master).unwrap();
    for i in (1..=n).chain([100]) {
        let mut r = sample_record(i, "secret-org/private-repo", 1_700_000_000_000 + i);
        let account = if i == 100 {
            "222222222222"
        } else {
            "111111111111"
        };
        r.account = AccountId::parse(account).ok();
        r.labels = vec![
            "sprinters:aws:ubuntu-latest:c7g.xlarge".into(),
            "pin-label-xyz".into(),
        ];
        store.put_job(PutJob::create(r)).await.unwrap();
    }
}

/// The database and its WAL, as anyone with the files reads them.
fn on_disk(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for name in [DATABASE_FILE.to_owned(), format!("{DATABASE_FILE}-wal")] {
        if let Ok(b) = std::fs::read(dir.join(name)) {
            bytes.extend(b);
        }
    }
    bytes
}

/// What job 1's row holds of its sealed body.
type Sealed = (Vec<u8>, i64, i64);

/// A change made to the file behind the store's back.
type Edit = Box<dyn FnOnce(&rusqlite::Connection)>;

/// Rewrites job 1's row (the first inserted) on the closed store's file,
/// as an attacker with write access to it could, and checks that its
/// sealed body, key or version did change.
fn tamper(dir: &Path, edit: impl FnOnce(&rusqlite::Connection)) {
    let conn = rusqlite::Connection::open(dir.join(DATABASE_FILE)).unwrap();
    let row = |conn: &rusqlite::Connection| -> Sealed {
        conn.query_row(
            "SELECT body, key_id, sealed_version FROM jobs WHERE seq = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    };
    let before = row(&conn);
    edit(&conn);
    assert_ne!(row(&conn), before, "the tampering changed nothing");
}

fn run(sql: &'static str) -> impl FnOnce(&rusqlite::Connection) {
    move |conn| {
        conn.execute(sql, []).unwrap();
    }
}

#[tokio::test]
async fn nothing_of_a_record_is_readable_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    seeded(dir.path(), &MasterKey::generate(), 3).await;
    let everything = on_disk(dir.path());
    assert!(
        everything.windows(6).any(|w| w == b"queued"),
        "the search reads the rows: a job's state is in clear"
    );
    for needle in [
        "secret-org",
        "private-repo",
        "c7g.xlarge",
        "pin-label",
        "111111111111",
        "build 1",
    ] {
        assert!(
            !everything
                .windows(needle.len())
                .any(|w| w == needle.as_bytes()),
            "`{needle}` is readable on disk"
        );
    }
}

#[tokio::test]
async fn a_body_moved_to_another_row_version_or_key_fails_to_open() {
    let master = MasterKey::generate();
    let flip = |conn: &rusqlite::Connection| {
        let mut body: Vec<u8> = conn
            .query_row("SELECT body FROM jobs WHERE seq = 1", [], |r| r.get(0))
            .unwrap();
        body[20] ^= 1;
        conn.execute("UPDATE jobs SET body = ?1 WHERE seq = 1", [body])
            .unwrap();
    };
    let cases: Vec<(&str, Edit)> = vec![
        (
            "another job's row",
            Box::new(run("UPDATE jobs SET (body, key_id, sealed_version) = \
                 (SELECT body, key_id, sealed_version FROM jobs WHERE seq = 2) WHERE seq = 1")),
        ),
        (
            "another version",
            Box::new(run(
                "UPDATE jobs SET sealed_version = sealed_version + 1 WHERE seq = 1",
            )),
        ),
        (
            "another account's key",
            Box::new(run(
                "UPDATE jobs SET key_id = (SELECT key_id FROM jobs WHERE seq = 3) WHERE seq = 1",
            )),
        ),
        ("a flipped byte", Box::new(flip)),
    ];
    for (what, edit) in cases {
        let dir = tempfile::tempdir().unwrap();
        seeded(dir.path(), &master, 2).await;
        tamper(dir.path(), edit);
        let store = SqliteJobStore::open_with_key(dir.path(), &master).unwrap();
        let err = store.get_job(key(1)).await.unwrap_err();
        assert_eq!(*err.kind(), ErrorKind::Integrity, "{what}: {err}");
        assert!(
            store.get_job(key(2)).await.unwrap().is_some(),
            "{what}: the untouched row still opens"
        );
    }
}

#[tokio::test]
async fn a_vault_body_moved_to_a_job_fails_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate();
    seeded(dir.path(), &master, 1).await;
    {
        use sprinters_core::domain::OwnerId;
        use sprinters_core::vault::{CredentialVault, StoredAccessKey};
        let store = SqliteJobStore::open_with_key(dir.path(), &master).unwrap();
        let account = AccountId::parse("111111111111").unwrap();
        store
            .put_access_key(
                OwnerId::new(1),
                account,
                StoredAccessKey {
                    access_key_id: "AKIAEXAMPLEEXAMPLE01".into(),
                    secret_access_key: "s3cr3t-s3cr3t-s3cr3t".to_owned().into(),
                },
            )
            .await
            .unwrap();
    }
    tamper(
        dir.path(),
        run("UPDATE jobs SET (body, key_id, sealed_version) = \
             (SELECT body, key_id, version FROM vault LIMIT 1) WHERE seq = 1"),
    );
    let store = SqliteJobStore::open_with_key(dir.path(), &master).unwrap();
    let err = store.get_job(key(1)).await.unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Integrity, "{err}");
}

#[tokio::test]
async fn a_wrong_master_key_is_refused_at_open_and_nothing_is_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate();
    seeded(dir.path(), &master, 2).await;
    let before = on_disk(dir.path());
    let err = SqliteJobStore::open_with_key(dir.path(), &MasterKey::generate()).unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Config);
    assert!(
        err.to_string()
            .contains("the master key does not open the store's key ring"),
        "{err}"
    );
    assert!(on_disk(dir.path()) == before, "nothing was changed");
    let store = SqliteJobStore::open_with_key(dir.path(), &master).unwrap();
    assert!(store.get_job(key(1)).await.unwrap().is_some());
}
