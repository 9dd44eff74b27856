//! An in-memory queue as an [`EventSource`], with at-least-once delivery.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, watch};

use super::lock;
use crate::Result;
use crate::domain::DeliveryId;
use crate::events::Delivery;
use crate::ports::{Ack, EventSource, Poll, Polled};
use crate::time::{Clock, Timestamp};

/// A queue: pushed deliveries are polled in order; a polled delivery not
/// acknowledged within the visibility timeout is delivered again.
#[derive(Debug)]
pub struct MemoryEventSource {
    clock: Arc<dyn Clock>,
    visibility_timeout: Duration,
    state: Mutex<QueueState>,
    pushed: Notify,
    acked: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct QueueState {
    ready: VecDeque<Delivery>,
    in_flight: HashMap<DeliveryId, (Delivery, Timestamp)>,
}

impl MemoryEventSource {
    /// A queue whose polled deliveries come back after 30 s unacknowledged.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            visibility_timeout: Duration::from_secs(30),
            state: Mutex::new(QueueState::default()),
            pushed: Notify::new(),
            acked: watch::channel(0).0,
        }
    }

    /// Adds a delivery to the end of the queue.
    pub fn push(&self, delivery: Delivery) {
        lock(&self.state).ready.push_back(delivery);
        self.pushed.notify_waiters();
        self.pushed.notify_one();
    }

    /// Deliveries polled and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        lock(&self.state).in_flight.len()
    }

    /// Waits until `n` deliveries in all have been acknowledged.
    pub async fn wait_acked(&self, n: u64) {
        let mut rx = self.acked.subscribe();
        let _ = rx.wait_for(|acked| *acked >= n).await;
    }

    fn take(&self, max: usize) -> Vec<Delivery> {
        let now = self.clock.now();
        let mut s = lock(&self.state);
        let expired: Vec<DeliveryId> = s
            .in_flight
            .iter()
            .filter(|(_, (_, visible_at))| *visible_at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some((d, _)) = s.in_flight.remove(&id) {
                s.ready.push_front(d);
            }
        }
        let mut out = Vec::new();
        while out.len() < max.max(1) {
            let Some(d) = s.ready.pop_front() else { break };
            let visible_at = now.saturating_add(self.visibility_timeout);
            s.in_flight.insert(d.id.clone(), (d.clone(), visible_at));
            out.push(d);
        }
        out
    }
}

#[async_trait]
impl EventSource for MemoryEventSource {
    async fn poll(&self, request: Poll) -> Result<Polled> {
        loop {
            let notified = self.pushed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let deliveries = self.take(request.max);
            if !deliveries.is_empty() {
                return Ok(Polled { deliveries });
            }
            notified.await;
        }
    }

    async fn ack(&self, request: Ack) -> Result<()> {
        let n = {
            let mut s = lock(&self.state);
            request
                .ids
                .iter()
                .filter(|id| s.in_flight.remove(*id).is_some())
                .count()
        };
        self.acked.send_modify(|acked| *acked += n as u64);
        Ok(())
    }
}
