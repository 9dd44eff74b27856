//! The [`EventSource`] conformance suite.
//!
//! It asks what the engine relies on, and no more: every delivery pushed
//! comes out of a poll at least once (duplicates are allowed, order is
//! not asked: an SQS standard queue passes), a poll returns at most its
//! `max`, an acknowledged delivery does not come back, one that is not
//! acknowledged does, and a dropped poll loses nothing. Each check waits
//! for deliveries to arrive rather than for a poll to be pending, so it
//! holds on a networked source whose polls are always in flight.

use std::collections::BTreeSet;

use async_trait::async_trait;
use futures::FutureExt;

use crate::domain::DeliveryId;
use crate::events::{Delivery, Event};
use crate::memory::MemoryEventSource;
use crate::ports::{Ack, EventSource, Poll};
use crate::time::{ManualClock, Timestamp};

/// How many polls a check makes while it waits for a delivery before it
/// fails (a networked source may return empty polls in between).
const MAX_POLLS: usize = 200;

/// What the suite needs besides the port: a way in, and a way to let the
/// redelivery delay pass.
///
/// A closure `Fn(Delivery) -> impl Future<Output = ()>` is a harness that
/// only pushes. It suits a source that redelivers as soon as it is polled
/// again; on one that redelivers later (a queue's visibility timeout) it
/// cannot show that an acknowledged delivery stays gone, so give such a
/// source a harness whose `let_redelivery_delay_pass` waits the delay out.
#[async_trait]
pub trait EventSourceHarness: Send + Sync {
    /// Adds a delivery the way the source's producer would (an HTTP
    /// request, a queue message, ...).
    async fn push(&self, delivery: Delivery);

    /// Lets the delay after which a polled, unacknowledged delivery comes
    /// back pass: advance a manual clock, or nothing when polling waits it
    /// out. Called between polls while a check waits for a redelivery.
    async fn let_redelivery_delay_pass(&self) {}
}

#[async_trait]
impl<F, Fut> EventSourceHarness for F
where
    F: Fn(Delivery) -> Fut + Send + Sync,
    Fut: std::future::Future<Output = ()> + Send,
{
    async fn push(&self, delivery: Delivery) {
        self(delivery).await;
    }
}

/// Runs every check: [`every_delivery_comes_out_at_least_once`],
/// [`acknowledged_deliveries_do_not_come_back`],
/// [`unacknowledged_deliveries_come_back`] and
/// [`a_dropped_poll_loses_nothing`]. The source may hold deliveries of its
/// own (a shared queue): the checks look only at the ones they pushed.
pub async fn event_source(source: &dyn EventSource, harness: &impl EventSourceHarness) {
    every_delivery_comes_out_at_least_once(source, harness).await;
    acknowledged_deliveries_do_not_come_back(source, harness).await;
    unacknowledged_deliveries_come_back(source, harness).await;
    a_dropped_poll_loses_nothing(source, harness).await;
}

/// Ids no earlier run of the suite used, so that a persistent queue's
/// leftovers from another run are told apart.
fn fresh_ids(what: &str, n: usize) -> Vec<DeliveryId> {
    let run = fastrand::u64(..);
    (1..=n)
        .map(|i| DeliveryId::parse(&format!("conformance-{what}-{run:016x}-{i}")).unwrap())
        .collect()
}

async fn push_all(harness: &impl EventSourceHarness, ids: &[DeliveryId]) {
    for id in ids {
        harness
            .push(Delivery {
                id: id.clone(),
                received_at: Timestamp::from_millis(1),
                event: Event::Ping,
            })
            .await;
    }
}

/// Polls (`max` at a time) until every one of `wanted` has come out,
/// acknowledging nothing; returns every id of ours seen, in order.
/// `redeliver` lets the redelivery delay pass before each poll.
async fn poll_until(
    source: &dyn EventSource,
    harness: &impl EventSourceHarness,
    wanted: &BTreeSet<DeliveryId>,
    ours: &BTreeSet<DeliveryId>,
    max: usize,
    redeliver: bool,
) -> Vec<DeliveryId> {
    let mut seen = Vec::new();
    let mut missing = wanted.clone();
    for _ in 0..MAX_POLLS {
        if missing.is_empty() {
            return seen;
        }
        if redeliver {
            // Before the poll: a source that redelivers only when asked
            // (an in-memory queue) would otherwise wait for a push.
            harness.let_redelivery_delay_pass().await;
        }
        let polled = source.poll(Poll::new(max)).await.unwrap();
        assert!(
            polled.deliveries.len() <= max,
            "a poll returns at most `max` ({max}), not {}",
            polled.deliveries.len()
        );
        for delivery in polled.deliveries {
            missing.remove(&delivery.id);
            if ours.contains(&delivery.id) {
                seen.push(delivery.id);
            }
        }
    }
    panic!("after {MAX_POLLS} polls these deliveries never came out: {missing:?}");
}

/// Three deliveries pushed all come out of polls of at most two, at least
/// once each (in any order, duplicates allowed).
///
/// Needs: `push`.
pub async fn every_delivery_comes_out_at_least_once(
    source: &dyn EventSource,
    harness: &impl EventSourceHarness,
) {
    let ids = fresh_ids("every", 3);
    push_all(harness, &ids).await;
    let all: BTreeSet<_> = ids.iter().cloned().collect();
    poll_until(source, harness, &all, &all, 2, false).await;
    source.ack(Ack::new(ids)).await.unwrap();
}

/// Deliveries acknowledged (twice: acknowledging is idempotent) do not
/// come back, even once the redelivery delay has passed: a delivery pushed
/// after them comes out, and none of them with or before it.
///
/// Needs: `push`, and `let_redelivery_delay_pass` when the source does not
/// redeliver on its own while polled.
pub async fn acknowledged_deliveries_do_not_come_back(
    source: &dyn EventSource,
    harness: &impl EventSourceHarness,
) {
    let acked = fresh_ids("acked", 2);
    push_all(harness, &acked).await;
    let acked_set: BTreeSet<_> = acked.iter().cloned().collect();
    poll_until(source, harness, &acked_set, &acked_set, 10, false).await;
    source.ack(Ack::new(acked.clone())).await.unwrap();
    source.ack(Ack::new(acked.clone())).await.unwrap();
    harness.let_redelivery_delay_pass().await;

    let marker = fresh_ids("after-ack", 1);
    push_all(harness, &marker).await;
    let marker_set: BTreeSet<_> = marker.iter().cloned().collect();
    let ours: BTreeSet<_> = acked_set.union(&marker_set).cloned().collect();
    let seen = poll_until(source, harness, &marker_set, &ours, 10, false).await;
    let back: Vec<_> = seen.iter().filter(|id| acked_set.contains(*id)).collect();
    assert!(
        back.is_empty(),
        "acknowledged deliveries came back: {back:?}"
    );
    source.ack(Ack::new(marker)).await.unwrap();
}

/// A delivery polled and not acknowledged comes back once the redelivery
/// delay has passed (a crash between the poll and the acknowledgement
/// loses nothing).
///
/// Needs: `push`, and `let_redelivery_delay_pass` when the source does not
/// redeliver on its own while polled.
pub async fn unacknowledged_deliveries_come_back(
    source: &dyn EventSource,
    harness: &impl EventSourceHarness,
) {
    let ids = fresh_ids("unacked", 1);
    push_all(harness, &ids).await;
    let set: BTreeSet<_> = ids.iter().cloned().collect();
    poll_until(source, harness, &set, &set, 10, false).await;
    // Not acknowledged: it must come out again.
    poll_until(source, harness, &set, &set, 10, true).await;
    source.ack(Ack::new(ids)).await.unwrap();
}

/// A poll dropped before it answered (the engine drops its poll on
/// shutdown) loses nothing: a delivery pushed around it still comes out.
///
/// Needs: `push`, and `let_redelivery_delay_pass` when a dropped poll may
/// have taken a delivery in flight (it then comes back after the delay).
pub async fn a_dropped_poll_loses_nothing(
    source: &dyn EventSource,
    harness: &impl EventSourceHarness,
) {
    let ids = fresh_ids("dropped-poll", 1);
    // Polled and dropped before it answered: at its first await, and (the
    // delivery pushed meanwhile) while its request may be in flight.
    let _ = source.poll(Poll::new(10)).now_or_never();
    let in_flight = source.poll(Poll::new(10));
    push_all(harness, &ids).await;
    let _ = tokio::time::timeout(std::time::Duration::from_millis(50), in_flight).await;
    let set: BTreeSet<_> = ids.iter().cloned().collect();
    poll_until(source, harness, &set, &set, 10, true).await;
    source.ack(Ack::new(ids)).await.unwrap();
}

/// The harness of a [`MemoryEventSource`] on a [`ManualClock`]: pushes
/// onto the queue, and moves the clock past its visibility timeout.
#[derive(Debug, Clone)]
pub struct MemoryEventSourceHarness {
    /// The queue.
    pub source: std::sync::Arc<MemoryEventSource>,
    /// Its clock.
    pub clock: std::sync::Arc<ManualClock>,
}

#[async_trait]
impl EventSourceHarness for MemoryEventSourceHarness {
    async fn push(&self, delivery: Delivery) {
        self.source.push(delivery);
    }
    async fn let_redelivery_delay_pass(&self) {
        self.clock.advance(std::time::Duration::from_secs(31));
    }
}
