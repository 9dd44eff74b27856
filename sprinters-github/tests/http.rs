//! The axum webhook route: status codes, and that nothing reaches the
//! engine unless GitHub signed it. The last test drives the real engine
//! (over the in-memory adapters) from a signed request to a launch.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use secrecy::SecretString;
use sprinters_core::engine::Handled;
use sprinters_core::events::Delivery;
use sprinters_core::testing::TestBed;
use sprinters_core::time::{ManualClock, Timestamp};
use sprinters_core::{Error, Result};
use sprinters_github::webhook::{DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign};
use sprinters_github::{DeliverySink, WebhookVerifier, webhook_router};
use tower::ServiceExt;

const SECRET: &str = "webhook-secret-for-tests";

/// Records what it is given; fails when told to.
#[derive(Default)]
struct Recorder {
    taken: Mutex<Vec<Delivery>>,
    fail: bool,
}

#[async_trait]
impl DeliverySink for Recorder {
    async fn accept(&self, delivery: Delivery) -> Result<Handled> {
        if self.fail {
            return Err(Error::unavailable("store down"));
        }
        self.taken.lock().unwrap().push(delivery);
        Ok(Handled::Ignored)
    }
}

struct Bed(TestBed);

#[async_trait]
impl DeliverySink for Bed {
    async fn accept(&self, delivery: Delivery) -> Result<Handled> {
        self.0.engine.handle(delivery).await
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/webhooks")
            .join(name),
    )
    .unwrap()
}

fn router(sink: Arc<dyn DeliverySink>, limit: usize) -> axum::Router {
    let verifier = WebhookVerifier::new(SecretString::from(SECRET.to_owned()))
        .unwrap()
        .max_body_bytes(limit);
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_790_000_000_000)));
    axum::Router::new().nest("/webhooks/github", webhook_router(verifier, sink, clock))
}

fn request(event: &str, id: &str, body: Vec<u8>, signature: Option<String>) -> Request<Body> {
    let mut r = Request::post("/webhooks/github")
        .header(EVENT_HEADER, event)
        .header(DELIVERY_HEADER, id)
        .header("content-type", "application/json");
    if let Some(sig) = signature {
        r = r.header(SIGNATURE_HEADER, sig);
    }
    r.body(Body::from(body)).unwrap()
}

fn signed(event: &str, id: &str, body: Vec<u8>) -> Request<Body> {
    let sig = sign(&SecretString::from(SECRET.to_owned()), &body);
    request(event, id, body, Some(sig))
}

async fn status(router: &axum::Router, request: Request<Body>) -> StatusCode {
    router.clone().oneshot(request).await.unwrap().status()
}

#[tokio::test]
async fn each_refusal_has_its_status_and_reaches_nothing() {
    let sink = Arc::new(Recorder::default());
    let app = router(sink.clone(), 16 * 1024);
    let body = fixture("workflow_job.queued.json");

    let unsigned = request("workflow_job", "d-1", body.clone(), None);
    assert_eq!(status(&app, unsigned).await, StatusCode::UNAUTHORIZED);
    let forged = request(
        "workflow_job",
        "d-2",
        body.clone(),
        Some(sign(&SecretString::from("guess".to_owned()), &body)),
    );
    assert_eq!(status(&app, forged).await, StatusCode::UNAUTHORIZED);
    let malformed = b"{\"action\":".to_vec();
    assert_eq!(
        status(&app, signed("workflow_job", "d-3", malformed)).await,
        StatusCode::BAD_REQUEST
    );
    let no_id = {
        let mut r = signed("workflow_job", "d-4", body.clone());
        r.headers_mut().remove(DELIVERY_HEADER);
        r
    };
    assert_eq!(status(&app, no_id).await, StatusCode::BAD_REQUEST);
    let huge = vec![b' '; 16 * 1024 + 1];
    assert_eq!(
        status(&app, signed("workflow_job", "d-5", huge)).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert!(
        sink.taken.lock().unwrap().is_empty(),
        "nothing was taken in"
    );

    // Ignored events are answered 2xx without touching the sink.
    assert_eq!(
        status(&app, signed("ping", "d-6", fixture("ping.json"))).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&app, signed("push", "d-7", fixture("push.json"))).await,
        StatusCode::OK
    );
    assert!(sink.taken.lock().unwrap().is_empty());

    // A signed workflow_job reaches the sink.
    assert_eq!(
        status(&app, signed("workflow_job", "d-8", body)).await,
        StatusCode::OK,
        "the recorder ignores it"
    );
    assert_eq!(sink.taken.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_delivery_that_cannot_be_stored_is_a_503_for_github_to_redeliver() {
    let sink = Arc::new(Recorder {
        fail: true,
        ..Recorder::default()
    });
    let app = router(sink, 1024 * 1024);
    let body = fixture("workflow_job.queued.json");
    assert_eq!(
        status(&app, signed("workflow_job", "d-9", body)).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn a_signed_queued_job_is_accepted_once_and_launched() {
    let bed = Arc::new(Bed(TestBed::new()));
    let app = router(bed.clone(), 1024 * 1024);
    let body = fixture("workflow_job.queued.json");
    assert_eq!(
        status(&app, signed("workflow_job", "q-1", body.clone())).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        status(&app, signed("workflow_job", "q-1", body)).await,
        StatusCode::OK,
        "a redelivery is a duplicate"
    );
    bed.0.settle().await;
    assert_eq!(bed.0.launcher.alive().len(), 1, "one instance for the job");
}
