//! [`EventSource`]: a pull source of deliveries (a queue); push sources
//! such as webhooks call [`Engine::handle`](crate::engine::Engine::handle)
//! directly instead.

use std::fmt;

use async_trait::async_trait;

use crate::Result;
use crate::domain::DeliveryId;
use crate::events::Delivery;

/// Asks for the next deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Poll {
    /// At most this many.
    pub max: usize,
}

impl Poll {
    /// Up to `max` deliveries.
    pub fn new(max: usize) -> Self {
        Self { max }
    }
}

/// What a poll returned.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Polled {
    /// The deliveries, oldest first where the source keeps an order.
    pub deliveries: Vec<Delivery>,
}

impl Polled {
    /// A poll's answer: `deliveries`, oldest first (an empty one when a
    /// long poll ended with nothing).
    pub fn new(deliveries: Vec<Delivery>) -> Self {
        Self { deliveries }
    }
}

/// Acknowledges deliveries once they are durably taken in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ack {
    /// The deliveries that are done.
    pub ids: Vec<DeliveryId>,
}

impl Ack {
    /// Acknowledges `ids`.
    pub fn new(ids: Vec<DeliveryId>) -> Self {
        Self { ids }
    }
}

/// A source of deliveries. A delivery that is polled and not acknowledged
/// comes back later (at-least-once), so nothing is lost to a crash.
///
/// # Implementing
///
/// A source over a queue of your own: `poll` takes up to `max` messages
/// and leaves them in flight, `ack` deletes them. A message in flight and
/// never acknowledged must come back (a queue's visibility timeout), and
/// `poll` may be dropped at any await without losing one.
///
/// ```
/// use async_trait::async_trait;
/// use sprinters_core::Result;
/// use sprinters_core::events::Delivery;
/// use sprinters_core::ports::{Ack, EventSource, Poll, Polled};
///
/// #[derive(Debug)]
/// struct MyQueue;
///
/// #[async_trait]
/// impl EventSource for MyQueue {
///     async fn poll(&self, request: Poll) -> Result<Polled> {
///         // Receive up to `request.max` messages, decode each into a
///         // `Delivery` (it is `serde`), remember how to delete it.
///         let deliveries: Vec<Delivery> = Vec::new();
///         Ok(Polled::new(deliveries))
///     }
///     async fn ack(&self, request: Ack) -> Result<()> {
///         // Delete `request.ids` from the queue; an unknown id is fine.
///         let _ = request.ids;
///         Ok(())
///     }
/// }
/// ```
///
/// Its tests run `sprinters_core::testing::event_source` (feature
/// `testing`), or its checks one by one from
/// `sprinters_core::testing::checks::event_source`. A full one over SQS is
/// `examples/embedding/src/sqs.rs`.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait EventSource: Send + Sync + fmt::Debug + 'static {
    /// Waits until at least one delivery is available and returns up to
    /// `max`. The engine drops this future on shutdown, so it must be
    /// cancel-safe: a dropped poll loses nothing.
    async fn poll(&self, request: Poll) -> Result<Polled>;

    /// Marks deliveries as durably taken in; they are not delivered again.
    async fn ack(&self, request: Ack) -> Result<()>;
}
