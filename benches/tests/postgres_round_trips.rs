//! What one job lifecycle (queued, launched, in progress, completed,
//! cleaned) costs in PostgreSQL statements, counted by the store: the
//! figure the README gives, kept from growing unnoticed.

#![allow(clippy::unwrap_used, clippy::panic, clippy::print_stdout)]

use sprinters_benches::postgres::{Replicas, fresh_database};
use sprinters_core::ports::JobStore;

/// The target; the README's PostgreSQL section gives the count.
const MOST_PER_LIFECYCLE: u64 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_lifecycle_costs_a_bounded_number_of_round_trips() {
    let url = fresh_database().await;
    let replicas = Replicas::start(&url, 1, 4).await;
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
    println!("{per:.1} round trips per lifecycle");
    assert!(
        per <= MOST_PER_LIFECYCLE as f64,
        "{per:.1} round trips per lifecycle, more than {MOST_PER_LIFECYCLE}"
    );
    for id in 100..100 + n {
        let key = rig.bed.job(id).key;
        let record = replicas.stores[0].get_job(key).await.unwrap().unwrap();
        assert_eq!(record.value.state, sprinters_core::job::JobState::Cleaned);
    }
}
