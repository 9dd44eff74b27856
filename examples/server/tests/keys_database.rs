//! `sprinters keys add-access-key|rotate --config FILE` against a shared
//! PostgreSQL database (started by `scripts/test`), as an operator runs
//! them beside the replicas.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::database::{ca_file, fresh_database};
use common::{sprinters, sprinters_with_stdin};
use secrecy::{ExposeSecret, SecretString};
use sprinters_core::domain::{AccountId, OwnerId};
use sprinters_core::ports::{AcquireLease, JobStore, ReleaseLease};
use sprinters_core::time::Timestamp;
use sprinters_core::vault::CredentialVault;
use sprinters_store::{MasterKey, PostgresJobStore, StaticKeyProvider};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// A `serve` configuration on the database `db`, its master key in `dir`.
fn write_config(dir: &Path, db: &str) -> String {
    std::fs::write(dir.join("webhook-secret"), "s3cret-s3cret-s3cret\n").unwrap();
    std::fs::write(dir.join("app.pem"), "unused by the keys commands\n").unwrap();
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{dir}/data"
master_key_file = "{dir}/master.key"

[store]
url = "{db}"
ca_file = "{ca}"

[github]
app_id = 778
private_key_file = "{dir}/app.pem"
webhook_secret_file = "{dir}/webhook-secret"
"#,
        dir = dir.display(),
        ca = ca_file(),
    );
    let path = dir.join("sprinters.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

async fn open(db: &str, key_file: &Path) -> PostgresJobStore {
    PostgresJobStore::builder(SecretString::from(db.to_owned()))
        .ca_file(ca_file())
        .connect(&StaticKeyProvider::new(
            MasterKey::from_file(key_file).unwrap(),
        ))
        .await
        .unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// An access key added with `--config` lands in the database every
/// replica reads; data keys rotate while a replica runs; the master key
/// rotates only once no replica runs, and the rotated database opens with
/// the new key file only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keys_commands_work_on_the_configured_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database("sprinters_keys").await;
    let config = write_config(dir.path(), &db);
    let key_file = dir.path().join("master.key");
    MasterKey::create_file(&key_file).unwrap();
    // A running replica: it made the schema and holds the reconciler.
    let replica = open(&db, &key_file).await;
    let now = Timestamp::from_system_time(std::time::SystemTime::now());
    let lease = AcquireLease::new(
        sprinters_core::engine::LEADER_LEASE,
        "replica-1",
        now,
        std::time::Duration::from_secs(300),
    );
    assert!(replica.acquire_lease(lease).await.unwrap().acquired);

    let (owner, account) = (OwnerId::new(42), AccountId::parse("123456789012").unwrap());
    let add = [
        "keys",
        "add-access-key",
        "--config",
        &config,
        "--owner-id",
        "42",
        "--account",
        "123456789012",
        "--access-key-id",
        "AKIAIOSFODNN7EXAMPLE",
    ];
    let out = sprinters_with_stdin(&add, SECRET);
    assert!(out.status.success(), "{}", stderr(&out));
    let stored = replica
        .access_key(owner, account.clone())
        .await
        .unwrap()
        .expect("the replica reads the key from the database");
    assert_eq!(stored.secret_access_key.expose_secret(), SECRET);

    let out = sprinters(&["keys", "rotate", "--config", &config, "--data-keys"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = sprinters(&["keys", "rotate", "--config", &config]);
    assert!(!out.status.success(), "refused while a replica runs");
    let err = stderr(&out);
    assert!(err.contains("replica-1 is running"), "{err}");
    assert!(!dir.path().join("master.key.new").exists(), "nothing left");

    replica
        .release_lease(ReleaseLease::new(
            sprinters_core::engine::LEADER_LEASE,
            "replica-1",
        ))
        .await
        .unwrap();
    drop(replica);
    let before = std::fs::read(&key_file).unwrap();
    let out = sprinters(&["keys", "rotate", "--config", &config]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(dir.path().join("master.key.old")).unwrap(),
        before
    );
    let refused = PostgresJobStore::builder(SecretString::from(db.clone()))
        .ca_file(ca_file())
        .connect(&StaticKeyProvider::new(
            MasterKey::from_file(&dir.path().join("master.key.old")).unwrap(),
        ))
        .await;
    assert!(refused.is_err(), "the old key no longer opens the database");
    let reopened = open(&db, &key_file).await;
    let stored = reopened.access_key(owner, account).await.unwrap().unwrap();
    assert_eq!(stored.secret_access_key.expose_secret(), SECRET);
}
