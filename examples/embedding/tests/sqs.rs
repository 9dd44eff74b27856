//! The SQS event source of `src/sqs.rs` passes the
//! `EventSource` conformance suite against the AWS API emulator's SQS, and
//! the program hands a queued delivery to an engine that acknowledges it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sprinters_embedding::sqs::SqsEventSource;

use std::process::Command;
use std::time::Duration;

use sprinters_core::events::Delivery;
use sprinters_core::testing::EventSourceHarness;

const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(2);

fn endpoint() -> String {
    std::env::var("SPRINTERS_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!("SPRINTERS_TEST_AWS_ENDPOINT is not set: run scripts/test, which starts the AWS emulator")
    })
}

async fn client() -> aws_sdk_sqs::Client {
    let credentials = aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "test");
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(credentials)
        .load()
        .await;
    aws_sdk_sqs::Client::new(&config)
}

#[tokio::test]
async fn the_sqs_source_passes_the_event_source_suite() {
    let client = client().await;
    let name = format!("conformance-{:016x}", fastrand::u64(..));
    // A short visibility timeout, so the redelivery checks wait seconds.
    let queue = client
        .create_queue()
        .queue_name(&name)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "2",
        )
        .send()
        .await
        .unwrap();
    let source = SqsEventSource::new(client, queue.queue_url.unwrap());
    sprinters_core::testing::event_source(&source, &Harness(&source)).await;
}

/// Pushes through SQS; lets the queue's visibility timeout pass by waiting
/// it out (SQS's clock cannot be driven), so that an acknowledged delivery
/// SQS did not delete would have come back.
struct Harness<'a>(&'a SqsEventSource);

#[async_trait::async_trait]
impl EventSourceHarness for Harness<'_> {
    async fn push(&self, delivery: Delivery) {
        self.0.send(&delivery).await.unwrap();
    }
    async fn let_redelivery_delay_pass(&self) {
        tokio::time::sleep(VISIBILITY_TIMEOUT + Duration::from_millis(500)).await;
    }
}

#[test]
fn the_program_hands_a_queued_delivery_to_the_engine() {
    let output = Command::new(env!("CARGO_BIN_EXE_sqs-event-source"))
        .env("AWS_ENDPOINT_URL", endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("SQS deleted it"), "{stdout}");
}
