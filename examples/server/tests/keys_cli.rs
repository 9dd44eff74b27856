//! `sprinters keys` and `sprinters jobs list` as an operator uses them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{sprinters, sprinters_with_stdin};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// `sprinters store backup --data-dir DATA --to TO`.
fn backup(data: &std::path::Path, to: &std::path::Path) -> std::process::Output {
    sprinters(&[
        "store",
        "backup",
        "--data-dir",
        data.to_str().unwrap(),
        "--to",
        to.to_str().unwrap(),
    ])
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn init_creates_a_private_key_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let out = sprinters(&["keys", "init", "--data-dir", data]);
    assert!(out.status.success(), "{}", stderr(&out));
    let key = dir.path().join("data/master.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = std::fs::metadata(dir.path().join("data"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
    let before = std::fs::read(&key).unwrap();

    let again = sprinters(&["keys", "init", "--data-dir", data]);
    assert!(!again.status.success());
    let err = stderr(&again);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("refusing to overwrite"), "{err}");
    assert_eq!(std::fs::read(&key).unwrap(), before, "the key is untouched");
}

#[test]
fn an_access_key_is_read_from_stdin_and_stored_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    assert!(
        sprinters(&["keys", "init", "--data-dir", data])
            .status
            .success()
    );
    let out = sprinters_with_stdin(
        &[
            "keys",
            "add-access-key",
            "--data-dir",
            data,
            "--owner-id",
            "9919",
            "--account",
            "123456789012",
            "--access-key-id",
            "AKIAIOSFODNN7EXAMPLE",
        ],
        &format!("{SECRET}\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(!printed.contains(SECRET), "the secret is never printed");
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "{} holds the secret in clear",
            entry.display()
        );
    }

    let bad = sprinters_with_stdin(
        &[
            "keys",
            "add-access-key",
            "--data-dir",
            data,
            "--owner-id",
            "9919",
            "--account",
            "12345",
            "--access-key-id",
            "AKIAIOSFODNN7EXAMPLE",
        ],
        SECRET,
    );
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("--account"), "{}", stderr(&bad));
    let empty = sprinters_with_stdin(
        &[
            "keys",
            "add-access-key",
            "--data-dir",
            data,
            "--owner-id",
            "9919",
            "--account",
            "123456789012",
            "--access-key-id",
            "AKIAIOSFODNN7EXAMPLE",
        ],
        "",
    );
    assert!(!empty.status.success());
    assert!(
        stderr(&empty).contains("standard input"),
        "{}",
        stderr(&empty)
    );
}

#[test]
fn a_rotated_master_key_still_opens_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    assert!(
        sprinters(&["keys", "init", "--data-dir", data])
            .status
            .success()
    );
    let before = std::fs::read(dir.path().join("master.key")).unwrap();
    let out = sprinters(&["keys", "rotate", "--data-dir", data]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_ne!(
        std::fs::read(dir.path().join("master.key")).unwrap(),
        before
    );
    assert_eq!(
        std::fs::read(dir.path().join("master.key.old")).unwrap(),
        before
    );
    let list = sprinters(&["jobs", "list", "--data-dir", data, "--json"]);
    assert!(list.status.success(), "{}", stderr(&list));
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "[]");
    let twice = sprinters(&["keys", "rotate", "--data-dir", data]);
    assert!(
        !twice.status.success(),
        "an old key left behind is not overwritten"
    );
}

#[test]
fn listing_without_a_key_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = sprinters(&["jobs", "list", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("master.key") && err.contains("keys init"),
        "{err}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_is_taken_while_the_store_is_open_and_opens_with_the_same_key() {
    use sprinters_core::ports::{JobStore, ListJobs, PutJob};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    sprinters_server::data_dir::create(&data).unwrap();
    let key = sprinters_store::MasterKey::create_file(&data.join("master.key")).unwrap();
    // The store stays open (as serve holds it) during the backup.
    let store = sprinters_store::SqliteJobStore::open_with_key(&data, &key).unwrap();
    for id in 1..=20 {
        store
            .put_job(PutJob::create(sprinters_core::testing::sample_record(
                id, "octo/app", id,
            )))
            .await
            .unwrap();
    }
    let copy = dir.path().join("copy.db");
    let out = backup(&data, &copy);
    assert!(out.status.success(), "{}", stderr(&out));
    let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the copy is private");
    // Never over an existing file.
    let again = backup(&data, &copy);
    assert!(!again.status.success());
    assert_eq!(stderr(&again).lines().count(), 1, "{}", stderr(&again));
    // And with the store closed (no serve running).
    drop(store);
    let closed = dir.path().join("closed.db");
    let out = backup(&data, &closed);
    assert!(out.status.success(), "{}", stderr(&out));
    let restored = dir.path().join("restored");
    sprinters_server::data_dir::create(&restored).unwrap();
    std::fs::rename(&copy, restored.join(sprinters_store::DATABASE_FILE)).unwrap();
    let back = sprinters_store::SqliteJobStore::open_with_key(&restored, &key).unwrap();
    let page = back.list_jobs(ListJobs::newest(100)).await.unwrap();
    assert_eq!(page.jobs.len(), 20);
    // Without the master key the copy opens to nothing. (A directory of
    // its own: a child another test forks may briefly share the lock's
    // file description, so reopening `restored` at once can find it held.)
    let wrong = sprinters_store::MasterKey::generate();
    drop(back);
    let elsewhere = dir.path().join("elsewhere");
    sprinters_server::data_dir::create(&elsewhere).unwrap();
    std::fs::copy(
        restored.join(sprinters_store::DATABASE_FILE),
        elsewhere.join(sprinters_store::DATABASE_FILE),
    )
    .unwrap();
    let err = sprinters_store::SqliteJobStore::open_with_key(&elsewhere, &wrong).unwrap_err();
    assert!(err.to_string().contains("does not open"), "{err}");
}

#[test]
fn a_data_directory_of_the_old_segment_log_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    assert!(
        sprinters(&["keys", "init", "--data-dir", data])
            .status
            .success()
    );
    std::fs::create_dir(dir.path().join("segments")).unwrap();
    std::fs::write(dir.path().join("keyring.json"), "{}").unwrap();
    let out = sprinters(&["jobs", "list", "--data-dir", data]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("segment-log store"), "{err}");
    assert!(
        !dir.path().join(sprinters_store::DATABASE_FILE).exists(),
        "nothing was created beside it"
    );
}

/// `--config` with the embedded store uses the configuration's data
/// directory and its master key file, wherever that file is.
#[test]
fn the_keys_commands_take_the_embedded_store_and_key_file_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    sprinters_server::data_dir::create(&data).unwrap();
    let key_file = dir.path().join("keys/sprinters-master.key");
    std::fs::create_dir_all(key_file.parent().unwrap()).unwrap();
    sprinters_store::MasterKey::create_file(&key_file).unwrap();
    std::fs::write(dir.path().join("webhook-secret"), "s3cret-s3cret-s3cret\n").unwrap();
    std::fs::write(dir.path().join("app.pem"), "unused by the keys commands\n").unwrap();
    let config = dir.path().join("sprinters.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{data}\"\nmaster_key_file = \"{key}\"\n\n\
             [github]\napp_id = 778\nprivate_key_file = \"{dir}/app.pem\"\n\
             webhook_secret_file = \"{dir}/webhook-secret\"\n",
            data = data.display(),
            key = key_file.display(),
            dir = dir.path().display(),
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let add = [
        "keys",
        "add-access-key",
        "--config",
        config,
        "--owner-id",
        "42",
        "--account",
        "123456789012",
        "--access-key-id",
        "AKIAIOSFODNN7EXAMPLE",
    ];
    let out = sprinters_with_stdin(&add, SECRET);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sprinters(&["keys", "rotate", "--config", config, "--data-keys"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sprinters(&["keys", "rotate", "--config", config]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        dir.path().join("keys/sprinters-master.key.old").exists(),
        "the configured key file was rotated"
    );
    let key = sprinters_store::MasterKey::from_file(&key_file).unwrap();
    let store = sprinters_store::SqliteJobStore::open_with_key(&data, &key).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let stored = rt
        .block_on(sprinters_core::vault::CredentialVault::access_key(
            &store,
            sprinters_core::domain::OwnerId::new(42),
            sprinters_core::domain::AccountId::parse("123456789012").unwrap(),
        ))
        .unwrap()
        .expect("stored under the configured key");
    assert_eq!(
        secrecy::ExposeSecret::expose_secret(&stored.secret_access_key),
        SECRET
    );
}
