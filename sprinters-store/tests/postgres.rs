//! The PostgreSQL store against a real server (started by `scripts/test`,
//! which exports `SPRINTERS_TEST_POSTGRES_URL`): the core conformance
//! suites, replicas sharing one database, the schema, and what the database
//! can see.
#![cfg(feature = "postgres")]
// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use sprinters_core::ErrorKind;
use sprinters_core::domain::{AccountId, DeliveryId};
use sprinters_core::job::JobState;
use sprinters_core::ports::{ClaimJob, JobStore, ListJobs, Purge, PutJob, RecordDelivery};
use sprinters_core::testing;
use sprinters_core::time::Timestamp;
use sprinters_core::vault::{CredentialVault, StoredAccessKey};
use sprinters_store::{MasterKey, PostgresJobStore, StaticKeyProvider};

/// A fresh database on the test server: its URL.
async fn fresh_database() -> String {
    let server = std::env::var("SPRINTERS_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "SPRINTERS_TEST_POSTGRES_URL is not set: run scripts/test, which starts PostgreSQL \
             (or `. scripts/postgres.sh; start_postgres` in the shell that runs cargo test)"
        )
    });
    let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let name = format!("sprinters_test_{:016x}", rand::random::<u64>());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let base = server.rsplit_once('/').unwrap().0;
    format!("{base}/{name}")
}

/// The test server's CA (its certificate is for 127.0.0.1).
fn ca_file() -> String {
    std::env::var("SPRINTERS_TEST_POSTGRES_CA")
        .unwrap_or_else(|_| panic!("SPRINTERS_TEST_POSTGRES_CA is not set: run scripts/test"))
}

async fn connect(url: &str, key: &MasterKey) -> PostgresJobStore {
    PostgresJobStore::builder(SecretString::from(url.to_owned()))
        .max_connections(8)
        .ca_file(ca_file())
        .connect(&StaticKeyProvider::new(key.clone()))
        .await
        .unwrap()
}

async fn raw(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn postgres_store_passes_the_job_store_suite() {
    let url = fresh_database().await;
    let store = connect(&url, &MasterKey::generate()).await;
    testing::job_store(&store).await;
}

#[tokio::test]
async fn postgres_store_passes_the_vault_suite() {
    let url = fresh_database().await;
    let store = connect(&url, &MasterKey::generate()).await;
    testing::credential_vault(&store).await;
}

#[tokio::test]
async fn a_second_replica_reads_what_the_first_wrote_and_stale_writes_lose() {
    let url = fresh_database().await;
    let key = MasterKey::generate();
    let a = connect(&url, &key).await;
    let b = connect(&url, &key).await;
    let mut r = testing::sample_record(1, "octo/app", 1_000);
    r.account = AccountId::parse("111111111111").ok();
    let v = a.put_job(PutJob::create(r.clone())).await.unwrap();
    let read = b.get_job(r.key).await.unwrap().unwrap();
    assert_eq!(read.value, r, "b opens a's record with the shared data key");
    let mut changed = r.clone();
    changed.state = JobState::Launched;
    b.put_job(PutJob::replace(changed, v)).await.unwrap();
    let stale = a.put_job(PutJob::replace(r, v)).await.unwrap_err();
    assert_eq!(*stale.kind(), ErrorKind::Conflict, "a's stale write loses");
    a.put_access_key(
        sprinters_core::domain::OwnerId::new(1),
        AccountId::parse("111111111111").unwrap(),
        StoredAccessKey {
            access_key_id: "AKIAEXAMPLE".into(),
            secret_access_key: SecretString::from("secret".to_owned()),
        },
    )
    .await
    .unwrap();
    assert!(
        b.access_key(
            sprinters_core::domain::OwnerId::new(1),
            AccountId::parse("111111111111").unwrap()
        )
        .await
        .unwrap()
        .is_some()
    );
}

#[tokio::test]
async fn of_many_replicas_claiming_one_job_at_once_exactly_one_wins() {
    let url = fresh_database().await;
    let key = MasterKey::generate();
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(Arc::new(connect(&url, &key).await));
    }
    for job in 0..20u64 {
        let record = testing::sample_record(100 + job, "octo/app", 1_000);
        stores[0]
            .put_job(PutJob::create(record.clone()))
            .await
            .unwrap();
        let now = Timestamp::from_millis(50_000);
        let mut claims = Vec::new();
        for (i, store) in stores.iter().enumerate() {
            for n in 0..4 {
                let store = store.clone();
                let request = ClaimJob::new(
                    record.key,
                    format!("replica-{i}-{n}"),
                    now,
                    Duration::from_secs(60),
                );
                claims.push(tokio::spawn(async move { store.claim_job(request).await }));
            }
        }
        let mut winners = Vec::new();
        for c in claims {
            if let Some(won) = c.await.unwrap().unwrap().granted() {
                winners.push(won.value.lease.unwrap().owner);
            }
        }
        assert_eq!(winners.len(), 1, "job {job}: {winners:?}");
        let stored = stores[1].get_job(record.key).await.unwrap().unwrap();
        assert_eq!(stored.value.lease.unwrap().owner, winners[0]);
    }
}

/// Three replicas claim forty jobs of one AWS account at once, each within
/// a cap of five per account (and two per repository for one of the
/// repositories): exactly the caps are granted, never more. The count and
/// the claim are one transaction under advisory locks; without them two
/// claims would both see the last slot free.
#[tokio::test]
async fn replicas_claiming_at_once_never_take_more_slots_than_the_caps() {
    let url = fresh_database().await;
    let key = MasterKey::generate();
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(Arc::new(connect(&url, &key).await));
    }
    // A race lost only now and then: several rounds, an account each.
    for round in 0..8u64 {
        claim_forty_at_once(&stores, round).await;
    }
}

async fn claim_forty_at_once(stores: &[Arc<PostgresJobStore>], round: u64) {
    use sprinters_core::ports::{Claim, SlotCap, SlotCaps};
    let account = AccountId::parse(&format!("1111111111{round:02}")).unwrap();
    let mut keys = Vec::new();
    for job in 0..40u64 {
        let repo = if job % 2 == 0 { "octo/app" } else { "octo/web" };
        let mut record = testing::sample_record(500 + round * 100 + job, repo, 1_000 + job);
        record.account = Some(account.clone());
        stores[0]
            .put_job(PutJob::create(record.clone()))
            .await
            .unwrap();
        keys.push((record.key, repo));
    }
    let now = Timestamp::from_millis(50_000);
    let mut claims = Vec::new();
    for (n, (key, repo)) in keys.iter().enumerate() {
        let store = stores[n % 3].clone();
        let per_repository = (*repo == "octo/app").then_some(2);
        let request = ClaimJob::new(
            *key,
            format!("replica-{}", n % 3),
            now,
            Duration::from_secs(60),
        )
        .within(SlotCaps::new(Some(5), per_repository, None));
        let repo = *repo;
        claims.push(tokio::spawn(async move {
            (repo, store.claim_job(request).await.unwrap())
        }));
    }
    let (mut granted, mut app, mut full) = (0, 0, Vec::new());
    for c in claims {
        match c.await.unwrap() {
            (repo, Claim::Granted(_)) => {
                granted += 1;
                app += usize::from(repo == "octo/app");
            }
            (_, Claim::Full(reached)) => full.push(reached.cap),
            (_, other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(granted, 5, "round {round}: the account's cap");
    assert!(app <= 2, "round {round}: octo/app's cap: {app} granted");
    assert_eq!(full.len(), 35);
    assert!(full.contains(&SlotCap::Account));
}

#[tokio::test]
async fn a_delivery_recorded_by_two_replicas_at_once_is_first_once() {
    let url = fresh_database().await;
    let key = MasterKey::generate();
    let a = Arc::new(connect(&url, &key).await);
    let b = Arc::new(connect(&url, &key).await);
    for i in 0..50 {
        let id = DeliveryId::parse(&format!("delivery-{i}")).unwrap();
        let at = Timestamp::from_millis(1_000);
        let (x, y) = tokio::join!(
            a.record_delivery(RecordDelivery::new(id.clone(), at)),
            b.record_delivery(RecordDelivery::new(id, at)),
        );
        assert!(x.unwrap().first ^ y.unwrap().first, "delivery {i}");
    }
}

/// Two replicas handling one delivery at once (GitHub redelivers to the
/// other behind the load balancer): one write wins and records it; the
/// other records nothing and learns why. A create and a replace each.
#[tokio::test]
async fn one_delivery_written_by_two_replicas_at_once_is_recorded_by_one_write() {
    let url = fresh_database().await;
    let key = MasterKey::generate();
    let a = Arc::new(connect(&url, &key).await);
    let b = Arc::new(connect(&url, &key).await);
    let at = Timestamp::from_millis(1_000);
    for i in 0..40u64 {
        let record = testing::sample_record(7_000 + i, "octo/race", 1_000 + i);
        let queued = RecordDelivery::new(DeliveryId::parse(&format!("race-q-{i}")).unwrap(), at);
        let (x, y) = tokio::join!(
            a.put_job(PutJob::create(record.clone()).with_delivery(queued.clone())),
            b.put_job(PutJob::create(record.clone()).with_delivery(queued)),
        );
        let lost = match (&x, &y) {
            (Ok(1), Err(e)) | (Err(e), Ok(1)) => e.kind().clone(),
            other => panic!("create {i}: {other:?}"),
        };
        // Either it saw the winner's row (exists) or its delivery.
        assert!(
            matches!(lost, ErrorKind::Conflict | ErrorKind::Duplicate),
            "create {i}: {lost:?}"
        );

        let mut running = record.clone();
        running.state = JobState::Running;
        let started = RecordDelivery::new(DeliveryId::parse(&format!("race-p-{i}")).unwrap(), at);
        let (x, y) = tokio::join!(
            a.put_job(PutJob::replace(running.clone(), 1).with_delivery(started.clone())),
            b.put_job(PutJob::replace(running, 1).with_delivery(started.clone())),
        );
        assert!(
            matches!((&x, &y), (Ok(2), Err(_)) | (Err(_), Ok(2))),
            "replace {i}: {x:?} {y:?}"
        );
        let stored = a.get_job(record.key).await.unwrap().unwrap();
        assert_eq!(stored.version, 2, "replace {i}: one write");
        assert!(
            !b.record_delivery(started).await.unwrap().first,
            "replace {i}: the winning write recorded the delivery"
        );
    }
}

/// `work`, or a failure naming `what` if it hangs (a deadlock guard).
async fn within<T>(what: &str, work: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), work)
        .await
        .unwrap_or_else(|_| panic!("{what}: stuck waiting for a second connection"))
}

/// A replica loads a data key another replica made on the connection it
/// already holds: taking a second one from the pool meanwhile deadlocked
/// a pool every task held one of (the 3-replica benchmark hung so). With
/// one connection, each first read and write of a key must still finish.
#[tokio::test]
async fn loading_another_replicas_data_key_needs_no_second_connection() {
    let url = fresh_database().await;
    let key = MasterKey::generate();
    let first = connect(&url, &key).await;
    let record = testing::sample_record(8_000, "octo/pool", 1_000);
    first.put_job(PutJob::create(record.clone())).await.unwrap();
    let provider = StaticKeyProvider::new(key.clone());
    let one_connection = |url: &str| {
        PostgresJobStore::builder(SecretString::from(url.to_owned()))
            .max_connections(1)
            .ca_file(ca_file())
            .connect(&provider)
    };
    // Its first read opens a record sealed under a key it has not loaded.
    let reader = one_connection(&url).await.unwrap();
    let read = within("the first read", reader.get_job(record.key)).await;
    assert_eq!(read.unwrap().unwrap().value, record);
    // Its first writes, at once, reserve seals of that key and load it.
    let writer = Arc::new(one_connection(&url).await.unwrap());
    let writes = (1..=8u64).map(|i| {
        let writer = writer.clone();
        tokio::spawn(async move {
            let r = testing::sample_record(8_000 + i, "octo/pool", 1_000 + i);
            writer.put_job(PutJob::create(r)).await
        })
    });
    let all = async {
        for w in writes.collect::<Vec<_>>() {
            assert_eq!(w.await.unwrap().unwrap(), 1);
        }
    };
    within("eight first writes", all).await;
}

#[tokio::test]
async fn a_wrong_master_key_is_refused_and_changes_nothing() {
    let url = fresh_database().await;
    let store = connect(&url, &MasterKey::generate()).await;
    store
        .put_job(PutJob::create(testing::sample_record(1, "octo/app", 1)))
        .await
        .unwrap();
    let err = PostgresJobStore::builder(SecretString::from(url.clone()))
        .ca_file(ca_file())
        .connect(&StaticKeyProvider::new(MasterKey::generate()))
        .await
        .unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("master key"), "{err}");
    let client = raw(&url).await;
    let rows = client
        .query("SELECT count(*) FROM sprinters_data_keys", &[])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 1, "no key was added");
}

#[tokio::test]
async fn migrations_apply_once_and_a_newer_schema_is_refused() {
    let url = fresh_database().await;
    let key = MasterKey::generate();
    // Three replicas starting at once: the advisory lock serializes them.
    let (a, b, c) = tokio::join!(
        connect(&url, &key),
        connect(&url, &key),
        connect(&url, &key)
    );
    drop((a, b, c));
    let client = raw(&url).await;
    let versions: Vec<i32> = client
        .query(
            "SELECT version FROM sprinters_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: Vec<i32> = (1..=PostgresJobStore::schema_version()).collect();
    assert_eq!(versions, expected);

    client
        .execute(
            "INSERT INTO sprinters_migrations (version) VALUES ($1)",
            &[&(PostgresJobStore::schema_version() + 1)],
        )
        .await
        .unwrap();
    let err = PostgresJobStore::builder(SecretString::from(url))
        .ca_file(ca_file())
        .connect(&StaticKeyProvider::new(key))
        .await
        .unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("newer than this build"), "{err}");
}

#[tokio::test]
async fn the_database_sees_no_repository_label_name_or_secret() {
    let url = fresh_database().await;
    let store = connect(&url, &MasterKey::generate()).await;
    let mut r = testing::sample_record(42, "secret-org/hidden-repo", 1_000);
    r.account = AccountId::parse("111111111111").ok();
    r.labels
        .push("sprinters:aws:ubuntu-latest:c7i.large-pin".into());
    store.put_job(PutJob::create(r)).await.unwrap();
    store
        .put_access_key(
            sprinters_core::domain::OwnerId::new(1),
            AccountId::parse("111111111111").unwrap(),
            StoredAccessKey {
                access_key_id: "AKIAHIDDENKEYID".into(),
                secret_access_key: SecretString::from("very-secret-value".to_owned()),
            },
        )
        .await
        .unwrap();
    store
        .record_delivery(RecordDelivery::new(
            DeliveryId::parse("delivery-hidden-guid").unwrap(),
            Timestamp::from_millis(1),
        ))
        .await
        .unwrap();
    let client = raw(&url).await;
    let dump = client
        .query(
            "SELECT string_agg(t::text, ' ') FROM (\
               SELECT row_to_json(j)::text AS t FROM sprinters_jobs j UNION ALL \
               SELECT row_to_json(v)::text FROM sprinters_vault v UNION ALL \
               SELECT row_to_json(d)::text FROM sprinters_deliveries d UNION ALL \
               SELECT row_to_json(k)::text FROM sprinters_data_keys k UNION ALL \
               SELECT row_to_json(r)::text FROM sprinters_keyring r) x",
            &[],
        )
        .await
        .unwrap();
    let dump: String = dump[0].get(0);
    assert!(dump.len() > 200, "the tables hold something: {dump}");
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    for secret in [
        "secret-org",
        "hidden-repo",
        "c7i.large",
        "build 42",
        "111111111111",
        "AKIAHIDDENKEYID",
        "very-secret-value",
        "delivery-hidden-guid",
    ] {
        assert!(!dump.contains(secret), "{secret} in clear");
        assert!(!dump.contains(&hex(secret)), "{secret} in clear (as bytea)");
    }
}

#[tokio::test]
async fn retention_purges_in_batches_and_keeps_active_jobs() {
    let url = fresh_database().await;
    let store = connect(&url, &MasterKey::generate()).await;
    for i in 0..2_100u64 {
        let mut r = testing::sample_record(1 + i, "octo/app", 1_000 + i);
        r.state = if i % 700 == 0 {
            JobState::Running
        } else {
            JobState::Cleaned
        };
        store.put_job(PutJob::create(r)).await.unwrap();
    }
    let purged = store
        .purge(Purge::before(Timestamp::from_millis(10_000)))
        .await
        .unwrap();
    assert_eq!(purged.jobs, 2_100 - 3);
    let left = store.list_jobs(ListJobs::newest(100)).await.unwrap();
    assert_eq!(left.jobs.len(), 3, "the active ones stay");
}

#[tokio::test]
async fn deleting_an_account_shreds_its_records_and_key() {
    let url = fresh_database().await;
    let store = connect(&url, &MasterKey::generate()).await;
    let account = AccountId::parse("222222222222").unwrap();
    let mut r = testing::sample_record(7, "octo/app", 1_000);
    r.account = Some(account.clone());
    let other = testing::sample_record(8, "octo/app", 1_000);
    store.put_job(PutJob::create(r.clone())).await.unwrap();
    store.put_job(PutJob::create(other.clone())).await.unwrap();
    assert_eq!(store.delete_account(&account).await.unwrap(), 1);
    assert!(store.get_job(r.key).await.unwrap().is_none());
    assert!(store.get_job(other.key).await.unwrap().is_some());
    let client = raw(&url).await;
    let live: i64 = client
        .query_one(
            "SELECT count(*) FROM sprinters_data_keys WHERE wrapped IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(live, 1, "only the system scope's key is left");
}

#[tokio::test]
async fn an_unreachable_server_is_a_retryable_error_naming_it_without_the_password() {
    let err = PostgresJobStore::builder(SecretString::from(
        "postgres://sprinters:hunter2@127.0.0.1:1/sprinters".to_owned(),
    ))
    .connect(&StaticKeyProvider::new(MasterKey::generate()))
    .await
    .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let text = format!("{err} {err:?}");
    assert!(text.contains("127.0.0.1:1/sprinters"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

/// (ssl, TLS version) of every server process connected to `url`'s database.
async fn connections_to(url: &str) -> Vec<(bool, Option<String>)> {
    let name = url.rsplit_once('/').unwrap().1.to_owned();
    let admin = raw(&std::env::var("SPRINTERS_TEST_POSTGRES_URL").unwrap()).await;
    admin
        .query(
            "SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = $1",
            &[&name],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn the_store_talks_to_the_server_over_verified_tls_1_3() {
    let url = fresh_database().await;
    let store = connect(&url, &MasterKey::generate()).await;
    store
        .get_job(testing::sample_record(1, "octo/app", 1).key)
        .await
        .unwrap();
    let seen = connections_to(&url).await;
    assert!(!seen.is_empty());
    for (ssl, version) in &seen {
        assert!(*ssl, "a connection in clear: {seen:?}");
        assert_eq!(version.as_deref(), Some("TLSv1.3"), "{seen:?}");
    }
}

#[tokio::test]
async fn a_server_certificate_no_trusted_ca_signed_is_refused_before_anything_is_written() {
    let url = fresh_database().await;
    // The system's roots do not include the test CA.
    let err = PostgresJobStore::builder(SecretString::from(url.clone()))
        .connect(&StaticKeyProvider::new(MasterKey::generate()))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("invalid peer certificate"), "{text}");
    let tables = raw(&url)
        .await
        .query(
            "SELECT 1 FROM information_schema.tables WHERE table_name LIKE 'sprinters_%'",
            &[],
        )
        .await
        .unwrap();
    assert!(tables.is_empty(), "nothing migrated over an untrusted link");
}

#[tokio::test]
async fn plain_text_needs_sslmode_disable_and_a_server_on_this_machine() {
    let url = fresh_database().await;
    let plain = format!("{url}?sslmode=disable");
    let store = PostgresJobStore::builder(SecretString::from(plain))
        .connect(&StaticKeyProvider::new(MasterKey::generate()))
        .await
        .unwrap();
    store
        .get_job(testing::sample_record(1, "octo/app", 1).key)
        .await
        .unwrap();
    let seen = connections_to(&url).await;
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|(ssl, _)| !ssl), "{seen:?}");

    let remote = "postgres://sprinters:hunter2@db.example.com/sprinters?sslmode=disable";
    let err = PostgresJobStore::builder(SecretString::from(remote.to_owned()))
        .connect(&StaticKeyProvider::new(MasterKey::generate()))
        .await
        .unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("sslmode=disable"), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_queries_are_served_by_their_indexes() {
    let url = fresh_database().await;
    let store = connect(&url, &MasterKey::generate()).await;
    // 4,000 jobs of 40 owners in 20 accounts, one in 50 still active: the
    // shape of a real history, where each filter is selective.
    let mut writers = tokio::task::JoinSet::new();
    for chunk in 0..8u64 {
        let store = store.clone();
        writers.spawn(async move {
            for n in chunk * 500..(chunk + 1) * 500 {
                let mut r = testing::sample_record(n + 1, &format!("org{}/app", n % 40), n * 1_000);
                r.account = AccountId::parse(&format!("{:012}", 100_000_000_000 + n % 20)).ok();
                r.state = if n % 50 == 0 {
                    JobState::Queued
                } else {
                    JobState::Cleaned
                };
                store.put_job(PutJob::create(r)).await.unwrap();
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    raw(&url)
        .await
        .batch_execute("ANALYZE sprinters_jobs")
        .await
        .unwrap();

    let newest = ListJobs::newest(50);
    let mut by_owner = ListJobs::newest(50);
    by_owner.owner_id = Some(testing::sample_owner_id("org7"));
    let mut by_account = ListJobs::newest(50);
    by_account.account = AccountId::parse("100000000003").ok();
    let due = ListJobs::due(Timestamp::from_millis(4_000_000), 500);
    let mut active_by_labels = ListJobs::active(500);
    active_by_labels.label_set = Some(testing::sample_record(1, "org1/app", 0).label_set);
    // A new job's look for a spare runner: served by the index of the jobs
    // that have one, never by the label set's active jobs.
    let mut spares = active_by_labels.clone();
    spares.spares_only = true;
    let mut next_page = by_owner.clone();
    let page = store.list_jobs(by_owner.clone()).await.unwrap();
    assert_eq!(page.jobs.len(), 50);
    next_page.cursor = page.next;
    assert!(next_page.cursor.is_some());
    for (query, index) in [
        (&newest, "sprinters_jobs_newest"),
        (&by_owner, "sprinters_jobs_by_owner"),
        (&next_page, "sprinters_jobs_by_owner"),
        (&by_account, "sprinters_jobs_by_account"),
        (&ListJobs::active(500), "sprinters_jobs_active"),
        // The tick's queries: what is due, and the active jobs of one label
        // set (either partial index of active jobs serves it).
        (&due, "sprinters_jobs_due"),
        (&active_by_labels, "sprinters_jobs_active"),
        (&spares, "sprinters_jobs_spares_by_labels"),
    ] {
        let plan = store.explain_list(query).await.unwrap();
        assert!(
            plan.contains(index),
            "{query:?} is not served by {index}:\n{plan}"
        );
        assert!(
            !plan.contains("Seq Scan"),
            "{query:?} scans the table:\n{plan}"
        );
    }
    // A claim within caps counts through the slot indexes, never the
    // account's or the owner's history.
    let plan = store
        .explain_slot_count(
            testing::sample_owner_id("org7"),
            &AccountId::parse("100000000003").unwrap(),
        )
        .await
        .unwrap();
    for index in [
        "sprinters_jobs_slots_by_account",
        "sprinters_jobs_slots_by_owner",
        "sprinters_jobs_extra_slots_by_account",
        "sprinters_jobs_extra_slots_by_owner",
    ] {
        assert!(
            plan.contains(index),
            "the slot count does not use {index}:\n{plan}"
        );
    }
    assert!(!plan.contains("Seq Scan"), "{plan}");
    // `max_queued` counts an owner's queued jobs through their own index,
    // never the owner's history.
    let plan = store
        .explain_count_queued(testing::sample_owner_id("org7"))
        .await
        .unwrap();
    assert!(
        plan.contains("sprinters_jobs_queued_by_owner"),
        "the queued count does not use its index:\n{plan}"
    );
    assert!(!plan.contains("Seq Scan"), "{plan}");
}

/// The clear filter columns only choose rows: a row whose `owner_h` was
/// rewritten to another tenant's (by anyone with write access to the
/// table) still never shows that tenant the record, because the store
/// checks each decrypted record against the query's filters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_owner_column_never_shows_a_record_to_another_tenant() {
    let url = fresh_database().await;
    let store = connect(&url, &MasterKey::generate()).await;
    let victim = testing::sample_record(1, "victim-org/secret", 1_000);
    let attacker = testing::sample_record(2, "attacker-org/app", 2_000);
    for r in [&victim, &attacker] {
        store.put_job(PutJob::create(r.clone())).await.unwrap();
    }
    let db = raw(&url).await;
    let rewritten = db
        .execute(
            "UPDATE sprinters_jobs SET owner_h = \
             (SELECT owner_h FROM sprinters_jobs WHERE queued_at = 2000) \
             WHERE queued_at = 1000",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rewritten, 1);
    let selected: i64 = db
        .query_one(
            "SELECT count(*) FROM sprinters_jobs WHERE owner_h = \
             (SELECT owner_h FROM sprinters_jobs WHERE queued_at = 2000)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(selected, 2, "the clear column now selects the victim's row");

    let mut query = ListJobs::newest(50);
    query.owner_id = Some(attacker.owner_id);
    let page = store.list_jobs(query).await.unwrap();
    let keys: Vec<_> = page.jobs.iter().map(|j| j.value.key).collect();
    assert_eq!(keys, vec![attacker.key], "only the attacker's own job");

    // The victim's own query still finds nothing under its rewritten row
    // (the index no longer selects it), and leaks nothing either way.
    let mut query = ListJobs::newest(50);
    query.owner_id = Some(victim.owner_id);
    let page = store.list_jobs(query).await.unwrap();
    assert!(
        page.jobs
            .iter()
            .all(|j| j.value.owner_id == victim.owner_id)
    );
}

/// An endpoint that takes every connection and never says a word (a
/// wedged proxy, a black-holed route): its `host:port`.
async fn silent_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

/// Connecting to a server that never answers fails within the request
/// timeout, as retryable, naming the server and not the password.
#[tokio::test]
async fn a_server_that_never_answers_fails_the_connect_as_retryable() {
    let addr = silent_server().await;
    let url = format!("postgres://sprinters:hunter2-secret@{addr}/sprinters?sslmode=disable");
    let keys = StaticKeyProvider::new(MasterKey::generate());
    let connect = PostgresJobStore::builder(SecretString::from(url))
        .request_timeout(Duration::from_secs(1))
        .connect(&keys);
    let err = within("connecting to a silent server", connect)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains(&addr), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

/// A statement that cannot finish (its row locked by another session)
/// fails as retryable once the request timeout has passed, is cancelled on
/// the server (its write does not land later), and the store goes on
/// working: nothing is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_past_the_request_timeout_fails_as_retryable_and_holds_nothing() {
    let url = fresh_database().await;
    let store = PostgresJobStore::builder(SecretString::from(url.clone()))
        .max_connections(1)
        .ca_file(ca_file())
        .request_timeout(Duration::from_secs(1))
        .connect(&StaticKeyProvider::new(MasterKey::generate()))
        .await
        .unwrap();
    let record = testing::sample_record(9_100, "octo/slow", 1_000);
    store.put_job(PutJob::create(record.clone())).await.unwrap();

    let locker = raw(&url).await;
    locker
        .batch_execute("BEGIN; SELECT id FROM sprinters_jobs FOR UPDATE")
        .await
        .unwrap();
    let err = within(
        "a write blocked by a lock",
        store.put_job(PutJob::replace(record.clone(), 1)),
    )
    .await
    .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        err.to_string().contains("did not answer within 1 s"),
        "{err}"
    );

    // The cut-short statement is cancelled on the server: once nothing
    // waits for the lock, releasing it lets no late write through.
    let watcher = raw(&url).await;
    within("the server cancelling the statement", async {
        loop {
            let waiting: i64 = watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if waiting == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    locker.batch_execute("ROLLBACK").await.unwrap();

    // The one pooled connection is usable again, and the record unchanged.
    let stored = within("reading after a timeout", store.get_job(record.key))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.version, 1, "the cancelled write did not land");
    within(
        "writing after a timeout",
        store.put_job(PutJob::replace(record, 1)),
    )
    .await
    .unwrap();
}

/// A replica that follows the key ring at every seal (the default follows
/// it once a second, the engine's tick).
async fn following(url: &str, key: &MasterKey) -> PostgresJobStore {
    PostgresJobStore::builder(SecretString::from(url.to_owned()))
        .max_connections(4)
        .ca_file(ca_file())
        .key_refresh(Duration::ZERO)
        .connect(&StaticKeyProvider::new(key.clone()))
        .await
        .unwrap()
}

fn in_account(job: u64, account: &str) -> sprinters_core::job::JobRecord {
    let mut r = testing::sample_record(job, "octo/keys", job * 10);
    r.account = AccountId::parse(account).ok();
    r
}

/// Replica A shreds an account; replica B, which had that account's data
/// key cached, never seals a new record with it: the record it writes
/// afterwards is readable by a third replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_destroyed_by_one_replica_is_never_sealed_with_by_another() {
    let url = fresh_database().await;
    let key = MasterKey::generate();
    let (a, b) = (following(&url, &key).await, following(&url, &key).await);
    let account = "111122223333";
    b.put_job(PutJob::create(in_account(1, account)))
        .await
        .unwrap();
    a.delete_account(&AccountId::parse(account).unwrap())
        .await
        .unwrap();
    let after = in_account(2, account);
    b.put_job(PutJob::create(after.clone())).await.unwrap();
    let c = connect(&url, &key).await;
    assert_eq!(
        c.get_job(after.key).await.unwrap().map(|r| r.value),
        Some(after),
        "sealed under a live key, not the destroyed one"
    );
}

/// Data keys rotate online: a replica that did not rotate seals its next
/// record under the new key, and every record stays readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_keys_rotate_online_across_replicas() {
    let url = fresh_database().await;
    let key = MasterKey::generate();
    let (a, b) = (following(&url, &key).await, following(&url, &key).await);
    let account = "444455556666";
    let first = in_account(11, account);
    b.put_job(PutJob::create(first.clone())).await.unwrap();
    assert!(a.rotate_data_keys().await.unwrap() >= 1);
    let second = in_account(12, account);
    b.put_job(PutJob::create(second.clone())).await.unwrap();
    let keys: i64 = raw(&url)
        .await
        .query_one("SELECT count(DISTINCT key_id) FROM sprinters_jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(keys, 2, "the second record is sealed under the new key");
    let c = connect(&url, &key).await;
    for r in [first, second] {
        assert_eq!(c.get_job(r.key).await.unwrap().map(|v| v.value), Some(r));
    }
}

/// The master key rotates in one transaction: the old key no longer opens
/// the store, the new one reads every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_key_rotates_and_the_old_one_is_refused() {
    let url = fresh_database().await;
    let (old, new) = (MasterKey::generate(), MasterKey::generate());
    let store = connect(&url, &old).await;
    let stale = following(&url, &old).await;
    let record = in_account(21, "777788889999");
    store.put_job(PutJob::create(record.clone())).await.unwrap();
    assert!(store.rotate_master_key(&new).await.unwrap() >= 1);
    // A replica still running with the old key stops sealing (a data key
    // it wrapped now would open for nobody else).
    let err = stale
        .put_job(PutJob::create(in_account(22, "777788889999")))
        .await
        .unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("restart this replica"), "{err}");
    let err = PostgresJobStore::builder(SecretString::from(url.clone()))
        .ca_file(ca_file())
        .connect(&StaticKeyProvider::new(old))
        .await
        .unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Config, "{err}");
    let reopened = connect(&url, &new).await;
    assert_eq!(
        reopened.get_job(record.key).await.unwrap().map(|r| r.value),
        Some(record)
    );
}

/// A master-key rotation whose future is dropped half-way (its caller
/// timed out while another session held the data keys) changes nothing,
/// and leaves no transaction open on the pooled connection: the next write
/// commits, and the old key still opens the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_key_rotation_cut_short_changes_nothing_and_holds_nothing() {
    let url = fresh_database().await;
    let old = MasterKey::generate();
    let store = PostgresJobStore::builder(SecretString::from(url.clone()))
        .max_connections(1)
        .ca_file(ca_file())
        .connect(&StaticKeyProvider::new(old.clone()))
        .await
        .unwrap();
    store
        .put_job(PutJob::create(in_account(31, "121212121212")))
        .await
        .unwrap();
    let locker = raw(&url).await;
    locker
        .batch_execute("BEGIN; SELECT id FROM sprinters_data_keys FOR UPDATE")
        .await
        .unwrap();
    let new = MasterKey::generate();
    let cut_short =
        tokio::time::timeout(Duration::from_millis(300), store.rotate_master_key(&new)).await;
    assert!(cut_short.is_err(), "the rotation waits for the lock");
    locker.batch_execute("ROLLBACK").await.unwrap();

    // The one pooled connection is not left inside the cut-short
    // transaction: this write commits and another session sees it.
    let later = in_account(32, "121212121212");
    within("writing after the cut-short rotation", async {
        store.put_job(PutJob::create(later.clone())).await
    })
    .await
    .unwrap();
    let other = connect(&url, &old).await;
    assert_eq!(
        other.get_job(later.key).await.unwrap().map(|r| r.value),
        Some(later),
        "committed, and the old key still opens the database"
    );
}
