//! A custom `EventSource`: the engine takes its deliveries from an SQS
//! queue, as platforms that queue their webhooks do. The platform's ingress
//! checks each webhook's signature and parses it
//! (`sprinters_github::WebhookVerifier`), then queues the `Delivery` as
//! JSON; the engine polls, and acknowledges what it has durably taken in.
//!
//! SQS standard queues deliver at least once, in no order, and a message
//! not deleted comes back after the queue's visibility timeout: exactly what
//! the port asks (`tests/sqs.rs` runs the conformance suite on it).
//!
//! `src/bin/sqs_event_source.rs` runs an engine on it.
//!
//! The queue is inside the trust boundary: the engine takes a message as a
//! delivery GitHub signed, so only the ingress may send to it (a queue
//! policy allowing `sqs:SendMessage` to the ingress's role alone). A source
//! that cannot trust its producer queues the raw body and headers instead
//! and checks them with `WebhookVerifier` in `poll`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::error::DisplayErrorContext;
use sprinters_core::domain::DeliveryId;
use sprinters_core::events::Delivery;
use sprinters_core::ports::{Ack, EventSource, Poll, Polled};
use sprinters_core::{Error, Result};
use tokio::sync::mpsc;

/// Deliveries from one SQS queue. A task long-polls the queue without
/// pause, so that the engine may drop a `poll` (it does, every tick)
/// without losing what a request in flight had received.
#[derive(Debug)]
pub struct SqsEventSource {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    received: tokio::sync::Mutex<mpsc::Receiver<(Delivery, String)>>,
    /// The newest receipt handle of each delivery not yet acknowledged:
    /// SQS deletes a message only by its newest one.
    receipts: Arc<Mutex<HashMap<DeliveryId, String>>>,
    receiver: tokio::task::JoinHandle<()>,
}

impl SqsEventSource {
    /// Polls `queue_url` from now on.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: String) -> Self {
        let (tx, rx) = mpsc::channel(64);
        let receipts = Arc::new(Mutex::new(HashMap::new()));
        let receiver = tokio::spawn(receive(
            client.clone(),
            queue_url.clone(),
            tx,
            receipts.clone(),
        ));
        let received = tokio::sync::Mutex::new(rx);
        Self {
            client,
            queue_url,
            received,
            receipts,
            receiver,
        }
    }

    /// Queues `delivery`: what the platform's webhook ingress does.
    pub async fn send(&self, delivery: &Delivery) -> Result<()> {
        let body = serde_json::to_string(delivery).map_err(|e| Error::config(e.to_string()))?;
        let send = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body);
        send.send().await.map_err(|e| sqs_error("SendMessage", e))?;
        Ok(())
    }
}

impl Drop for SqsEventSource {
    fn drop(&mut self) {
        self.receiver.abort();
    }
}

fn sqs_error(call: &str, e: impl std::error::Error) -> Error {
    Error::unavailable(format!("SQS {call}: {}", DisplayErrorContext(e)))
}

/// Long-polls the queue (20 s, SQS's longest) and hands each delivery on.
async fn receive(
    client: aws_sdk_sqs::Client,
    queue_url: String,
    tx: mpsc::Sender<(Delivery, String)>,
    receipts: Arc<Mutex<HashMap<DeliveryId, String>>>,
) {
    loop {
        let request = client
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10);
        let messages = match request.wait_time_seconds(20).send().await {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                // Wrong URL, no permission, expired credentials: said, and
                // tried again a second later.
                tracing::warn!(error = %DisplayErrorContext(&e), "SQS ReceiveMessage failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for message in messages {
            let (Some(body), Some(receipt)) = (message.body, message.receipt_handle) else {
                continue;
            };
            // A message that is not a delivery is left to the queue's
            // dead-letter policy.
            let Ok(delivery) = serde_json::from_str::<Delivery>(&body) else {
                continue;
            };
            {
                let mut map = receipts.lock().unwrap_or_else(|e| e.into_inner());
                map.insert(delivery.id.clone(), receipt.clone());
            }
            if tx.send((delivery, receipt)).await.is_err() {
                return;
            }
        }
    }
}

#[async_trait]
impl EventSource for SqsEventSource {
    async fn poll(&self, request: Poll) -> Result<Polled> {
        let mut received = self.received.lock().await;
        let mut deliveries = Vec::new();
        while deliveries.is_empty() {
            let Some(first) = received.recv().await else {
                return Err(Error::unavailable("the SQS receiver stopped"));
            };
            let mut batch = vec![first];
            while batch.len() < request.max.max(1) {
                let Ok(next) = received.try_recv() else { break };
                batch.push(next);
            }
            // A copy received again since (the queue's visibility timeout
            // passed) or acknowledged already is stale: skip it.
            let map = self.receipts.lock().unwrap_or_else(|e| e.into_inner());
            batch.retain(|(d, receipt)| map.get(&d.id) == Some(receipt));
            deliveries = batch.into_iter().map(|(d, _)| d).collect();
        }
        Ok(Polled::new(deliveries))
    }

    async fn ack(&self, request: Ack) -> Result<()> {
        let receipts: Vec<String> = {
            let mut map = self.receipts.lock().unwrap_or_else(|e| e.into_inner());
            request.ids.iter().filter_map(|id| map.remove(id)).collect()
        };
        for chunk in receipts.chunks(10) {
            let mut batch = self
                .client
                .delete_message_batch()
                .queue_url(&self.queue_url);
            for (n, receipt) in chunk.iter().enumerate() {
                let entry = aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(n.to_string())
                    .receipt_handle(receipt);
                batch = batch.entries(
                    entry
                        .build()
                        .map_err(|e| sqs_error("DeleteMessageBatch", e))?,
                );
            }
            // Not deleted: the message comes back, and the engine's
            // de-duplication drops it.
            let out = batch
                .send()
                .await
                .map_err(|e| sqs_error("DeleteMessageBatch", e))?;
            // A batch succeeds as a call and may fail entry by entry (a
            // stale receipt handle).
            if let Some(failed) = out.failed().first() {
                return Err(Error::unavailable(format!(
                    "SQS DeleteMessageBatch: {} of {} not deleted ({})",
                    out.failed().len(),
                    chunk.len(),
                    failed.message().unwrap_or(failed.code())
                )));
            }
        }
        Ok(())
    }
}
