//! The [`JobStore`] conformance suite.

use std::time::Duration;

use crate::ErrorKind;
use crate::domain::{
    DeliveryId, InstallationId, JobId, JobKey, OwnerId, Repository, RunAttempt, RunId,
};
use crate::job::{JobRecord, JobState, Lease};
use crate::labels::LabelSetKey;
use crate::ports::{
    AcquireLease, ClaimJob, JobStore, ListJobs, Purge, PutJob, RecordDelivery, ReleaseLease,
};
use crate::time::Timestamp;

/// The account id the samples give the owner `login`: stable, and
/// different for different logins (lower-cased).
pub fn sample_owner_id(login: &str) -> OwnerId {
    let hash = login
        .to_ascii_lowercase()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    OwnerId::new(hash >> 12)
}

/// A record for `repository` (`owner/name`), queued at `queued_at` ms; its
/// owner's id is [`sample_owner_id`] of the login.
pub fn sample_record(job_id: u64, repository: &str, queued_at: u64) -> JobRecord {
    let labels = vec!["sprinters:aws:ubuntu-latest".to_owned()];
    let repository = Repository::parse(repository).unwrap_or_else(|e| panic!("{e}"));
    JobRecord {
        key: JobKey::new(JobId::new(job_id), RunAttempt::FIRST),
        run_id: RunId::new(job_id * 10),
        owner_id: sample_owner_id(repository.owner().as_str()),
        repository,
        installation_id: InstallationId::new(7),
        name: Some(format!("build {job_id}")),
        label_set: LabelSetKey::of(&labels),
        labels,
        spec: None,
        account: None,
        state: JobState::Queued,
        message: None,
        launches: Vec::new(),
        ran_on: None,
        ran_on_launch: None,
        conclusion: None,
        queued_at: Timestamp::from_millis(queued_at),
        started_at: None,
        completed_at: None,
        failed_attempts: 0,
        next_attempt_at: None,
        lease: None,
        cost_micros: None,
        rerun_requested: false,
        rerun_pending: false,
    }
}

/// Runs every check of [`checks::job_store`](crate::testing::checks::job_store).
/// Job ids from 9_000_000_000 up and delivery ids starting with
/// `conformance-` are used; the store should start empty.
///
/// Each check needs only the port, and a store that holds none of those
/// ids; `history` and `retention` also need one that holds no other jobs
/// of the owners they use. The checks can run one by one, in any order,
/// each on a fresh store.
pub async fn job_store(store: &dyn JobStore) {
    put_get_and_compare_and_swap(store).await;
    claims(store).await;
    deliveries(store).await;
    deliveries_recorded_with_writes(store).await;
    leases(store).await;
    history(store).await;
    due_work(store).await;
    spare_runners(store).await;
    queued_counts(store).await;
    retention(store).await;
    tenants(store).await;
    claims_within_caps(store).await;
    claims_count_every_live_launch(store).await;
}

/// Owner records: created, read, replaced by compare-and-swap (a stale
/// version is a `Conflict`), listed, and deleted only at their version.
pub async fn tenants(store: &dyn JobStore) {
    use crate::domain::{AccountId, Owner};
    use crate::ports::PutTenant;
    use crate::tenant::{Connection, TenantRecord};
    let owner_id = OwnerId::new(BASE + 900);
    let mut record = TenantRecord::new(
        owner_id,
        InstallationId::new(77),
        Owner::parse("conformance-org").unwrap(),
    );
    let connection = Connection::pending(
        AccountId::parse("123456789012").unwrap(),
        Timestamp::from_millis(5),
    );
    record.connections.push(connection.clone());
    assert!(store.get_tenant(owner_id).await.unwrap().is_none());
    let v1 = store
        .put_tenant(PutTenant::create(record.clone()))
        .await
        .unwrap();
    let err = store
        .put_tenant(PutTenant::create(record.clone()))
        .await
        .unwrap_err();
    assert_eq!(
        *err.kind(),
        ErrorKind::Conflict,
        "create on an existing owner"
    );
    let read = store.get_tenant(owner_id).await.unwrap().unwrap();
    assert_eq!(read.version, v1);
    assert_eq!(read.value, record, "the record, external id included");

    record.suspended = true;
    let v2 = store
        .put_tenant(PutTenant::replace(record.clone(), v1))
        .await
        .unwrap();
    assert!(v2 > v1);
    let stale = store
        .put_tenant(PutTenant::replace(record.clone(), v1))
        .await
        .unwrap_err();
    assert_eq!(*stale.kind(), ErrorKind::Conflict, "a stale replace");
    let listed = store.list_tenants().await.unwrap();
    let mine: Vec<_> = listed
        .iter()
        .filter(|t| t.value.owner_id == owner_id)
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].version, v2);
    assert!(mine[0].value.suspended);

    let err = store.delete_tenant(owner_id, v1).await.unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Conflict, "a stale delete");
    store.delete_tenant(owner_id, v2).await.unwrap();
    assert!(store.get_tenant(owner_id).await.unwrap().is_none());
    store.delete_tenant(owner_id, v2).await.unwrap();
    // Created again from nothing, as after an uninstall and a reinstall.
    store
        .put_tenant(PutTenant::create(record.clone()))
        .await
        .unwrap();
    let again = store.get_tenant(owner_id).await.unwrap().unwrap();
    store.delete_tenant(owner_id, again.version).await.unwrap();
}

const BASE: u64 = 9_000_000_000;

/// Job records: absent before the first put, read back as written, and
/// every write a compare-and-swap on the version (`Conflict` otherwise).
pub async fn put_get_and_compare_and_swap(store: &dyn JobStore) {
    let record = sample_record(BASE + 1, "octo/cas", 1_000);
    assert!(
        store.get_job(record.key).await.unwrap().is_none(),
        "absent before the first put"
    );
    let v1 = store.put_job(PutJob::create(record.clone())).await.unwrap();
    let read = store
        .get_job(record.key)
        .await
        .unwrap()
        .expect("a created record reads back");
    assert_eq!(read.value, record, "a record reads back exactly as written");
    assert_eq!(read.version, v1);

    let again = store
        .put_job(PutJob::create(record.clone()))
        .await
        .unwrap_err();
    assert_eq!(
        *again.kind(),
        ErrorKind::Conflict,
        "creating an existing record is a Conflict"
    );

    let mut changed = record.clone();
    changed.state = JobState::Launched;
    let v2 = store
        .put_job(PutJob::replace(changed.clone(), v1))
        .await
        .unwrap();
    assert!(v2 > v1, "a write raises the version");
    let stale = store
        .put_job(PutJob::replace(record.clone(), v1))
        .await
        .unwrap_err();
    assert_eq!(
        *stale.kind(),
        ErrorKind::Conflict,
        "a write at an old version is a Conflict"
    );
    let read = store.get_job(record.key).await.unwrap().unwrap();
    assert_eq!(
        read.value.state,
        JobState::Launched,
        "the losing write changed nothing"
    );

    let missing = sample_record(BASE + 2, "octo/cas", 1_000);
    let err = store
        .put_job(PutJob::replace(missing, 1))
        .await
        .unwrap_err();
    assert_eq!(
        *err.kind(),
        ErrorKind::Conflict,
        "replacing an absent record is a Conflict"
    );
}

/// Launch claims: taken on a stored job, refused while another owner's
/// claim is unexpired, renewed by their holder, taken over once expired.
pub async fn claims(store: &dyn JobStore) {
    let record = sample_record(BASE + 10, "octo/claims", 1_000);
    let key = record.key;
    let now = Timestamp::from_millis(10_000);
    let ttl = Duration::from_secs(60);
    assert!(
        store
            .claim_job(ClaimJob::new(key, "a", now, ttl))
            .await
            .unwrap()
            .granted()
            .is_none(),
        "no claim on an absent job"
    );
    store.put_job(PutJob::create(record)).await.unwrap();

    let claimed = store
        .claim_job(ClaimJob::new(key, "a", now, ttl))
        .await
        .unwrap()
        .granted()
        .expect("a free job is claimed");
    assert_eq!(
        claimed.value.lease,
        Some(Lease {
            owner: "a".into(),
            expires_at: now.saturating_add(ttl)
        })
    );
    let stored = store.get_job(key).await.unwrap().unwrap();
    assert_eq!(
        stored.version, claimed.version,
        "the claim is a durable write"
    );

    let later = now.saturating_add(Duration::from_secs(30));
    assert!(
        store
            .claim_job(ClaimJob::new(key, "b", later, ttl))
            .await
            .unwrap()
            .granted()
            .is_none(),
        "a live claim excludes others"
    );
    let renewed = store
        .claim_job(ClaimJob::new(key, "a", later, ttl))
        .await
        .unwrap()
        .granted()
        .expect("the owner renews");
    assert_eq!(
        renewed.value.lease.unwrap().expires_at,
        later.saturating_add(ttl)
    );

    let expired = later.saturating_add(ttl);
    let taken = store
        .claim_job(ClaimJob::new(key, "b", expired, ttl))
        .await
        .unwrap()
        .granted()
        .expect("an expired claim is taken over");
    assert_eq!(taken.value.lease.unwrap().owner, "b");
}

/// Delivery de-duplication: a delivery recorded is seen, and recording
/// it again says it is a duplicate.
pub async fn deliveries(store: &dyn JobStore) {
    let id = DeliveryId::parse("conformance-delivery-1").unwrap();
    assert!(!store.delivery_seen(id.clone()).await.unwrap());
    let at = Timestamp::from_millis(5_000);
    assert!(
        store
            .record_delivery(RecordDelivery::new(id.clone(), at))
            .await
            .unwrap()
            .first
    );
    assert!(store.delivery_seen(id.clone()).await.unwrap());
    assert!(
        !store
            .record_delivery(RecordDelivery::new(id, at))
            .await
            .unwrap()
            .first,
        "the second time is a duplicate"
    );
}

/// A delivery recorded with a write: `Duplicate` before the version is
/// checked, recorded only when the write is made.
pub async fn deliveries_recorded_with_writes(store: &dyn JobStore) {
    let at = Timestamp::from_millis(5_000);
    let delivery = |id: &str| RecordDelivery::new(DeliveryId::parse(id).unwrap(), at);
    let created = sample_record(BASE + 30, "octo/deliveries", 1_000);
    let key = created.key;
    let v1 = store
        .put_job(PutJob::create(created.clone()).with_delivery(delivery("conformance-write-1")))
        .await
        .unwrap();
    assert!(
        store
            .delivery_seen(DeliveryId::parse("conformance-write-1").unwrap())
            .await
            .unwrap(),
        "a create records the delivery it carries"
    );

    // The same delivery again: nothing is written, even at the right version.
    let mut running = created.clone();
    running.state = JobState::Running;
    let duplicate = store
        .put_job(
            PutJob::replace(running.clone(), v1).with_delivery(delivery("conformance-write-1")),
        )
        .await
        .unwrap_err();
    assert_eq!(*duplicate.kind(), ErrorKind::Duplicate, "{duplicate}");
    assert!(!duplicate.is_retryable(), "a duplicate is final");
    let after = store.get_job(key).await.unwrap().unwrap();
    assert_eq!(
        (after.version, after.value.state),
        (v1, JobState::Queued),
        "a duplicate delivery writes nothing"
    );
    let again = store
        .put_job(PutJob::create(created).with_delivery(delivery("conformance-write-1")))
        .await
        .unwrap_err();
    assert_eq!(
        *again.kind(),
        ErrorKind::Duplicate,
        "checked before the create"
    );

    // A lost compare-and-swap records nothing either: a create of a job
    // that exists, and a replace at a version it is not at.
    for (what, lost) in [
        (
            "a create of a job that exists",
            PutJob::create(running.clone()),
        ),
        ("a stale replace", PutJob::replace(running.clone(), v1 + 7)),
    ] {
        let err = store
            .put_job(lost.with_delivery(delivery("conformance-write-2")))
            .await
            .unwrap_err();
        assert_eq!(*err.kind(), ErrorKind::Conflict, "{what}: {err}");
        assert!(
            !store
                .delivery_seen(DeliveryId::parse("conformance-write-2").unwrap())
                .await
                .unwrap(),
            "{what} records no delivery"
        );
    }

    // The write that wins records it, and it is then a duplicate for
    // `record_delivery` too.
    let v2 = store
        .put_job(PutJob::replace(running, v1).with_delivery(delivery("conformance-write-2")))
        .await
        .unwrap();
    let read = store.get_job(key).await.unwrap().unwrap();
    assert_eq!((read.version, read.value.state), (v2, JobState::Running));
    assert!(
        !store
            .record_delivery(delivery("conformance-write-2"))
            .await
            .unwrap()
            .first,
        "recorded by the write"
    );
}

/// Named leases: one holder at a time, renewed by it, released, and free
/// again once expired.
pub async fn leases(store: &dyn JobStore) {
    let now = Timestamp::from_millis(100_000);
    let ttl = Duration::from_secs(10);
    let a = store
        .acquire_lease(AcquireLease::new("conformance/leader", "a", now, ttl))
        .await
        .unwrap();
    assert!(a.acquired && a.holder == "a" && a.expires_at == now.saturating_add(ttl));
    let b = store
        .acquire_lease(AcquireLease::new("conformance/leader", "b", now, ttl))
        .await
        .unwrap();
    assert!(!b.acquired, "a held lease is not granted to another");
    assert_eq!(b.holder, "a");
    store
        .release_lease(ReleaseLease::new("conformance/leader", "b"))
        .await
        .unwrap();
    let b = store
        .acquire_lease(AcquireLease::new("conformance/leader", "b", now, ttl))
        .await
        .unwrap();
    assert!(!b.acquired, "only the holder can release");
    store
        .release_lease(ReleaseLease::new("conformance/leader", "a"))
        .await
        .unwrap();
    let b = store
        .acquire_lease(AcquireLease::new("conformance/leader", "b", now, ttl))
        .await
        .unwrap();
    assert!(b.acquired, "a released lease is free");
    let late = now.saturating_add(ttl);
    let a = store
        .acquire_lease(AcquireLease::new("conformance/leader", "a", late, ttl))
        .await
        .unwrap();
    assert!(a.acquired, "an expired lease is free");
}

/// History pages: newest first, by owner and state, with a cursor that
/// neither repeats nor skips a job.
pub async fn history(store: &dyn JobStore) {
    // 25 jobs of two owners, queued one second apart.
    for i in 0..25u64 {
        let repo = if i % 2 == 0 { "alpha/app" } else { "beta/app" };
        let mut r = sample_record(BASE + 100 + i, repo, 1_000_000 + i * 1_000);
        if i % 5 == 0 {
            r.state = JobState::Completed;
        }
        if i % 3 == 0 {
            r.account = crate::domain::AccountId::parse("111111111111").ok();
            r.labels.push(format!("pin-{i}"));
            r.label_set = LabelSetKey::of(&r.labels);
        }
        store.put_job(PutJob::create(r)).await.unwrap();
    }
    let mut query = ListJobs::newest(10);
    query.owner_id = Some(sample_owner_id("ALPHA"));
    query.queued_from = Some(Timestamp::from_millis(1_000_000));
    let mut seen = Vec::new();
    loop {
        let page = store.list_jobs(query.clone()).await.unwrap();
        assert!(page.jobs.len() <= 10, "a page holds at most `limit`");
        seen.extend(page.jobs.iter().map(|j| j.value.key.job_id.get()));
        match page.next {
            Some(next) => query.cursor = Some(next),
            None => break,
        }
    }
    let expected: Vec<u64> = (0..25u64)
        .rev()
        .filter(|i| i % 2 == 0)
        .map(|i| BASE + 100 + i)
        .collect();
    assert_eq!(
        seen, expected,
        "owner filter, newest first, pages without gaps or repeats"
    );

    // A login taken over by another GitHub account after a rename: the
    // filter is the account id, so the newcomer sees nothing of the old
    // owner's history, and the other way round.
    let mut usurper = sample_record(BASE + 190, "alpha/app", 1_000_000 + 90_000);
    usurper.owner_id = OwnerId::new(sample_owner_id("alpha").get() + 1);
    usurper.state = JobState::Rejected;
    store
        .put_job(PutJob::create(usurper.clone()))
        .await
        .unwrap();
    let mut q = ListJobs::newest(100);
    q.owner_id = Some(usurper.owner_id);
    let page = store.list_jobs(q).await.unwrap();
    let ids: Vec<JobKey> = page.jobs.iter().map(|j| j.value.key).collect();
    assert_eq!(ids, vec![usurper.key], "the same login under another id");
    let mut q = ListJobs::newest(100);
    q.owner_id = Some(sample_owner_id("alpha"));
    let page = store.list_jobs(q).await.unwrap();
    assert!(
        page.jobs.iter().all(|j| j.value.key != usurper.key),
        "the old owner's filter leaves the newcomer's job out"
    );

    let mut q = ListJobs::newest(100);
    q.queued_from = Some(Timestamp::from_millis(1_000_000));
    q.states = Some(vec![JobState::Completed]);
    let page = store.list_jobs(q).await.unwrap();
    assert_eq!(page.jobs.len(), 5, "state filter");

    let mut q = ListJobs::active(100);
    q.queued_from = Some(Timestamp::from_millis(1_000_000));
    q.account = crate::domain::AccountId::parse("111111111111").ok();
    let page = store.list_jobs(q).await.unwrap();
    let ids: Vec<u64> = page
        .jobs
        .iter()
        .map(|j| j.value.key.job_id.get() - BASE - 100)
        .collect();
    assert_eq!(
        ids,
        vec![24, 21, 18, 12, 9, 6, 3],
        "account filter and active only (completed 0 and 15 excluded)"
    );

    let mut q = ListJobs::active(100);
    let r18 = store
        .get_job(JobKey::new(JobId::new(BASE + 118), RunAttempt::FIRST))
        .await
        .unwrap()
        .unwrap();
    q.label_set = Some(r18.value.label_set);
    let page = store.list_jobs(q).await.unwrap();
    assert_eq!(page.jobs.len(), 1, "label set filter");
    assert_eq!(page.jobs[0].value.key.job_id.get(), BASE + 118);

    let mut q = ListJobs::newest(100);
    q.queued_from = Some(Timestamp::from_millis(1_005_000));
    q.queued_until = Some(Timestamp::from_millis(1_008_000));
    let page = store.list_jobs(q).await.unwrap();
    let ids: Vec<u64> = page
        .jobs
        .iter()
        .map(|j| j.value.key.job_id.get() - BASE - 100)
        .collect();
    assert_eq!(
        ids,
        vec![7, 6, 5],
        "time window: from inclusive, until exclusive"
    );
}

/// The keys of the jobs of `owner` due at `at` ms, every page read with
/// pages of one, newest first.
async fn due_keys(store: &dyn JobStore, owner: OwnerId, at: u64) -> Vec<JobKey> {
    due_keys_since(store, owner, None, at).await
}

/// [`due_keys`], only those due after `after` ms.
async fn due_keys_since(
    store: &dyn JobStore,
    owner: OwnerId,
    after: Option<u64>,
    at: u64,
) -> Vec<JobKey> {
    let mut query = ListJobs::due(Timestamp::from_millis(at), 1);
    query.due_after = after.map(Timestamp::from_millis);
    query.owner_id = Some(owner);
    every_key(store, query).await
}

/// The keys `query` lists, every page read.
async fn every_key(store: &dyn JobStore, mut query: ListJobs) -> Vec<JobKey> {
    let mut keys = Vec::new();
    loop {
        let page = store.list_jobs(query.clone()).await.unwrap();
        keys.extend(page.jobs.iter().map(|j| j.value.key));
        match page.next {
            Some(next) => query.cursor = Some(next),
            None => return keys,
        }
    }
}

/// The due-work query returns the waiting jobs whose back-off and claim
/// are over, and nothing else: not finished jobs, not running ones, not a
/// waiting job whose idle runner is up; a claim or a back-off moves a job's
/// due time, a write moves it again.
pub async fn due_work(store: &dyn JobStore) {
    use crate::job::Launch;
    let repo = "delta/due";
    let owner = sample_owner_id("delta");
    let queued = sample_record(BASE + 600, repo, 1_000);
    let mut backing_off = sample_record(BASE + 601, repo, 2_000);
    backing_off.next_attempt_at = Some(Timestamp::from_millis(20_000));
    let mut done = sample_record(BASE + 602, repo, 3_000);
    done.state = JobState::Cleaned;
    let mut running = sample_record(BASE + 603, repo, 4_000);
    running.state = JobState::Running;
    let claimed = sample_record(BASE + 604, repo, 5_000);
    let mut launched = sample_record(BASE + 605, repo, 6_000);
    launched.state = JobState::Launched;
    launched.launches.push(Launch {
        launched_at: Some(Timestamp::from_millis(6_500)),
        ..live_launch(&launched)
    });
    for r in [&queued, &backing_off, &done, &running, &claimed, &launched] {
        store.put_job(PutJob::create(r.clone())).await.unwrap();
    }
    let ttl = Duration::from_secs(60);
    store
        .claim_job(ClaimJob::new(
            claimed.key,
            "a",
            Timestamp::from_millis(10_000),
            ttl,
        ))
        .await
        .unwrap()
        .granted()
        .expect("claimed");

    assert_eq!(
        due_keys(store, owner, 15_000).await,
        vec![queued.key],
        "only the free queued job is due before the back-off and the claim end"
    );
    assert_eq!(
        due_keys(store, owner, 20_000).await,
        vec![backing_off.key, queued.key],
        "a back-off ends at its time"
    );
    assert_eq!(
        due_keys(store, owner, 70_000).await,
        vec![claimed.key, backing_off.key, queued.key],
        "a claim ends at its expiry"
    );
    assert_eq!(
        due_keys_since(store, owner, Some(15_000), 70_000).await,
        vec![claimed.key, backing_off.key],
        "what became due after a time: not the job due before it"
    );
    assert_eq!(
        due_keys_since(store, owner, Some(20_000), 70_000).await,
        vec![claimed.key],
        "due exactly at the time is not after it"
    );

    // A write moves the due time: the claim released, the job is due at
    // once; the queued job's runner up, it is no longer due.
    let current = store.get_job(claimed.key).await.unwrap().unwrap();
    let mut released = current.value.clone();
    released.lease = None;
    store
        .put_job(PutJob::replace(released, current.version))
        .await
        .unwrap();
    let mut covered = launched.clone();
    covered.key = queued.key;
    covered.queued_at = queued.queued_at;
    let current = store.get_job(queued.key).await.unwrap().unwrap();
    store
        .put_job(PutJob::replace(covered, current.version))
        .await
        .unwrap();
    assert_eq!(
        due_keys(store, owner, 15_000).await,
        vec![claimed.key],
        "a released claim is due at once, a job with its runner up is not"
    );
}

/// The spare-runner query returns the active jobs of a label set with an
/// idle instance up that no longer wait for one, and nothing else: not a
/// waiting job's own runner, not a runner a job took, not an ended one, not
/// another label set's; a write that lets a job take the runner takes the
/// job out.
pub async fn spare_runners(store: &dyn JobStore) {
    use crate::job::EndReason;
    let repo = "epsilon/spare";
    let owner = sample_owner_id("epsilon");
    let launched = |id: u64, state: JobState| {
        let mut r = sample_record(id, repo, id);
        r.state = state;
        let launch = live_launch(&r);
        r.launches.push(launch);
        r
    };
    let cancelled = launched(BASE + 700, JobState::Cancelled);
    let waiting = launched(BASE + 701, JobState::Launched);
    let mut running = launched(BASE + 702, JobState::Running);
    running.launches[0].taken_by = Some(running.key);
    let mut ended = launched(BASE + 703, JobState::Completed);
    ended.launches[0].ended = Some((Timestamp::from_millis(9), EndReason::JobCompleted));
    let mut elsewhere = launched(BASE + 704, JobState::Completed);
    elsewhere.labels = vec!["sprinters:aws:ubuntu-latest:large".to_owned()];
    elsewhere.label_set = crate::labels::LabelSetKey::of(&elsewhere.labels);
    let mut two = launched(BASE + 705, JobState::Completed);
    two.launches.push(crate::job::Launch {
        number: 2,
        ..live_launch(&two)
    });
    for r in [&cancelled, &waiting, &running, &ended, &elsewhere, &two] {
        store.put_job(PutJob::create(r.clone())).await.unwrap();
    }
    // Pages of one: the index's order and cursor are read too.
    let mut query = ListJobs::active(1);
    query.owner_id = Some(owner);
    query.label_set = Some(cancelled.label_set);
    query.spares_only = true;
    let spares = || every_key(store, query.clone());
    assert_eq!(
        spares().await,
        vec![two.key, cancelled.key],
        "the finished jobs of the label set with an idle runner up, newest first"
    );
    assert_eq!(two.spare_runners(), 2);

    let current = store.get_job(cancelled.key).await.unwrap().unwrap();
    let mut taken = current.value.clone();
    taken.launches[0].taken_by = Some(waiting.key);
    store
        .put_job(PutJob::replace(taken, current.version))
        .await
        .unwrap();
    assert_eq!(
        spares().await,
        vec![two.key],
        "a runner a job took is no longer spare"
    );
}

/// An owner's queued jobs are counted up to the limit asked: not its
/// claimed, launched, running or finished ones, not another owner's; a
/// write that takes a job out of the queue takes it out of the count.
pub async fn queued_counts(store: &dyn JobStore) {
    use crate::ports::CountQueued;
    let owner = sample_owner_id("zeta");
    let queued: Vec<JobRecord> = (0..3)
        .map(|n| sample_record(BASE + 800 + n, "zeta/queue", 800 + n))
        .collect();
    let mut others = Vec::new();
    for (n, state) in [
        JobState::Launching,
        JobState::Launched,
        JobState::Running,
        JobState::Cleaned,
    ]
    .into_iter()
    .enumerate()
    {
        let mut r = sample_record(BASE + 810 + n as u64, "zeta/queue", 810);
        r.state = state;
        others.push(r);
    }
    others.push(sample_record(BASE + 820, "eta/queue", 820));
    for r in queued.iter().chain(&others) {
        store.put_job(PutJob::create(r.clone())).await.unwrap();
    }
    let count = |at_most| store.count_queued(CountQueued::new(owner, at_most));
    assert_eq!(count(10).await.unwrap(), 3, "the owner's queued jobs only");
    assert_eq!(count(2).await.unwrap(), 2, "counted up to the limit");
    assert_eq!(count(0).await.unwrap(), 0);
    assert_eq!(
        store
            .count_queued(CountQueued::new(sample_owner_id("eta"), 10))
            .await
            .unwrap(),
        1
    );

    let current = store.get_job(queued[0].key).await.unwrap().unwrap();
    let mut claimed = current.value.clone();
    claimed.state = JobState::Launching;
    store
        .put_job(PutJob::replace(claimed, current.version))
        .await
        .unwrap();
    assert_eq!(count(10).await.unwrap(), 2, "a launching job is not queued");
}

/// Retention: finished jobs and deliveries older than the cut-off go,
/// active and newer ones stay.
pub async fn retention(store: &dyn JobStore) {
    let mut old_done = sample_record(BASE + 500, "gamma/old", 50);
    old_done.state = JobState::Cleaned;
    let old_active = sample_record(BASE + 501, "gamma/old", 60);
    let mut new_done = sample_record(BASE + 502, "gamma/old", 9_000_000);
    new_done.state = JobState::Cleaned;
    for r in [&old_done, &old_active, &new_done] {
        store.put_job(PutJob::create(r.clone())).await.unwrap();
    }
    let old_delivery = DeliveryId::parse("conformance-old-delivery").unwrap();
    store
        .record_delivery(RecordDelivery::new(
            old_delivery.clone(),
            Timestamp::from_millis(10),
        ))
        .await
        .unwrap();

    let recent_delivery = DeliveryId::parse("conformance-recent-delivery").unwrap();
    store
        .record_delivery(RecordDelivery::new(
            recent_delivery.clone(),
            Timestamp::from_millis(500),
        ))
        .await
        .unwrap();

    // Deliveries are kept for GitHub's redelivery window, shorter than the
    // history's retention: both cut-offs are honoured, each on its own.
    let purged = store
        .purge(
            Purge::before(Timestamp::from_millis(1_000))
                .with_deliveries_before(Timestamp::from_millis(100)),
        )
        .await
        .unwrap();
    assert!(purged.jobs >= 1 && purged.deliveries >= 1, "{purged:?}");
    assert!(
        store.delivery_seen(recent_delivery.clone()).await.unwrap(),
        "a delivery inside the redelivery window is kept"
    );
    let purged = store
        .purge(
            Purge::before(Timestamp::from_millis(0))
                .with_deliveries_before(Timestamp::from_millis(1_000)),
        )
        .await
        .unwrap();
    assert_eq!(purged.jobs, 0, "the jobs' cut-off is their own");
    assert!(
        !store.delivery_seen(recent_delivery).await.unwrap(),
        "a delivery past the redelivery window is purged"
    );
    assert!(
        store.get_job(old_done.key).await.unwrap().is_none(),
        "an old finished job is purged"
    );
    assert!(
        store.get_job(old_active.key).await.unwrap().is_some(),
        "an active job is never purged"
    );
    assert!(
        store.get_job(new_done.key).await.unwrap().is_some(),
        "a recent job is kept"
    );
    assert!(
        !store.delivery_seen(old_delivery).await.unwrap(),
        "old deliveries are purged"
    );
}

/// A live launch of `record` (launch 1, its instance up, idle): for the
/// slot and spare-runner checks.
pub fn live_launch(record: &JobRecord) -> crate::job::Launch {
    use crate::domain::{InstanceId, InstanceType, Region, RunnerName};
    crate::job::Launch {
        number: 1,
        runner_name: RunnerName::for_launch(record.key, 1),
        runner_id: None,
        instance_id: Some(InstanceId::parse("i-0123456789abcdef0").unwrap()),
        region: Region::us_east_1(),
        availability_zone: None,
        instance_type: InstanceType::default_for(crate::domain::Arch::X64),
        spot: false,
        spot_fallback: false,
        hourly_price_micros: None,
        launched_at: Some(Timestamp::from_millis(1_000)),
        taken_by: None,
        ended: None,
    }
}

/// A claim within caps counts, with the claim, the other jobs holding a
/// slot: a live launch, or an unexpired claim (not a lapsed one, not an
/// ended launch, not a finished job's); per AWS account whatever the owner, per repository
/// whatever its case, per owner. Refused, it writes nothing; a job that
/// holds a slot already is never refused.
pub async fn claims_within_caps(store: &dyn JobStore) {
    use crate::domain::AccountId;
    use crate::job::EndReason;
    use crate::ports::{CapReached, Claim, SlotCap, SlotCaps};
    let account = AccountId::parse("210987654321").unwrap();
    let now = Timestamp::from_millis(100_000);
    let ttl = Duration::from_secs(60);
    let job = |n: u64, repo: &str| {
        let mut r = sample_record(BASE + 3_000 + n, repo, 50_000 + n);
        r.account = Some(account.clone());
        r
    };
    let mut live = job(1, "caps-org/app");
    live.state = JobState::Running;
    live.launches.push(live_launch(&live));
    let claimed = job(2, "caps-org/web");
    let mut lapsed = job(3, "caps-org/app");
    lapsed.lease = Some(Lease {
        owner: "c".into(),
        expires_at: Timestamp::from_millis(99_000),
    });
    let mut ended = job(4, "caps-org/app");
    ended.state = JobState::Cleaned;
    ended.launches.push(live_launch(&ended));
    ended.launches[0].ended = Some((Timestamp::from_millis(2_000), EndReason::JobCompleted));
    let mut others = job(5, "caps-other/app");
    others.state = JobState::Launched;
    others.launches.push(live_launch(&others));
    // Finished while claimed: it launches nothing, so it holds no slot.
    let mut finished = job(9, "caps-org/app");
    finished.state = JobState::Cancelled;
    finished.lease = Some(Lease {
        owner: "z".into(),
        expires_at: Timestamp::from_millis(200_000),
    });
    let mut elsewhere = job(6, "caps-org/app");
    elsewhere.account = Some(AccountId::parse("210987654322").unwrap());
    let candidate = job(7, "Caps-Org/App");
    let second = job(8, "caps-org/app");
    for r in [
        &live, &claimed, &lapsed, &ended, &others, &elsewhere, &candidate, &second, &finished,
    ] {
        store.put_job(PutJob::create(r.clone())).await.unwrap();
    }
    store
        .claim_job(ClaimJob::new(claimed.key, "b", now, ttl))
        .await
        .unwrap()
        .granted()
        .expect("claimed");
    let claim = |key: JobKey, per_account, per_repository, per_owner| {
        ClaimJob::new(key, "a", now, ttl).within(SlotCaps::new(
            per_account,
            per_repository,
            per_owner,
        ))
    };
    let full = |cap, limit, held| Claim::Full(CapReached { cap, limit, held });
    // In the account: live, claimed and the other owner's; in the owner:
    // live and claimed; in the repository: live.
    for (caps, expected) in [
        ((Some(3), None, None), full(SlotCap::Account, 3, 3)),
        ((None, Some(1), None), full(SlotCap::Repository, 1, 1)),
        ((None, None, Some(2)), full(SlotCap::Owner, 2, 2)),
    ] {
        let (a, r, o) = caps;
        let outcome = store
            .claim_job(claim(candidate.key, a, r, o))
            .await
            .unwrap();
        assert_eq!(outcome, expected, "caps {caps:?}");
    }
    let stored = store.get_job(candidate.key).await.unwrap().unwrap();
    assert_eq!(stored.version, 1, "a refused claim writes nothing");
    assert_eq!(stored.value.lease, None);

    let granted = store
        .claim_job(claim(candidate.key, Some(4), Some(2), Some(3)))
        .await
        .unwrap()
        .granted()
        .expect("granted below every cap");
    assert!(granted.value.lease.is_some());
    assert_eq!(
        store
            .claim_job(claim(second.key, None, None, Some(3)))
            .await
            .unwrap(),
        full(SlotCap::Owner, 3, 3),
        "the granted claim holds a slot"
    );
    assert!(
        store
            .claim_job(claim(candidate.key, Some(1), Some(1), Some(1)))
            .await
            .unwrap()
            .granted()
            .is_some(),
        "a job that holds a slot renews its claim whatever the caps"
    );
    assert!(
        store
            .claim_job(claim(elsewhere.key, Some(1), None, None))
            .await
            .unwrap()
            .granted()
            .is_some(),
        "another account counts its own slots"
    );
}

/// Slots are counted per launch: a job whose runner another job took holds
/// that launch's slot while it waits, and its claim to launch again needs
/// one more; once launched again it holds both, until one ends.
pub async fn claims_count_every_live_launch(store: &dyn JobStore) {
    use crate::domain::AccountId;
    use crate::job::EndReason;
    use crate::ports::{CapReached, Claim, SlotCap, SlotCaps};
    let account = AccountId::parse("210987654329").unwrap();
    let now = Timestamp::from_millis(100_000);
    let ttl = Duration::from_secs(60);
    let job = |n: u64| {
        let mut r = sample_record(BASE + 3_100 + n, "steal-org/app", 51_000 + n);
        r.account = Some(account.clone());
        r
    };
    let (mut robbed, mut thief, waiting) = (job(1), job(2), job(3));
    // The thief runs on the robbed job's runner, which still waits.
    let mut taken = live_launch(&robbed);
    taken.taken_by = Some(thief.key);
    robbed.launches.push(taken);
    thief.state = JobState::Running;
    for r in [&robbed, &thief, &waiting] {
        store.put_job(PutJob::create(r.clone())).await.unwrap();
    }
    let within = |key: JobKey, per_account| {
        ClaimJob::new(key, "a", now, ttl).within(SlotCaps::new(Some(per_account), None, None))
    };
    let full = |held| Claim::Full(CapReached::new(SlotCap::Account, 2, held));
    let claim = |key, cap| async move { store.claim_job(within(key, cap)).await.unwrap() };

    assert_eq!(
        claim(robbed.key, 1).await,
        Claim::Full(CapReached::new(SlotCap::Account, 1, 1)),
        "the taken launch counts against its own job's next one"
    );
    let claimed = claim(robbed.key, 2).await.granted().expect("a second slot");
    assert_eq!(
        claim(waiting.key, 2).await,
        full(2),
        "the claim holds one more"
    );
    assert!(
        claim(robbed.key, 1).await.granted().is_some(),
        "its claim counted, renewing it is never refused"
    );

    // Launched again: the taken launch and the new one.
    let mut relaunched = store.get_job(claimed.value.key).await.unwrap().unwrap();
    let mut second = live_launch(&relaunched.value);
    second.number = 2;
    second.runner_name = crate::domain::RunnerName::for_launch(relaunched.value.key, 2);
    relaunched.value.launches.push(second);
    relaunched.value.lease = None;
    let version = store
        .put_job(PutJob::replace(
            relaunched.value.clone(),
            relaunched.version,
        ))
        .await
        .unwrap();
    assert_eq!(claim(waiting.key, 2).await, full(2), "both launches count");

    // The thief's job ended on the first instance.
    relaunched.value.launches[0].ended =
        Some((Timestamp::from_millis(90_000), EndReason::JobCompleted));
    store
        .put_job(PutJob::replace(relaunched.value, version))
        .await
        .unwrap();
    assert!(
        claim(waiting.key, 2).await.granted().is_some(),
        "an ended launch frees its slot"
    );
}
