//! `/healthz`, `/readyz`, `/metrics` and `/api/jobs`.
//!
//! `/api` needs a bearer token from the configuration; each token sees
//! only the owners it is scoped to.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::ExposeSecret;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sprinters_core::domain::Owner;
use sprinters_core::ports::{JobCursor, ListJobs};

use super::PlaneStore;
use super::metrics::Metrics;
use crate::config::ApiToken;
use crate::view::JobView;

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct ApiState {
    pub(crate) store: PlaneStore,
    pub(crate) tokens: Arc<Vec<ApiToken>>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) tenants: sprinters_core::engine::Tenants,
}

pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the store answers. Ready or not, and nothing more: the store's error goes to the log,
/// never to whoever asks (no token is needed here).
pub(crate) async fn readyz(State(state): State<ApiState>) -> Response {
    match state.store.jobs().list_jobs(ListJobs::newest(1)).await {
        Ok(_) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the store does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
        }
    }
}

/// What the engine counted as it worked: no record is read.
pub(crate) async fn metrics(State(state): State<ApiState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&state.store),
    )
        .into_response()
}

/// Why a request is refused.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        if self.status == StatusCode::UNAUTHORIZED {
            (
                self.status,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                self.message,
            )
                .into_response()
        } else {
            (self.status, self.message).into_response()
        }
    }
}

/// The owners a request's token may see: `Ok(None)` for every owner.
pub(crate) fn authorize(
    tokens: &[ApiToken],
    headers: &HeaderMap,
) -> Result<Option<Vec<Owner>>, Refusal> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("a bearer token is required"))?;
    // Compare digests: the time taken says nothing about the token.
    let digest = Sha256::digest(presented.as_bytes());
    tokens
        .iter()
        .find(|t| Sha256::digest(t.token.expose_secret().as_bytes()) == digest)
        .map(|t| t.owners.clone())
        .ok_or_else(|| unauthorized("unknown token"))
}

fn unauthorized(message: &str) -> Refusal {
    Refusal {
        status: StatusCode::UNAUTHORIZED,
        message: message.to_owned(),
    }
}

fn bad_request(message: String) -> Refusal {
    Refusal {
        status: StatusCode::BAD_REQUEST,
        message,
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct JobsQuery {
    limit: Option<usize>,
    cursor: Option<String>,
    owner: Option<String>,
}

/// The owner a listing is for, within what the token may see.
pub(crate) fn scope(
    allowed: Option<Vec<Owner>>,
    asked: Option<&str>,
) -> Result<Option<Owner>, Refusal> {
    let asked = asked
        .map(Owner::parse)
        .transpose()
        .map_err(|e| bad_request(format!("owner: {e}")))?;
    match (allowed, asked) {
        (None, asked) => Ok(asked),
        (Some(allowed), Some(asked)) => {
            if allowed.iter().any(|o| o.eq_ignore_case(&asked)) {
                Ok(Some(asked))
            } else {
                Err(Refusal {
                    status: StatusCode::FORBIDDEN,
                    message: format!("this token may not see {asked}"),
                })
            }
        }
        (Some(allowed), None) if allowed.len() == 1 => Ok(allowed.into_iter().next()),
        (Some(allowed), None) => Err(bad_request(format!(
            "this token sees several owners; choose one with ?owner= ({})",
            allowed
                .iter()
                .map(|o| o.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// `GET /api/accounts?owner=`: the AWS accounts of the owners a token may
/// see, with their state (never an external id). A scoped token sees the
/// owners its logins were bound to; an unscoped one every owner.
pub(crate) async fn accounts(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(query): Query<JobsQuery>,
) -> Response {
    let allowed = match authorize(&state.tokens, &headers) {
        Ok(allowed) => allowed,
        Err(refusal) => return refusal.into_response(),
    };
    let tenants = &state.tenants;
    let owners: Vec<sprinters_core::engine::Tenant> = match (allowed, query.owner.as_deref()) {
        (None, None) => tenants.all(),
        (allowed, asked) => {
            let logins = match (allowed, asked) {
                (None, Some(asked)) => match Owner::parse(asked) {
                    Ok(o) => vec![o],
                    Err(e) => return bad_request(format!("owner: {e}")).into_response(),
                },
                (Some(allowed), None) => allowed,
                (Some(allowed), Some(asked)) => match scope(Some(allowed), Some(asked)) {
                    Ok(Some(o)) => vec![o],
                    Ok(None) => Vec::new(),
                    Err(refusal) => return refusal.into_response(),
                },
                (None, None) => Vec::new(),
            };
            logins
                .iter()
                .filter_map(|l| tenants.owner_id_of(l).and_then(|id| tenants.get(id)))
                .collect()
        }
    };
    let owners: Vec<serde_json::Value> = owners
        .iter()
        .map(|t| {
            let mut accounts: Vec<serde_json::Value> = t
                .configured
                .iter()
                .map(|a| serde_json::json!({ "aws_account_id": a.as_str(), "state": "connected" }))
                .collect();
            accounts.extend(t.connections.iter().map(|c| {
                serde_json::json!({ "aws_account_id": c.account.as_str(), "state": c.state.as_str() })
            }));
            serde_json::json!({
                "owner": t.login.as_str(),
                "owner_id": t.owner_id.get(),
                "suspended": t.suspended,
                "accounts": accounts,
            })
        })
        .collect();
    Json(serde_json::json!({ "owners": owners })).into_response()
}

/// `GET /api/jobs?limit=&cursor=&owner=`: newest first.
pub(crate) async fn jobs(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(query): Query<JobsQuery>,
) -> Response {
    let allowed = match authorize(&state.tokens, &headers) {
        Ok(allowed) => allowed,
        Err(refusal) => return refusal.into_response(),
    };
    let owner = match scope(allowed, query.owner.as_deref()) {
        Ok(owner) => owner,
        Err(refusal) => return refusal.into_response(),
    };
    let mut list = ListJobs::newest(query.limit.unwrap_or(50).clamp(1, 500));
    if let Some(login) = owner {
        // The account id the login was bound to: a scoped token sees that
        // owner's jobs, never those of whoever holds the login now.
        match state.tenants.owner_id_of(&login) {
            Some(id) => list.owner_id = Some(id),
            None => {
                return Json(serde_json::json!({ "jobs": [], "next_cursor": null }))
                    .into_response();
            }
        }
    }
    if let Some(cursor) = &query.cursor {
        let decoded = URL_SAFE_NO_PAD
            .decode(cursor)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<JobCursor>(&bytes).ok());
        match decoded {
            Some(c) => list.cursor = Some(c),
            None => {
                return bad_request("cursor: not a cursor this server gave".to_owned())
                    .into_response();
            }
        }
    }
    match state.store.jobs().list_jobs(list).await {
        Ok(page) => {
            let jobs: Vec<JobView> = page.jobs.iter().map(|v| JobView::of(&v.value)).collect();
            let next = page
                .next
                .and_then(|c| serde_json::to_vec(&c).ok())
                .map(|b| URL_SAFE_NO_PAD.encode(b));
            Json(serde_json::json!({ "jobs": jobs, "next_cursor": next })).into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}")).into_response(),
    }
}
