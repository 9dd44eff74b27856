//! The in-memory adapters pass the conformance suites every adapter runs.

// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use sprinters_core::domain::{
    AccountId, InstallationId, JobId, JobKey, Owner, OwnerId, Repository, RunAttempt, RunId,
};
use sprinters_core::labels::LabelParser;
use sprinters_core::memory::{
    MemoryCredentials, MemoryEventSource, MemoryJobStore, MemoryLauncher, MemoryRegistry,
};
use sprinters_core::ports::{
    Ack, CredentialProvider, CredentialsRequest, EventSource, JobStatus, Poll, Polled,
    RemoteJobStatus,
};
use sprinters_core::testing;
use sprinters_core::time::{Clock, ManualClock};

#[tokio::test]
async fn memory_job_store_passes_the_suite() {
    testing::job_store(&MemoryJobStore::new()).await;
}

/// Each check of the suite runs on its own, on a fresh store, in reverse
/// order: a third-party adapter may run them one by one.
#[tokio::test]
async fn the_job_store_checks_run_one_by_one_on_fresh_stores() {
    use testing::checks::job_store as c;
    macro_rules! each {
        ($($check:ident),*) => {
            $( c::$check(&MemoryJobStore::new()).await; )*
        };
    }
    each!(
        claims_count_every_live_launch,
        claims_within_caps,
        tenants,
        retention,
        queued_counts,
        spare_runners,
        due_work,
        history,
        leases,
        deliveries_recorded_with_writes,
        deliveries,
        claims,
        put_get_and_compare_and_swap
    );
}

#[tokio::test]
async fn memory_launcher_passes_the_suite() {
    let clock = Arc::new(ManualClock::default());
    let credentials = MemoryCredentials::new();
    let account = AccountId::parse("123456789012").unwrap();
    let fixture = testing::LauncherFixture {
        credentials: credentials
            .credentials(CredentialsRequest::new(
                account.clone(),
                OwnerId::new(1),
                Owner::parse("octo").unwrap(),
            ))
            .await
            .unwrap(),
        account,
        controller_id: "conformance".into(),
        spec: LabelParser::default()
            .parse_label("sprinters:aws:eu-west-1")
            .unwrap(),
    };
    testing::cloud_launcher(&MemoryLauncher::new(clock), &fixture).await;
}

#[tokio::test]
async fn memory_registry_passes_the_suite() {
    let registry = MemoryRegistry::new();
    let repository = Repository::parse("octo/app").unwrap();
    let queued_job = JobKey::new(JobId::new(5), RunAttempt::FIRST);
    registry.set_job(
        repository.clone(),
        RunId::new(50),
        queued_job,
        vec!["sprinters".into()],
        JobStatus::new(RemoteJobStatus::Queued, None, None),
    );
    let fixture = testing::RegistryFixture {
        installation_id: InstallationId::new(1),
        repository,
        queued_job,
        queued_run: RunId::new(50),
        unknown_job: JobId::new(6),
    };
    testing::runner_registry(&registry, &fixture).await;
}

#[tokio::test]
async fn memory_credentials_pass_the_suite() {
    let fixture = testing::CredentialsFixture {
        account: AccountId::parse("123456789012").unwrap(),
        owner_id: OwnerId::new(1),
        owner: Owner::parse("octo").unwrap(),
        now: ManualClock::default().now(),
    };
    testing::credential_provider(&MemoryCredentials::new(), &fixture).await;
}

fn memory_source() -> testing::MemoryEventSourceHarness {
    let clock = Arc::new(ManualClock::default());
    let source = Arc::new(MemoryEventSource::new(clock.clone()));
    testing::MemoryEventSourceHarness { source, clock }
}

#[tokio::test]
async fn memory_event_source_passes_the_suite() {
    let harness = memory_source();
    testing::event_source(&*harness.source, &harness).await;
}

/// The memory queue as a networked source looks: every poll is pending at
/// first (a request in flight), and a long poll with nothing to give
/// answers empty after a second.
#[derive(Debug)]
struct Networked {
    inner: Arc<MemoryEventSource>,
    /// Acknowledges what it hands out (at most once, a broken source).
    forgets_unacknowledged: bool,
    /// Ignores acknowledgements (a broken source).
    ignores_acks: bool,
}

#[async_trait::async_trait]
impl EventSource for Networked {
    async fn poll(&self, request: Poll) -> sprinters_core::Result<Polled> {
        tokio::task::yield_now().await;
        // A long poll that ends empty after a while, as SQS's does.
        let Ok(polled) =
            tokio::time::timeout(Duration::from_secs(1), self.inner.poll(request)).await
        else {
            return Ok(Polled::new(Vec::new()));
        };
        let polled = polled?;
        if self.forgets_unacknowledged {
            let ids = polled.deliveries.iter().map(|d| d.id.clone()).collect();
            self.inner.ack(Ack::new(ids)).await?;
        }
        Ok(polled)
    }
    async fn ack(&self, request: Ack) -> sprinters_core::Result<()> {
        if self.ignores_acks {
            return Ok(());
        }
        self.inner.ack(request).await
    }
}

fn networked(
    forgets_unacknowledged: bool,
    ignores_acks: bool,
) -> (Networked, testing::MemoryEventSourceHarness) {
    let harness = memory_source();
    let source = Networked {
        inner: harness.source.clone(),
        forgets_unacknowledged,
        ignores_acks,
    };
    (source, harness)
}

#[tokio::test(start_paused = true)]
async fn a_source_whose_polls_are_pending_first_passes_the_suite() {
    use futures::FutureExt;
    let (source, harness) = networked(false, false);
    assert!(source.poll(Poll::new(1)).now_or_never().is_none());
    testing::event_source(&source, &harness).await;
}

/// The checks fail a broken source instead of passing without looking.
#[tokio::test(start_paused = true)]
async fn the_checks_fail_a_source_that_loses_or_repeats_deliveries() {
    use futures::FutureExt;
    use std::panic::AssertUnwindSafe;
    let (forgetful, harness) = networked(true, false);
    let failed = AssertUnwindSafe(
        testing::checks::event_source::unacknowledged_deliveries_come_back(&forgetful, &harness),
    )
    .catch_unwind()
    .await;
    assert!(
        failed.is_err(),
        "a delivery polled and not acknowledged was lost"
    );
    let (deaf, harness) = networked(false, true);
    let failed = AssertUnwindSafe(
        testing::checks::event_source::acknowledged_deliveries_do_not_come_back(&deaf, &harness),
    )
    .catch_unwind()
    .await;
    assert!(failed.is_err(), "acknowledged deliveries came back");
}

#[tokio::test]
async fn memory_event_source_redelivers_what_was_not_acknowledged() {
    use sprinters_core::domain::DeliveryId;
    use sprinters_core::events::{Delivery, Event};
    use sprinters_core::ports::{Ack, EventSource, Poll};

    let clock = Arc::new(ManualClock::default());
    let source = MemoryEventSource::new(clock.clone());
    let id = DeliveryId::parse("d-1").unwrap();
    source.push(Delivery {
        id: id.clone(),
        received_at: clock.now(),
        event: Event::Ping,
    });
    let first = source.poll(Poll::new(1)).await.unwrap();
    assert_eq!(first.deliveries[0].id, id);
    use futures::FutureExt;
    assert!(
        source.poll(Poll::new(1)).now_or_never().is_none(),
        "invisible while in flight"
    );
    clock.advance(std::time::Duration::from_secs(31));
    let again = source.poll(Poll::new(1)).await.unwrap();
    assert_eq!(
        again.deliveries[0].id, id,
        "an unacknowledged delivery comes back (a crash loses nothing)"
    );
    source.ack(Ack::new(vec![id])).await.unwrap();
    clock.advance(std::time::Duration::from_secs(31));
    assert!(source.poll(Poll::new(1)).now_or_never().is_none());
}

#[tokio::test]
async fn memory_vault_passes_the_suite() {
    testing::credential_vault(&sprinters_core::vault::MemoryVault::new()).await;
}
