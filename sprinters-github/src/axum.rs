//! The webhook endpoint as an axum router (feature `axum`).
//!
//! Answers 202 once the delivery is durable (GitHub gives up after 10 s,
//! so it never waits on a launch), 200 for events the engine does not use
//! and for duplicates, 401 for a missing or bad signature, 400 for a
//! malformed request, 413 for a body over the limit, and 503 when the
//! delivery could not be stored (GitHub records the failure and
//! [`DeliveryRecovery`](crate::DeliveryRecovery) redelivers it). Nothing
//! is stored on any error.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use sprinters_core::engine::Handled;
use sprinters_core::events::Event;
use sprinters_core::time::Clock;

use crate::sink::DeliverySink;
use crate::webhook::WebhookVerifier;

#[derive(Clone)]
struct WebhookState {
    verifier: Arc<WebhookVerifier>,
    sink: Arc<dyn DeliverySink>,
    clock: Arc<dyn Clock>,
}

/// A router answering `POST /` with the webhook handler; nest it where
/// GitHub posts (`Router::new().nest("/webhooks/github", webhook_router(..))`).
/// Bodies over the verifier's limit are refused before they are read in
/// full.
pub fn webhook_router(
    verifier: WebhookVerifier,
    sink: Arc<dyn DeliverySink>,
    clock: Arc<dyn Clock>,
) -> Router {
    let limit = verifier.max_body();
    Router::new()
        .route("/", post(handle))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(WebhookState {
            verifier: Arc::new(verifier),
            sink,
            clock,
        })
}

async fn handle(
    State(state): State<WebhookState>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let delivery = match state.verifier.verify(&headers, &body, state.clock.now()) {
        Ok(delivery) => delivery,
        Err(e) => {
            tracing::warn!(error = %e, "webhook refused");
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return (status, e.to_string());
        }
    };
    if matches!(delivery.event, Event::Ping | Event::Other { .. }) {
        return (StatusCode::OK, "ignored".to_owned());
    }
    let id = delivery.id.clone();
    match state.sink.accept(delivery).await {
        Ok(Handled::Duplicate) => (StatusCode::OK, "duplicate".to_owned()),
        Ok(Handled::Ignored) => (StatusCode::OK, "ignored".to_owned()),
        Ok(_) => (StatusCode::ACCEPTED, "accepted".to_owned()),
        Err(e) => {
            tracing::error!(delivery = %id, error = %e, "webhook not stored");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not stored; GitHub may redeliver".to_owned(),
            )
        }
    }
}
