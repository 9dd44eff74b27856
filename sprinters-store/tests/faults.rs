//! Bad input and faults: flipped bytes, torn tails, wrong keys, tampering,
//! shredding, rotation. Nothing is ever garbage: either the right record or
//! an error that says where.

// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use sprinters_core::ErrorKind;
use sprinters_core::domain::{AccountId, JobId, JobKey, RunAttempt};
use sprinters_core::ports::{JobStore, PutJob};
use sprinters_core::testing::sample_record;
use sprinters_store::{FileJobStore, MasterKey};

fn segment(dir: &Path) -> PathBuf {
    dir.join("segments").join("00000001.seg")
}

fn key(id: u64) -> JobKey {
    JobKey::new(JobId::new(id), RunAttempt::FIRST)
}

/// A store with `n` jobs of account 111111111111; returns the segment
/// length after each acknowledged write.
async fn seeded(dir: &Path, master: &MasterKey, n: u64) -> Vec<u64> {
    let (store, _) = FileJobStore::open_with_key(dir, master).unwrap();
    let mut lengths = Vec::new();
    for i in 1..=n {
        let mut r = sample_record(i, "secret-org/private-repo", 1_700_000_000_000 + i);
        r.account = AccountId::parse("111111111111").ok();
        r.labels = vec![
            "sprinters:aws:ubuntu-latest:c7g.xlarge".into(),
            "pin-label-xyz".into(),
        ];
        store.put_job(PutJob::create(r)).await.unwrap();
        lengths.push(std::fs::metadata(segment(dir)).unwrap().len());
    }
    lengths
}

#[tokio::test]
async fn nothing_of_a_record_is_readable_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    seeded(dir.path(), &MasterKey::generate(), 3).await;
    let mut everything = std::fs::read(segment(dir.path())).unwrap();
    everything.extend(std::fs::read(dir.path().join("keyring.json")).unwrap());
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
    let millis = 1_700_000_000_001u64.to_le_bytes();
    assert!(
        !everything.windows(8).any(|w| w == millis),
        "a timestamp is readable on disk"
    );
}

#[tokio::test]
async fn any_flipped_byte_is_an_integrity_error_naming_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate();
    let lengths = seeded(dir.path(), &master, 3).await;
    let clean = std::fs::read(segment(dir.path())).unwrap();
    let starts = [0, lengths[0], lengths[1]];
    for i in 0..clean.len() {
        let mut bytes = clean.clone();
        bytes[i] ^= 0x01;
        std::fs::write(segment(dir.path()), &bytes).unwrap();
        let err = FileJobStore::open_with_key(dir.path(), &master)
            .map(|_| ())
            .unwrap_err();
        let frame = starts.iter().rev().find(|s| **s <= i as u64).unwrap();
        assert_eq!(*err.kind(), ErrorKind::Integrity, "byte {i}: {err}");
        assert!(
            err.to_string()
                .contains(&format!("segment 00000001 offset {frame}")),
            "byte {i}: {err}"
        );
    }
    std::fs::write(segment(dir.path()), &clean).unwrap();
    let (store, _) = FileJobStore::open_with_key(dir.path(), &master).unwrap();
    assert_eq!(store.job_count(), 3, "the undamaged store opens");
}

#[tokio::test]
async fn a_torn_last_frame_is_cut_off_and_every_earlier_record_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate();
    let lengths = seeded(dir.path(), &master, 3).await;
    let clean = std::fs::read(segment(dir.path())).unwrap();
    for cut in lengths[1]..lengths[2] {
        std::fs::write(segment(dir.path()), &clean[..cut as usize]).unwrap();
        let (store, report) = FileJobStore::open_with_key(dir.path(), &master).unwrap();
        assert_eq!(report.torn_bytes, cut - lengths[1], "cut at {cut}");
        assert_eq!(store.job_count(), 2, "cut at {cut}");
        for id in [1, 2] {
            assert_eq!(
                store.get_job(key(id)).await.unwrap().unwrap().value.key,
                key(id)
            );
        }
        drop(store);
        assert_eq!(
            std::fs::metadata(segment(dir.path())).unwrap().len(),
            lengths[1],
            "the tail was cut off the file"
        );
    }
    // Writing after the cut continues cleanly.
    let (store, _) = FileJobStore::open_with_key(dir.path(), &master).unwrap();
    store
        .put_job(PutJob::create(sample_record(9, "o/r", 1)))
        .await
        .unwrap();
    drop(store);
    let (store, report) = FileJobStore::open_with_key(dir.path(), &master).unwrap();
    assert_eq!((store.job_count(), report.torn_bytes), (3, 0));
}

#[tokio::test]
async fn a_wrong_master_key_is_refused_at_open_and_nothing_is_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    seeded(dir.path(), &MasterKey::generate(), 2).await;
    let before: Vec<_> = [dir.path().join("keyring.json"), segment(dir.path())]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let err = FileJobStore::open_with_key(dir.path(), &MasterKey::generate()).unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Config);
    assert!(
        err.to_string()
            .contains("the master key does not open the key ring"),
        "{err}"
    );
    let after: Vec<_> = [dir.path().join("keyring.json"), segment(dir.path())]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(before, after, "nothing was changed");
}

/// Rewrites the frame at `offset` with `edit` applied to its body and a
/// valid checksum again, as an attacker with write access could.
fn tamper(path: &Path, offset: usize, edit: impl Fn(&mut [u8])) {
    let mut bytes = std::fs::read(path).unwrap();
    let len = u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
    let body = offset + 12..offset + 12 + len;
    edit(&mut bytes[body.clone()]);
    let crc = crc32c(&bytes[body]);
    bytes[offset + 8..offset + 12].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

fn crc32c(data: &[u8]) -> u32 {
    // Castagnoli, bitwise: the tests need no dependency for it.
    let mut crc = !0u32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test]
async fn a_record_moved_to_another_id_or_version_fails_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate();
    let lengths = seeded(dir.path(), &master, 2).await;
    let clean = std::fs::read(segment(dir.path())).unwrap();
    // Body layout: kind(1) key id(4) record id(16) version(8) nonce(12) ciphertext.
    for (what, edit) in [
        (
            "another record id",
            Box::new(|b: &mut [u8]| b[5] ^= 1) as Box<dyn Fn(&mut [u8])>,
        ),
        (
            "another version",
            Box::new(|b: &mut [u8]| b[21] = b[21].wrapping_add(7)),
        ),
        ("another kind", Box::new(|b: &mut [u8]| b[0] = 6)),
    ] {
        std::fs::write(segment(dir.path()), &clean).unwrap();
        tamper(&segment(dir.path()), lengths[0] as usize, edit);
        let err = FileJobStore::open_with_key(dir.path(), &master)
            .map(|_| ())
            .unwrap_err();
        assert_eq!(*err.kind(), ErrorKind::Integrity, "{what}: {err}");
        assert!(
            err.to_string().contains(&format!("offset {}", lengths[0])),
            "{what}: {err}"
        );
    }
}

#[tokio::test]
async fn a_record_moved_to_another_account_fails_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate();
    {
        let (store, _) = FileJobStore::open_with_key(dir.path(), &master).unwrap();
        for (id, account) in [(1, "111111111111"), (2, "222222222222")] {
            let mut r = sample_record(id, "o/r", 1);
            r.account = AccountId::parse(account).ok();
            store.put_job(PutJob::create(r)).await.unwrap();
        }
    }
    let bytes = std::fs::read(segment(dir.path())).unwrap();
    let second = 12 + u32::from_le_bytes(bytes[0..4].try_into().unwrap()) as usize;
    let other_key = bytes[second + 12 + 1..second + 12 + 5].to_vec();
    assert_ne!(
        other_key,
        bytes[13..17].to_vec(),
        "the two accounts have different data keys"
    );
    tamper(&segment(dir.path()), 0, |b| {
        b[1..5].copy_from_slice(&other_key)
    });
    let err = FileJobStore::open_with_key(dir.path(), &master)
        .map(|_| ())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("segment 00000001 offset 0: record fails authentication"),
        "{err}"
    );
}

#[tokio::test]
async fn a_replayed_older_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate();
    let first_len;
    {
        let (store, _) = FileJobStore::open_with_key(dir.path(), &master).unwrap();
        let r = sample_record(1, "o/r", 1);
        let v = store.put_job(PutJob::create(r.clone())).await.unwrap();
        first_len = std::fs::metadata(segment(dir.path())).unwrap().len() as usize;
        let mut newer = r;
        newer.state = sprinters_core::job::JobState::Cleaned;
        store.put_job(PutJob::replace(newer, v)).await.unwrap();
    }
    let mut bytes = std::fs::read(segment(dir.path())).unwrap();
    let old = bytes[..first_len].to_vec();
    let end = bytes.len();
    bytes.extend(old);
    std::fs::write(segment(dir.path()), bytes).unwrap();
    let err = FileJobStore::open_with_key(dir.path(), &master)
        .map(|_| ())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("offset {end}: version 1 after version 2")),
        "{err}"
    );
}

#[tokio::test]
async fn rotating_the_master_key_rewraps_without_rewriting_data() {
    let dir = tempfile::tempdir().unwrap();
    let old = MasterKey::generate();
    seeded(dir.path(), &old, 2).await;
    let data = std::fs::read(segment(dir.path())).unwrap();
    let new = MasterKey::generate();
    {
        let (store, _) = FileJobStore::open_with_key(dir.path(), &old).unwrap();
        store.rotate_master_key(&new).unwrap();
    }
    assert_eq!(
        std::fs::read(segment(dir.path())).unwrap(),
        data,
        "no record rewritten"
    );
    assert!(
        FileJobStore::open_with_key(dir.path(), &old).is_err(),
        "the old key no longer opens it"
    );
    let (store, _) = FileJobStore::open_with_key(dir.path(), &new).unwrap();
    assert_eq!(
        store.get_job(key(1)).await.unwrap().unwrap().value.key,
        key(1)
    );
}

#[tokio::test]
async fn a_rotated_data_key_takes_new_writes_and_compaction_reseals_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate();
    seeded(dir.path(), &master, 3).await;
    let (store, _) = FileJobStore::open_with_key(dir.path(), &master).unwrap();
    let account = AccountId::parse("111111111111").unwrap();
    let keys_before = keyring_ids(dir.path());
    store.rotate_data_key(Some(&account)).unwrap();
    let keys_rotated = keyring_ids(dir.path());
    assert_eq!(keys_rotated.len(), keys_before.len() + 1);
    let report = store.compact().unwrap();
    assert_eq!(
        report.resealed, 3,
        "every record of the old key is re-sealed"
    );
    let keys_after = keyring_ids(dir.path());
    assert!(
        !keys_after.contains(&keys_before[0]),
        "the retired key is gone once unused: {keys_after:?}"
    );
    drop(store);
    let (store, _) = FileJobStore::open_with_key(dir.path(), &master).unwrap();
    for id in 1..=3 {
        assert!(store.get_job(key(id)).await.unwrap().is_some());
    }
}

fn keyring_ids(dir: &Path) -> Vec<u64> {
    let ring: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("keyring.json")).unwrap()).unwrap();
    ring["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn deleting_an_account_shreds_its_records_for_good() {
    use sprinters_core::vault::{CredentialVault, StoredAccessKey};
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate();
    seeded(dir.path(), &master, 3).await;
    let (store, _) = FileJobStore::open_with_key(dir.path(), &master).unwrap();
    let mut other = sample_record(10, "o/r", 1);
    other.account = AccountId::parse("222222222222").ok();
    store.put_job(PutJob::create(other)).await.unwrap();
    let account = AccountId::parse("111111111111").unwrap();
    // Written in this session, and active: the store keeps it decoded.
    let mut hot = sample_record(11, "o/r", 2);
    hot.account = Some(account.clone());
    assert!(hot.is_active());
    store.put_job(PutJob::create(hot)).await.unwrap();
    assert!(store.get_job(key(11)).await.unwrap().is_some());
    let secret = StoredAccessKey {
        access_key_id: "AKIA".into(),
        secret_access_key: "x".to_owned().into(),
    };
    store
        .put_access_key(
            sprinters_core::domain::OwnerId::new(1),
            account.clone(),
            secret,
        )
        .await
        .unwrap();

    assert_eq!(store.delete_account(&account).unwrap(), 4);
    assert!(store.get_job(key(1)).await.unwrap().is_none());
    assert!(
        store.get_job(key(11)).await.unwrap().is_none(),
        "no decoded copy outlives its account's key"
    );
    assert!(
        store
            .access_key(sprinters_core::domain::OwnerId::new(1), account.clone())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store.get_job(key(10)).await.unwrap().is_some(),
        "other accounts are untouched"
    );
    drop(store);

    let (store, report) = FileJobStore::open_with_key(dir.path(), &master).unwrap();
    assert_eq!(
        report.shredded, 5,
        "4 jobs and the access key cannot be opened by anyone"
    );
    assert_eq!(store.job_count(), 1);
    let size_before = std::fs::metadata(segment(dir.path())).unwrap().len();
    store.compact().unwrap();
    drop(store);
    let (store, report) = FileJobStore::open_with_key(dir.path(), &master).unwrap();
    assert_eq!(
        (report.shredded, store.job_count()),
        (0, 1),
        "compaction removed them from disk"
    );
    let total: u64 = std::fs::read_dir(dir.path().join("segments"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(total < size_before, "{total} >= {size_before}");
}

#[tokio::test]
async fn retention_purges_old_history_for_good() {
    use sprinters_core::ports::Purge;
    use sprinters_core::time::Timestamp;
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate();
    {
        let (store, _) = FileJobStore::open_with_key(dir.path(), &master).unwrap();
        for i in 1..=4u64 {
            let mut r = sample_record(i, "o/r", i * 1000);
            r.state = sprinters_core::job::JobState::Cleaned;
            store.put_job(PutJob::create(r)).await.unwrap();
        }
        let purged = store
            .purge(Purge::before(Timestamp::from_millis(2500)))
            .await
            .unwrap();
        assert_eq!(purged.jobs, 2);
    }
    let (store, _) = FileJobStore::open_with_key(dir.path(), &master).unwrap();
    assert_eq!(
        store.job_count(),
        2,
        "tombstones keep purged jobs gone after a reopen"
    );
    store.compact().unwrap();
    drop(store);
    let (store, _) = FileJobStore::open_with_key(dir.path(), &master).unwrap();
    assert_eq!(store.job_count(), 2);
    // A purged job recorded again starts over.
    store
        .put_job(PutJob::create(sample_record(1, "o/r", 9_000)))
        .await
        .unwrap();
    drop(store);
    let (store, _) = FileJobStore::open_with_key(dir.path(), &master).unwrap();
    assert_eq!(store.job_count(), 3);
}

#[tokio::test]
async fn a_purged_delivery_recorded_again_survives_a_reopen() {
    // Found by the model test: the second record of a purged delivery id
    // restarts at version 1, which a reopen took for a replayed frame.
    use sprinters_core::domain::DeliveryId;
    use sprinters_core::ports::{Purge, RecordDelivery};
    use sprinters_core::time::Timestamp;
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate();
    let id = DeliveryId::parse("d-2").unwrap();
    {
        let (store, _) = FileJobStore::open_with_key(dir.path(), &master).unwrap();
        store
            .record_delivery(RecordDelivery::new(id.clone(), Timestamp::from_millis(2)))
            .await
            .unwrap();
        store
            .purge(Purge::before(Timestamp::from_millis(3)))
            .await
            .unwrap();
        assert!(
            store
                .record_delivery(RecordDelivery::new(id.clone(), Timestamp::from_millis(2)))
                .await
                .unwrap()
                .first
        );
    }
    let (store, _) = FileJobStore::open_with_key(dir.path(), &master).unwrap();
    assert!(store.delivery_seen(id).await.unwrap());
}

#[tokio::test]
async fn only_the_owner_can_read_the_store_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    seeded(&data, &MasterKey::generate(), 1).await;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    for file in [
        data.join("keyring.json"),
        data.join("LOCK"),
        segment(&data),
        data.join("segments/manifest.json"),
    ] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

#[tokio::test]
async fn debug_output_shows_no_key_and_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate();
    seeded(dir.path(), &master, 2).await;
    let (store, _) = FileJobStore::open_with_key(dir.path(), &master).unwrap();
    let debug = format!("{store:?}");
    assert!(
        debug.starts_with("FileJobStore { dir: ") && debug.contains("jobs: 2"),
        "{debug}"
    );
    assert!(!debug.contains("secret-org"), "{debug}");
    assert!(debug.len() < 200, "Debug is a summary, not a dump: {debug}");
    assert_eq!(format!("{master:?}"), "MasterKey([REDACTED])");
}
