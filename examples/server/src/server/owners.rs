//! `/api/owners/{owner}/accounts`: connecting, verifying, listing and
//! disconnecting owners' AWS accounts while the control plane runs. Only a
//! token whose `owners` is `["*"]` may use it (403 for any other, 401 with
//! none). `{owner}` is a login or a numeric GitHub account id.

use std::sync::Arc;

use aws_credential_types::provider::SharedCredentialsProvider;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};
use sprinters_aws::{
    AwsClientConfig, ConnectionCheck, CustomerRole, Ec2Launcher, verify_connection,
};
use sprinters_core::domain::{AccountId, InstallationId, Owner, OwnerId};
use sprinters_core::engine::{Engine, Tenant};
use sprinters_core::labels::RunnerSpec;
use sprinters_core::ports::ListJobs;
use sprinters_core::tenant::Connection;
use sprinters_core::{Error, ErrorKind};
use sprinters_github::GithubApp;

use super::PlaneStore;
use super::api::{Refusal, authorize};
use crate::config::ApiToken;

/// What the owners API needs.
#[derive(Clone)]
pub(crate) struct OwnersState {
    pub(crate) tokens: Arc<Vec<ApiToken>>,
    pub(crate) engine: Arc<Engine>,
    pub(crate) github: Arc<GithubApp>,
    pub(crate) store: PlaneStore,
    pub(crate) aws: AwsClientConfig,
    pub(crate) platform: Option<SharedCredentialsProvider>,
    pub(crate) launcher: Arc<Ec2Launcher>,
    /// What a job with the smallest label launches: verified by dry run.
    pub(crate) default_spec: RunnerSpec,
    pub(crate) controller_id: String,
    pub(crate) platform_account_id: Option<AccountId>,
    /// Every entry of the configuration: login and account.
    pub(crate) configured_accounts: Vec<(Owner, AccountId)>,
    pub(crate) template_url: Option<String>,
}

fn refusal(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

pub(super) fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    refusal(status, message).into_response()
}

/// Only an unscoped (`*`) token administers owners.
fn admin(state: &OwnersState, headers: &HeaderMap) -> Result<(), Refusal> {
    match authorize(&state.tokens, headers) {
        Ok(None) => Ok(()),
        Ok(Some(_)) => Err(refusal(
            StatusCode::FORBIDDEN,
            "the owners API (accounts, policies) needs a token whose owners are [\"*\"]",
        )),
        Err(refused) => Err(refused),
    }
}

/// The owner `{owner}` names. A number is the id of an owner known here
/// (else it is read as a login: GitHub logins may be all digits). A login
/// is looked up with GitHub (the App's installation on it): the account
/// that holds it now. If this control plane bound the login to another
/// account (it was renamed, and someone else holds the old login), that is
/// a 409 naming both ids: the owner is then named by its id.
async fn resolve(
    state: &OwnersState,
    owner: &str,
) -> Result<(OwnerId, InstallationId, Owner), Refusal> {
    let tenants = state.engine.tenants();
    if let Some(t) = owner
        .parse::<u64>()
        .ok()
        .and_then(|id| tenants.get(OwnerId::new(id)))
    {
        return Ok((t.owner_id, t.installation_id, t.login));
    }
    let login =
        Owner::parse(owner).map_err(|e| refusal(StatusCode::BAD_REQUEST, format!("owner: {e}")))?;
    let bound = tenants
        .owner_id_of(&login)
        .and_then(|id| tenants.get(id))
        .or_else(|| tenants.by_login(&login));
    match state.github.installation_of(&login).await {
        Ok(Some(found)) => match bound {
            Some(holder) if holder.owner_id != found.owner_id => Err(refusal(
                StatusCode::CONFLICT,
                format!(
                    "{login} is GitHub account {} now, but account {} was connected under that login here; name the owner by its numeric id",
                    found.owner_id, holder.owner_id
                ),
            )),
            Some(holder) => Ok((holder.owner_id, holder.installation_id, holder.login)),
            None => Ok((found.owner_id, found.installation_id, found.login)),
        },
        Ok(None) => Err(refusal(
            StatusCode::NOT_FOUND,
            format!("the Sprinters GitHub App is not installed on {login}; install it first"),
        )),
        Err(e) => Err(refusal(
            StatusCode::BAD_GATEWAY,
            format!("asking GitHub about {login}: {e}"),
        )),
    }
}

/// What a request is about, once the token, the owner and the account
/// (when the route names one) are checked.
pub(super) struct Subject {
    pub(super) owner_id: OwnerId,
    pub(super) installation_id: InstallationId,
    pub(super) login: Owner,
    pub(super) account: Option<AccountId>,
}

pub(super) async fn subject(
    state: &OwnersState,
    headers: &HeaderMap,
    owner: &str,
    account: Option<&str>,
) -> Result<Subject, Refusal> {
    admin(state, headers)?;
    let account = account.map(account_of).transpose()?;
    let (owner_id, installation_id, login) = resolve(state, owner).await?;
    Ok(Subject {
        owner_id,
        installation_id,
        login,
        account,
    })
}

/// The owner and the account a route names.
async fn connection_of(
    state: &OwnersState,
    headers: &HeaderMap,
    owner: &str,
    account: &str,
) -> Result<(OwnerId, Owner, AccountId), Refusal> {
    let s = subject(state, headers, owner, Some(account)).await?;
    let account = s
        .account
        .ok_or_else(|| refusal(StatusCode::BAD_REQUEST, "account: missing"))?;
    Ok((s.owner_id, s.login, account))
}

fn account_of(raw: &str) -> Result<AccountId, Refusal> {
    AccountId::parse(raw)
        .map_err(|e| refusal(StatusCode::BAD_REQUEST, format!("aws_account_id: {e}")))
}

pub(super) fn error_status(e: &Error) -> StatusCode {
    match e.kind() {
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Config | ErrorKind::InvalidLabel => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn connection_json(owner_id: OwnerId, login: &Owner, c: &Connection) -> Value {
    json!({
        "owner": login.as_str(),
        "owner_id": owner_id.get(),
        "aws_account_id": c.account.as_str(),
        "state": c.state.as_str(),
        "role_arn": c.role_arn,
        "created_at": c.created_at.as_millis(),
        "verified_at": c.verified_at.map(|t| t.as_millis()),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConnectBody {
    aws_account_id: String,
}

/// `POST /api/owners/{owner}/accounts` `{"aws_account_id": "..."}`: a new
/// pending connection with an external id made here, shown this once.
pub(crate) async fn connect(
    State(state): State<OwnersState>,
    Path(owner): Path<String>,
    headers: HeaderMap,
    body: Option<Json<ConnectBody>>,
) -> Response {
    if let Err(r) = admin(&state, &headers) {
        return r.into_response();
    }
    let Some(Json(body)) = body else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "expected a JSON body {\"aws_account_id\": \"<12 digits>\"}",
        );
    };
    let Subject {
        owner_id,
        installation_id,
        login,
        account,
    } = match subject(&state, &headers, &owner, Some(&body.aws_account_id)).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let Some(account) = account else {
        return refuse(StatusCode::BAD_REQUEST, "aws_account_id: missing");
    };
    let connection = match state
        .engine
        .open_connection(owner_id, installation_id, login.clone(), account.clone())
        .await
    {
        Ok(c) => c,
        Err(e) => return refuse(error_status(&e), e.message().to_owned()),
    };
    tracing::info!(owner_id = %owner_id, %account, "connection opened");
    let external_id = connection.external_id.secret().expose_secret().to_owned();
    let platform = state
        .platform_account_id
        .as_ref()
        .map(|a| a.as_str().to_owned());
    let mut parameters = json!({ "ExternalId": external_id });
    if let Some(p) = &platform {
        parameters["PlatformAccountId"] = json!(p);
    }
    let quick_create_url = match (&state.template_url, &platform) {
        (Some(template), Some(platform)) => Some(format!(
            "https://console.aws.amazon.com/cloudformation/home?region={region}#/stacks/create/review?templateURL={template}&stackName=sprinters&param_PlatformAccountId={platform}&param_ExternalId={external_id}",
            region = state.default_spec.region,
            template = form_urlencode(template),
        )),
        _ => None,
    };
    let mut answer = connection_json(owner_id, &login, &connection);
    answer["external_id"] = json!(external_id);
    answer["cloudformation"] = json!({
        "parameters": parameters,
        "template": "sprinters policy cloudformation",
        "template_url": state.template_url,
        "quick_create_url": quick_create_url,
        "next": format!(
            "create the stack in account {account}, then PUT /api/owners/{}/accounts/{account} with {{\"role_arn\": \"<the stack's RoleArn output>\"}}",
            owner_id
        ),
    });
    (StatusCode::CREATED, Json(answer)).into_response()
}

fn form_urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyBody {
    role_arn: String,
}

/// `PUT /api/owners/{owner}/accounts/{account}` `{"role_arn": "..."}`:
/// assumes the role with the connection's external id, asks EC2 for a dry
/// run of the default launch, and marks the connection connected; 422
/// with what is missing otherwise.
pub(crate) async fn verify(
    State(state): State<OwnersState>,
    Path((owner, account)): Path<(String, String)>,
    headers: HeaderMap,
    body: Option<Json<VerifyBody>>,
) -> Response {
    let (owner_id, login, account) = match connection_of(&state, &headers, &owner, &account).await {
        Ok(found) => found,
        Err(r) => return r.into_response(),
    };
    let Some(Json(body)) = body else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "expected a JSON body {\"role_arn\": \"arn:aws:iam::<account>:role/<name>\"}",
        );
    };
    let Some(connection) = state
        .engine
        .tenants()
        .get(owner_id)
        .and_then(|t| t.connection(&account).cloned())
    else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!("{login} has no connection to {account}; POST one first"),
        );
    };
    let role = match CustomerRole::new(
        &account,
        &body.role_arn,
        connection.external_id.secret().clone(),
    ) {
        Ok(role) => role,
        Err(e) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, e.message().to_owned()),
    };
    let check = ConnectionCheck::new(
        owner_id,
        login.clone(),
        account.clone(),
        role,
        state.default_spec.clone(),
        state.controller_id.clone(),
    );
    if let Err(e) =
        verify_connection(&state.aws, state.platform.clone(), &state.launcher, check).await
    {
        let status = match e.kind() {
            ErrorKind::PermissionDenied | ErrorKind::Config | ErrorKind::NotFound => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        tracing::warn!(owner_id = %owner_id, %account, error = %e, "connection not verified");
        return (
            status,
            Json(json!({
                "aws_account_id": account.as_str(),
                "state": connection.state.as_str(),
                "error": e.message(),
            })),
        )
            .into_response();
    }
    match state
        .engine
        .confirm_connection(owner_id, &account, &body.role_arn, &connection.external_id)
        .await
    {
        Ok(c) => {
            tracing::info!(owner_id = %owner_id, %account, "connection verified");
            Json(connection_json(owner_id, &login, &c)).into_response()
        }
        Err(e) => refuse(error_status(&e), e.message().to_owned()),
    }
}

/// `GET /api/owners/{owner}/accounts`: its connections and their state
/// (configured accounts too, as `"source": "config"`); never an external id.
pub(crate) async fn list(
    State(state): State<OwnersState>,
    Path(owner): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (owner_id, login) = match subject(&state, &headers, &owner, None).await {
        Ok(s) => (s.owner_id, s.login),
        Err(r) => return r.into_response(),
    };
    let tenant: Option<Tenant> = state.engine.tenants().get(owner_id);
    let mut accounts: Vec<Value> = Vec::new();
    if let Some(t) = &tenant {
        for a in &t.configured {
            accounts.push(json!({
                "owner": login.as_str(), "owner_id": owner_id.get(),
                "aws_account_id": a.as_str(), "state": "connected", "source": "config",
            }));
        }
        for c in &t.connections {
            let mut v = connection_json(owner_id, &login, c);
            v["source"] = json!("api");
            accounts.push(v);
        }
    }
    Json(json!({
        "owner": login.as_str(),
        "owner_id": owner_id.get(),
        "suspended": tenant.as_ref().is_some_and(|t| t.suspended),
        "accounts": accounts,
    }))
    .into_response()
}

/// Whether the records and data keys of `account` may be shredded now that
/// `owner_id`'s connection `closed` is gone: only when it was verified (the
/// owner showed it controls the account) and nobody else uses it.
async fn may_shred(
    state: &OwnersState,
    owner_id: OwnerId,
    account: &AccountId,
    closed: &Connection,
) -> sprinters_core::Result<bool> {
    if closed.verified_at.is_none() {
        return Ok(false);
    }
    let used = used_elsewhere(
        state.engine.tenants(),
        &state.store,
        &state.configured_accounts,
        owner_id,
        account,
    )
    .await?;
    Ok(!used)
}

/// Whether anyone but `owner_id` uses `account`: a configured entry of
/// another login (bound or not), another owner's connection of any state,
/// or another owner's job in the history. Data keys are per account, so
/// shredding one owner's records of it would shred theirs too.
pub(crate) async fn used_elsewhere(
    tenants: &sprinters_core::engine::Tenants,
    store: &PlaneStore,
    configured: &[(Owner, AccountId)],
    owner_id: OwnerId,
    account: &AccountId,
) -> sprinters_core::Result<bool> {
    let configured_elsewhere = configured
        .iter()
        .any(|(login, a)| a == account && tenants.owner_id_of(login) != Some(owner_id));
    let connected_elsewhere = tenants.all().iter().any(|t| {
        t.owner_id != owner_id
            && (t.configured.contains(account) || t.connection(account).is_some())
    });
    if configured_elsewhere || connected_elsewhere {
        return Ok(true);
    }
    let mut query = ListJobs::newest(1000);
    query.account = Some(account.clone());
    loop {
        let page = store.jobs().list_jobs(query.clone()).await?;
        if page.jobs.iter().any(|j| j.value.owner_id != owner_id) {
            return Ok(true);
        }
        match page.next {
            Some(next) => query.cursor = Some(next),
            None => return Ok(false),
        }
    }
}

/// Shreds what the store keeps of a removed owner's accounts (an uninstalled
/// App), as `DELETE` does for one connection: each account nobody else uses.
#[derive(Debug)]
pub(crate) struct Shredder {
    pub(crate) tenants: sprinters_core::engine::Tenants,
    pub(crate) store: PlaneStore,
    pub(crate) configured: Vec<(Owner, AccountId)>,
}

impl sprinters_core::observe::EngineObserver for Shredder {
    fn owner_removed(&self, event: &sprinters_core::observe::OwnerRemoved) {
        let (tenants, store, configured) = (
            self.tenants.clone(),
            self.store.clone(),
            self.configured.clone(),
        );
        let (owner_id, accounts) = (event.owner_id, event.accounts.clone());
        // Off the webhook's request: shredding walks the account's history.
        tokio::spawn(async move {
            for account in accounts {
                match used_elsewhere(&tenants, &store, &configured, owner_id, &account).await {
                    Ok(false) => match store.delete_account(&account).await {
                        Ok(()) => {
                            tracing::warn!(owner_id = %owner_id, %account, "a removed owner's account shredded")
                        }
                        Err(e) => {
                            tracing::warn!(%account, error = %e, "shredding a removed owner's account failed")
                        }
                    },
                    Ok(true) => {}
                    Err(e) => {
                        tracing::warn!(%account, error = %e, "could not tell whether others use the account; not shredded")
                    }
                }
            }
        });
    }
}

/// `DELETE /api/owners/{owner}/accounts/{account}`: nothing launches there
/// any more, the owner's instances there are ended, and when no other
/// owner connects the account its records and data keys are shredded.
pub(crate) async fn disconnect(
    State(state): State<OwnersState>,
    Path((owner, account)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (owner_id, login, account) = match connection_of(&state, &headers, &owner, &account).await {
        Ok(found) => found,
        Err(r) => return r.into_response(),
    };
    let closed = match state.engine.close_connection(owner_id, &account).await {
        Ok(Some(closed)) => closed,
        Ok(None) => {
            return refuse(
                StatusCode::NOT_FOUND,
                format!("{login} has no connection to {account} made through this API"),
            );
        }
        Err(e) => return refuse(error_status(&e), e.message().to_owned()),
    };
    let shredded = match may_shred(&state, owner_id, &account, &closed).await {
        Ok(true) => match state.store.delete_account(&account).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(%account, error = %e, "shredding a disconnected account's records failed");
                false
            }
        },
        Ok(false) => false,
        Err(e) => {
            tracing::warn!(%account, error = %e, "could not tell whether others use the account; not shredded");
            false
        }
    };
    tracing::warn!(owner_id = %owner_id, %account, shredded, "account disconnected");
    Json(json!({
        "owner": login.as_str(),
        "owner_id": owner_id.get(),
        "aws_account_id": account.as_str(),
        "state": "disconnected",
        "records_shredded": shredded,
    }))
    .into_response()
}
