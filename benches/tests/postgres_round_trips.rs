//! What one job lifecycle (queued, launched, in progress, completed,
//! cleaned) costs in PostgreSQL statements, counted by the store: the
//! figure `docs/operating.md` gives, kept from growing unnoticed.

#![allow(clippy::unwrap_used, clippy::panic, clippy::print_stdout)]

use sprinters_benches::postgres::{Replicas, fresh_database};
use sprinters_core::engine::Limits;
use sprinters_core::ports::JobStore;

/// The target; `docs/operating.md`'s PostgreSQL section gives the count.
const MOST_PER_LIFECYCLE: u64 = 10;

/// Under a cap the job is stored queued, then claimed by a statement that
/// counts the slots under advisory locks (`docs/store.md`): 10.0 measured,
/// now and then a little over (a claim that met a write in flight asks
/// again).
const MOST_PER_CAPPED_LIFECYCLE: u64 = 11;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_lifecycle_costs_a_bounded_number_of_round_trips() {
    lifecycles(Limits::default(), MOST_PER_LIFECYCLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_job_lifecycle_costs_a_bounded_number_of_round_trips() {
    let limits = Limits {
        per_account: Some(100),
        per_repository: None,
    };
    lifecycles(limits, MOST_PER_CAPPED_LIFECYCLE).await;
}

async fn lifecycles(limits: Limits, most: u64) {
    let url = fresh_database().await;
    let replicas = Replicas::start_with(&url, 1, 4, limits).await;
    let rig = &replicas.rigs[0];
    // The first lifecycle also prepares each statement on its connection.
    for id in 1..=20 {
        rig.lifecycle(id).await;
    }
    let before = replicas.round_trips();
    let n = 50;
    for id in 100..100 + n {
        rig.lifecycle(id).await;
    }
    let per = (replicas.round_trips() - before) as f64 / n as f64;
    println!("{per:.2} round trips per lifecycle ({limits:?})");
    assert!(
        per <= most as f64,
        "{per:.2} round trips per lifecycle, more than {most}"
    );
    for id in 100..100 + n {
        let key = rig.bed.job(id).key;
        let record = replicas.stores[0].get_job(key).await.unwrap().unwrap();
        assert_eq!(record.value.state, sprinters_core::job::JobState::Cleaned);
    }
}
