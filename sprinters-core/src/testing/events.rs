//! The [`EventSource`] conformance suite.

use futures::FutureExt;

use crate::domain::DeliveryId;
use crate::events::{Delivery, Event};
use crate::ports::{Ack, EventSource, Poll};
use crate::time::Timestamp;

/// Runs every check; `push` adds a delivery to the source the way its
/// producer would (an HTTP request, a queue message, ...).
pub async fn event_source<F, Fut>(source: &dyn EventSource, push: F)
where
    F: Fn(Delivery) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    assert!(
        source.poll(Poll::new(10)).now_or_never().is_none(),
        "an empty source makes the poller wait"
    );
    let ids: Vec<DeliveryId> = (1..=3)
        .map(|i| DeliveryId::parse(&format!("conformance-event-{i}")).unwrap())
        .collect();
    for id in &ids {
        push(Delivery {
            id: id.clone(),
            received_at: Timestamp::from_millis(1),
            event: Event::Ping,
        })
        .await;
    }
    let mut got = Vec::new();
    while got.len() < ids.len() {
        let polled = source.poll(Poll::new(2)).await.unwrap();
        assert!(polled.deliveries.len() <= 2, "a poll returns at most `max`");
        got.extend(polled.deliveries.into_iter().map(|d| d.id));
    }
    assert_eq!(got, ids, "deliveries come out in the order they went in");
    source.ack(Ack::new(ids.clone())).await.unwrap();
    source.ack(Ack::new(ids)).await.unwrap();
    assert!(
        source.poll(Poll::new(10)).now_or_never().is_none(),
        "acknowledged deliveries are not delivered again"
    );
}
