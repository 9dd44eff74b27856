//! An engine that takes its deliveries from SQS, through the custom
//! `EventSource` of `src/sqs.rs`: queues one delivery, runs the engine
//! until SQS holds nothing, neither visible nor in flight, and says so.
//!
//! ```sh
//! AWS_ENDPOINT_URL=http://127.0.0.1:5000 AWS_REGION=us-east-1 \
//!   AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
//!   cargo run -p sprinters-embedding --bin sqs-event-source
//! ```
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Duration;

use sprinters_core::domain::DeliveryId;
use sprinters_core::events::Delivery;
use sprinters_embedding::sqs::SqsEventSource;

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let config = aws_config::load_from_env().await;
    let client = aws_sdk_sqs::Client::new(&config);
    let queue = client
        .create_queue()
        .queue_name("sprinters-deliveries")
        .send()
        .await?;
    let queue_url = queue.queue_url.ok_or("CreateQueue returned no URL")?;
    let source = Arc::new(SqsEventSource::new(client.clone(), queue_url.clone()));
    let id = DeliveryId::parse(&format!("example-{:x}", std::process::id()))?;
    let received_at = sprinters_core::time::Timestamp::from_millis(0);
    let event = sprinters_core::events::Event::Ping;
    source
        .send(&Delivery {
            id,
            received_at,
            event,
        })
        .await?;

    let engine = sprinters_embedding::memory_engine()?
        .source(source)
        .build()?;
    // Until SQS holds nothing, neither visible nor in flight: the
    // engine took the delivery in and acknowledged it.
    let drained = async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let attributes = client.get_queue_attributes().queue_url(&queue_url);
            let all = aws_sdk_sqs::types::QueueAttributeName::All;
            let Ok(out) = attributes.attribute_names(all).send().await else {
                continue;
            };
            let count = |name: &str| {
                let name = aws_sdk_sqs::types::QueueAttributeName::from(name);
                out.attributes()
                    .and_then(|a| a.get(&name))
                    .map_or("?", |v| v.as_str())
                    == "0"
            };
            if count("ApproximateNumberOfMessages")
                && count("ApproximateNumberOfMessagesNotVisible")
            {
                return;
            }
        }
    };
    // Bounded: a queue that never drains is a failure, not a wait.
    tokio::time::timeout(Duration::from_secs(60), engine.run(drained))
        .await
        .map_err(|_| "SQS still held the delivery after a minute")??;
    println!("the engine took the delivery from {queue_url} and SQS deleted it");
    Ok(())
}
