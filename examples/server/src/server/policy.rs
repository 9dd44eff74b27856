//! `/api/owners/{owner}/policy`: what an owner's workflow authors may ask
//! for. `GET` answers the owner's own keys (`?effective=true`: every key,
//! the platform's filling what the owner left out); `PUT` replaces them
//! with a JSON object whose keys left out take the platform's value. Only
//! an unscoped (`*`) token may use it.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sprinters_core::policy::OwnerPolicy;

use super::owners::{OwnersState, Subject, error_status, refuse, subject};

#[derive(Debug, Deserialize)]
pub(crate) struct PolicyQuery {
    #[serde(default)]
    effective: bool,
}

/// Keys not set are left out, as they are in a `PUT` (an empty
/// `repositories` too).
fn without_nulls(mut v: Value) -> Value {
    if let Value::Object(map) = &mut v {
        let empty = Value::Object(Default::default());
        map.retain(|k, v| !(v.is_null() || (k == "repositories" && *v == empty)));
        for v in map.values_mut() {
            *v = without_nulls(v.take());
        }
    }
    v
}

fn answer(s: &Subject, policy: Value) -> Response {
    Json(json!({
        "owner": s.login.as_str(),
        "owner_id": s.owner_id.get(),
        "policy": policy,
    }))
    .into_response()
}

/// `GET /api/owners/{owner}/policy[?effective=true]`.
pub(crate) async fn get(
    State(state): State<OwnersState>,
    Path(owner): Path<String>,
    Query(query): Query<PolicyQuery>,
    headers: HeaderMap,
) -> Response {
    let s = match subject(&state, &headers, &owner, None).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let policy = if query.effective {
        let effective = state.engine.effective_policy(s.owner_id);
        let mut v = serde_json::to_value(&effective.base).unwrap_or_default();
        v["repositories"] = serde_json::to_value(&effective.repositories).unwrap_or_default();
        v
    } else {
        let own = state.engine.owner_policy(s.owner_id).unwrap_or_default();
        serde_json::to_value(&own).unwrap_or_default()
    };
    answer(&s, without_nulls(policy))
}

/// `PUT /api/owners/{owner}/policy` with the owner's policy: a JSON object
/// of the keys it sets (`{}` takes the platform's for every key).
pub(crate) async fn put(
    State(state): State<OwnersState>,
    Path(owner): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let s = match subject(&state, &headers, &owner, None).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    // Parsed here rather than by an extractor, so that the answer names
    // the key that is wrong.
    let policy: OwnerPolicy = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "policy: {e}; expected a JSON object such as {{\"instance_types\": [\"t3.*\"], \"max_vcpus\": 8}}"
                ),
            );
        }
    };
    let stored = (policy != OwnerPolicy::default()).then_some(policy);
    if let Err(e) = state
        .engine
        .set_owner_policy(
            s.owner_id,
            s.installation_id,
            s.login.clone(),
            stored.clone(),
        )
        .await
    {
        return refuse(error_status(&e), format!("policy: {}", e.message()));
    }
    tracing::info!(owner_id = %s.owner_id, "owner policy set");
    let own = stored.unwrap_or_default();
    answer(
        &s,
        without_nulls(serde_json::to_value(&own).unwrap_or_default()),
    )
}
