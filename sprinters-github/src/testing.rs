//! [`GithubStandIn`]: a local HTTP server that answers like the parts of
//! GitHub's REST API Sprinters uses (feature `testing`). No emulator of
//! GitHub exists; this is what the tests, the demo and a platform's own
//! tests run against.
//!
//! It checks what GitHub checks: the App's JWT (RS256 with the App's key,
//! not expired) on `/app/...` calls, and an installation token it issued
//! on everything else. Failures can be injected per path.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The private half of a throwaway GitHub App key, for tests and the demo
/// against the stand-in. It signs nothing real: never use it for an App.
pub const TEST_APP_PRIVATE_KEY_PEM: &str =
    include_str!("../tests/fixtures/test-app-private-key.pem");
/// Its public half, which the stand-in checks JWTs with.
pub const TEST_APP_PUBLIC_KEY_PEM: &str = include_str!("../tests/fixtures/test-app-public-key.pem");

/// A job the stand-in knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandInJob {
    /// `owner/name`.
    pub repository: String,
    /// The run.
    pub run_id: u64,
    /// The run attempt.
    pub run_attempt: u32,
    /// `queued`, `in_progress` or `completed`.
    pub status: String,
    /// The conclusion once completed.
    pub conclusion: Option<String>,
    /// The runner that took it.
    pub runner_name: Option<String>,
    /// Its labels.
    pub labels: Vec<String>,
}

/// One entry of the App's webhook delivery log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedDelivery {
    /// The attempt's id.
    pub id: u64,
    /// The delivery's GUID (the same for every attempt).
    pub guid: String,
    /// When, as seconds since the epoch.
    pub delivered_at: u64,
    /// The status code the receiver answered.
    pub status_code: u16,
}

#[derive(Debug, Clone)]
struct Failure {
    path_contains: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
    remaining: usize,
}

#[derive(Debug, Default)]
struct State {
    tokens: HashMap<String, (u64, u64)>,
    token_requests: BTreeMap<u64, usize>,
    next_id: u64,
    runners: BTreeMap<u64, (String, String, Vec<String>)>,
    // (repository, runner name) of every runner, so that a registration
    // checks for a duplicate name in constant time.
    runner_names: HashSet<(String, String)>,
    // Lower-cased login → (kind: "orgs" or "users", account id,
    // installation id, login as spelled).
    installations: BTreeMap<String, (&'static str, u64, u64, String)>,
    jobs: BTreeMap<u64, StandInJob>,
    // Runs of public repositories → their head repository (`None`: a
    // deleted fork). Every other run is of a private repository, from
    // itself.
    public_runs: HashMap<u64, Option<String>>,
    /// The events that started runs; `push` where not set.
    run_events: HashMap<u64, String>,
    deliveries: Vec<LoggedDelivery>,
    redelivered: Vec<u64>,
    requests: Vec<String>,
    failures: Vec<Failure>,
    delay: Duration,
    /// Installation → (requests an hour, used, when the window resets).
    rate_limits: HashMap<u64, (u64, u64, u64)>,
    /// Installation → (content-creating requests a minute, used, when the
    /// minute ends).
    secondary_limits: HashMap<u64, (u64, u64, u64)>,
}

#[derive(Clone)]
struct Responder {
    app_id: u64,
    key: DecodingKey,
    state: Arc<Mutex<State>>,
}

/// A GitHub REST API stand-in on a loopback port.
pub struct GithubStandIn {
    server: MockServer,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for GithubStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubStandIn")
            .field("uri", &self.server.uri())
            .finish()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

impl GithubStandIn {
    /// Starts a stand-in for App `app_id`, whose JWTs it checks with
    /// `public_key_pem` (the public half of the App's RSA key).
    pub async fn start(app_id: u64, public_key_pem: &[u8]) -> Result<Self, String> {
        let key = DecodingKey::from_rsa_pem(public_key_pem)
            .map_err(|e| format!("not an RSA public key in PEM: {e}"))?;
        let state = Arc::new(Mutex::new(State {
            next_id: 1000,
            ..State::default()
        }));
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(Responder {
                app_id,
                key,
                state: state.clone(),
            })
            .mount(&server)
            .await;
        Ok(Self { server, state })
    }

    /// The API's base URL.
    pub fn uri(&self) -> String {
        self.server.uri()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Installs the App on the organization `login` (account id
    /// `owner_id`) as installation `installation_id`; a later call for the
    /// same login replaces it (a rename and a new holder of the login).
    pub fn install(&self, login: &str, owner_id: u64, installation_id: u64) {
        self.state().installations.insert(
            login.to_ascii_lowercase(),
            ("orgs", owner_id, installation_id, login.to_owned()),
        );
    }

    /// Installs the App on the user `login`.
    pub fn install_on_user(&self, login: &str, owner_id: u64, installation_id: u64) {
        self.state().installations.insert(
            login.to_ascii_lowercase(),
            ("users", owner_id, installation_id, login.to_owned()),
        );
    }

    /// Uninstalls the App from `login`.
    pub fn uninstall(&self, login: &str) {
        self.state()
            .installations
            .remove(&login.to_ascii_lowercase());
    }

    /// Holds `installation_id`'s tokens to `per_hour` REST requests an
    /// hour, with GitHub's `x-ratelimit-*` headers on every answer.
    pub fn set_rate_limit(&self, installation_id: u64, per_hour: u64) {
        self.state()
            .rate_limits
            .insert(installation_id, (per_hour, 0, now() + 3600));
    }

    /// Holds `installation_id` to `per_minute` content-creating requests
    /// (`POST`, `PATCH`, `PUT`, `DELETE`) a minute, GitHub's secondary
    /// limit (80 by default at GitHub); past it, 403 with `retry-after`.
    pub fn set_secondary_limit(&self, installation_id: u64, per_minute: u64) {
        self.state()
            .secondary_limits
            .insert(installation_id, (per_minute, 0, now() + 60));
    }

    /// Adds or replaces a job.
    pub fn set_job(&self, job_id: u64, job: StandInJob) {
        self.state().jobs.insert(job_id, job);
    }

    /// Makes `run_id` a run of a public repository whose head commit is
    /// in `head_repository` (a fork's, or the repository itself; `None`:
    /// a fork deleted since).
    pub fn set_public_run(&self, run_id: u64, head_repository: Option<&str>) {
        self.state()
            .public_runs
            .insert(run_id, head_repository.map(str::to_owned));
    }

    /// Makes `run_id` a run started by `event` (`pull_request_target`).
    pub fn set_run_event(&self, run_id: u64, event: &str) {
        self.state().run_events.insert(run_id, event.to_owned());
    }

    /// The job `job_id` as the stand-in holds it.
    pub fn job(&self, job_id: u64) -> Option<StandInJob> {
        self.state().jobs.get(&job_id).cloned()
    }

    /// The registered runners: id → (repository, name, labels).
    pub fn runners(&self) -> BTreeMap<u64, (String, String, Vec<String>)> {
        self.state().runners.clone()
    }

    /// The id of the runner named `name` registered on `repository`, as
    /// GitHub reports it in `workflow_job` events (`runner_id`).
    pub fn runner_id(&self, repository: &str, name: &str) -> Option<u64> {
        self.state()
            .runners
            .iter()
            .find(|(_, (repo, n, _))| repo == repository && n == name)
            .map(|(id, _)| *id)
    }

    /// How many installation tokens were issued per installation.
    pub fn token_requests(&self) -> BTreeMap<u64, usize> {
        self.state().token_requests.clone()
    }

    /// Every request, as `METHOD /path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.state().requests.clone()
    }

    /// Appends an attempt to the App's webhook delivery log.
    pub fn log_delivery(&self, guid: &str, delivered_at: u64, status_code: u16) -> u64 {
        let mut state = self.state();
        state.next_id += 1;
        let id = state.next_id;
        state.deliveries.push(LoggedDelivery {
            id,
            guid: guid.to_owned(),
            delivered_at,
            status_code,
        });
        id
    }

    /// Every answer is sent `delay` after the request arrived (a slow API).
    pub fn set_delay(&self, delay: Duration) {
        self.state().delay = delay;
    }

    /// The delivery attempts redelivered, by id. Each redelivery is logged
    /// as a new, successful attempt of the same GUID.
    pub fn redelivered(&self) -> Vec<u64> {
        self.state().redelivered.clone()
    }

    /// The next `times` requests whose path contains `path_contains` are
    /// answered with `status`, these headers and a GitHub-style message.
    pub fn fail(
        &self,
        path_contains: &str,
        status: u16,
        headers: &[(&str, &str)],
        message: &str,
        times: usize,
    ) {
        self.state().failures.push(Failure {
            path_contains: path_contains.to_owned(),
            status,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: json!({ "message": message, "documentation_url": "https://docs.github.com/rest" }),
            remaining: times,
        });
    }
}

/// Re-runs job `id` (found in the repository asked: `found`): its next
/// attempt queues.
fn rerun(state: &mut State, id: Option<u64>, found: bool) -> ResponseTemplate {
    match id.and_then(|id| state.jobs.get_mut(&id)).filter(|_| found) {
        Some(job) => {
            job.run_attempt += 1;
            job.status = "queued".to_owned();
            job.conclusion = None;
            job.runner_name = None;
            ResponseTemplate::new(201).set_body_json(json!({}))
        }
        None => error(404, "Not Found"),
    }
}

fn error(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({ "message": message }))
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let delay = state.delay;
        let answer = self.answer(&mut state, request);
        if delay.is_zero() {
            answer
        } else {
            answer.set_delay(delay)
        }
    }
}

impl Responder {
    fn answer(&self, state: &mut State, request: &Request) -> ResponseTemplate {
        let path = request.url.path().to_owned();
        let query = request.url.query().unwrap_or("").to_owned();
        let method = request.method.as_str().to_owned();
        state.requests.push(format!(
            "{method} {path}{}",
            if query.is_empty() {
                String::new()
            } else {
                format!("?{query}")
            }
        ));
        if let Some(f) = state
            .failures
            .iter_mut()
            .find(|f| f.remaining > 0 && path.contains(&f.path_contains))
        {
            f.remaining -= 1;
            let mut t = ResponseTemplate::new(f.status).set_body_json(f.body.clone());
            for (k, v) in &f.headers {
                t = t.insert_header(k.as_str(), v.as_str());
            }
            return t;
        }
        let bearer = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("")
            .to_owned();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        if let [kind @ ("orgs" | "users"), login, "installation"] = segments.as_slice() {
            // GitHub answers these to the App's JWT only.
            if !self.valid_jwt(&bearer) {
                return error(401, "A JSON web token could not be decoded");
            }
            return match state.installations.get(&login.to_ascii_lowercase()) {
                // An organization's installation is not found under
                // /users, nor a user's under /orgs.
                Some((k, owner_id, installation_id, login)) if k == kind => {
                    ResponseTemplate::new(200).set_body_json(json!({
                        "id": installation_id,
                        "account": { "login": login, "id": owner_id,
                                     "type": if *k == "orgs" { "Organization" } else { "User" } },
                        "app_id": self.app_id,
                        "target_type": if *k == "orgs" { "Organization" } else { "User" },
                    }))
                }
                _ => error(404, "Not Found"),
            };
        }
        if segments.first() == Some(&"app") {
            if !self.valid_jwt(&bearer) {
                return error(401, "A JSON web token could not be decoded");
            }
            return self.app_route(state, &method, &segments, &query);
        }
        let installation = match state.tokens.get(&bearer) {
            Some((installation, expires)) if *expires > now() => *installation,
            _ => return error(401, "Bad credentials"),
        };
        // The primary rate limit of an installation token: every answer
        // says where the hour's count stands, and past the limit GitHub
        // answers 403 with `x-ratelimit-remaining: 0` until the reset
        // ("Rate limits for the REST API", GitHub docs).
        let limit = state
            .rate_limits
            .get_mut(&installation)
            .map(|(limit, used, reset)| {
                if *reset <= now() {
                    *used = 0;
                    *reset = now() + 3600;
                }
                *used += 1;
                (*limit, *used, *reset)
            });
        // Secondary limits: "no more than 80 content-generating requests
        // per minute"; past it GitHub answers 403 (or 429) with a message
        // saying so and, here, `retry-after`, which the client must wait
        // out ("Rate limits for the REST API", GitHub docs).
        let creating = matches!(method.as_str(), "POST" | "PATCH" | "PUT" | "DELETE");
        let secondary = state
            .secondary_limits
            .get_mut(&installation)
            .filter(|_| creating)
            .and_then(|(limit, used, end)| {
                if *end <= now() {
                    *used = 0;
                    *end = now() + 60;
                }
                *used += 1;
                (*used > *limit).then(|| end.saturating_sub(now()).max(1))
            });
        let answer = match limit {
            Some((limit, used, _)) if used > limit => error(
                403,
                &format!("API rate limit exceeded for installation ID {installation}."),
            ),
            _ if secondary.is_some() => error(
                403,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            )
            .insert_header(
                "retry-after",
                secondary.unwrap_or(60).to_string().as_str(),
            ),
            _ => {
                let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
                repo_route(state, &method, &segments, &query, &body)
            }
        };
        match limit {
            Some((limit, used, reset)) => answer
                .insert_header("x-ratelimit-limit", limit.to_string().as_str())
                .insert_header(
                    "x-ratelimit-remaining",
                    limit.saturating_sub(used).to_string().as_str(),
                )
                .insert_header("x-ratelimit-used", used.min(limit).to_string().as_str())
                .insert_header("x-ratelimit-reset", reset.to_string().as_str())
                .insert_header("x-ratelimit-resource", "core"),
            None => answer,
        }
    }
}

impl Responder {
    fn valid_jwt(&self, token: &str) -> bool {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_required_spec_claims(&["exp"]);
        jsonwebtoken::decode::<Value>(token, &self.key, &validation)
            .map(|data| {
                let iss = &data.claims["iss"];
                let iat = data.claims["iat"].as_u64().unwrap_or(u64::MAX);
                (iss.as_u64() == Some(self.app_id)
                    || iss.as_str() == Some(&self.app_id.to_string()))
                    && iat <= now() + 60
            })
            .unwrap_or(false)
    }

    fn app_route(
        &self,
        state: &mut State,
        method: &str,
        s: &[&str],
        query: &str,
    ) -> ResponseTemplate {
        match (method, s) {
            ("POST", ["app", "installations", id, "access_tokens"]) => {
                let Ok(installation) = id.parse::<u64>() else {
                    return error(404, "Not Found");
                };
                *state.token_requests.entry(installation).or_default() += 1;
                let n = state.token_requests[&installation];
                let token = format!("ghs_{installation}_{n}");
                let expires = now() + 3600;
                state.tokens.insert(token.clone(), (installation, expires));
                ResponseTemplate::new(201).set_body_json(json!({
                    "token": token,
                    "expires_at": rfc3339(expires),
                    "permissions": { "actions": "write", "administration": "write", "metadata": "read" }
                }))
            }
            ("GET", ["app", "hook", "deliveries"]) => {
                let per_page: usize = param(query, "per_page")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(30);
                let cursor: usize = param(query, "cursor")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                let mut log = state.deliveries.clone();
                log.sort_by(|a, b| b.delivered_at.cmp(&a.delivered_at).then(b.id.cmp(&a.id)));
                let page: Vec<Value> = log
                    .iter()
                    .skip(cursor)
                    .take(per_page)
                    .map(|d| json!({
                        "id": d.id, "guid": d.guid, "delivered_at": rfc3339(d.delivered_at),
                        "redelivery": false, "duration": 0.2,
                        "status": if (200..300).contains(&d.status_code) { "OK" } else { "failed" },
                        "status_code": d.status_code, "event": "workflow_job", "action": "queued",
                        "installation_id": 4242, "repository_id": 1
                    }))
                    .collect();
                let mut t = ResponseTemplate::new(200).set_body_json(Value::Array(page));
                if cursor + per_page < log.len() {
                    t = t.insert_header(
                        "link",
                        format!(
                            "<http://localhost/app/hook/deliveries?per_page={per_page}&cursor={}>; rel=\"next\"",
                            cursor + per_page
                        )
                        .as_str(),
                    );
                }
                t
            }
            ("POST", ["app", "hook", "deliveries", id, "attempts"]) => {
                let original = id
                    .parse::<u64>()
                    .ok()
                    .and_then(|id| state.deliveries.iter().find(|d| d.id == id).cloned());
                match original {
                    Some(original) => {
                        // The receiver is taken to accept the redelivery,
                        // logged as a new successful attempt.
                        state.redelivered.push(original.id);
                        state.next_id += 1;
                        let id = state.next_id;
                        state.deliveries.push(LoggedDelivery {
                            id,
                            guid: original.guid,
                            delivered_at: now(),
                            status_code: 202,
                        });
                        ResponseTemplate::new(202).set_body_json(json!({}))
                    }
                    None => error(404, "Not Found"),
                }
            }
            _ => error(404, "Not Found"),
        }
    }
}

fn param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

fn job_json(state: &State, id: u64, job: &StandInJob) -> Value {
    // GitHub reports the id of the runner that took the job.
    let runner_id = job.runner_name.as_ref().and_then(|name| {
        state
            .runners
            .iter()
            .find(|(_, (repo, n, _))| *repo == job.repository && n == name)
            .map(|(id, _)| *id)
    });
    json!({
        "id": id, "run_id": job.run_id, "run_attempt": job.run_attempt,
        "status": job.status, "conclusion": job.conclusion,
        "runner_name": job.runner_name, "runner_id": runner_id,
        "labels": job.labels, "name": "build"
    })
}

/// A workflow run as GitHub shows it: its repository, with `private`, its
/// head repository (`null` for a deleted fork) and the event that started
/// it.
fn run_json(state: &State, repo: &str, run: u64) -> Value {
    let (private, head) = match state.public_runs.get(&run) {
        Some(head) => (false, head.clone()),
        None => (true, Some(repo.to_owned())),
    };
    json!({
        "id": run,
        "repository": { "full_name": repo, "private": private },
        "head_repository": head.map(|h| json!({ "full_name": h, "private": private })),
        "event": state.run_events.get(&run).map_or("push", String::as_str),
    })
}

fn repo_route(
    state: &mut State,
    method: &str,
    s: &[&str],
    query: &str,
    body: &Value,
) -> ResponseTemplate {
    let ["repos", owner, name, "actions", rest @ ..] = s else {
        return error(404, "Not Found");
    };
    let repo = format!("{owner}/{name}");
    match (method, rest) {
        ("POST", ["runners", "generate-jitconfig"]) => {
            let Some(runner) = body["name"].as_str() else {
                return error(422, "Invalid request: name is required");
            };
            if !state.runner_names.insert((repo.clone(), runner.to_owned())) {
                return error(
                    409,
                    &format!("Already exists - A runner with the name {runner} already exists."),
                );
            }
            let labels: Vec<String> =
                serde_json::from_value(body["labels"].clone()).unwrap_or_default();
            state.next_id += 1;
            let id = state.next_id;
            state
                .runners
                .insert(id, (repo.clone(), runner.to_owned(), labels));
            let config = base64::engine::general_purpose::STANDARD
                .encode(json!({ "runner": id, "name": runner, "repo": repo }).to_string());
            ResponseTemplate::new(201).set_body_json(json!({
                "runner": { "id": id, "name": runner, "os": "unknown", "status": "offline", "busy": false },
                "encoded_jit_config": config
            }))
        }
        ("GET", ["runners"]) => {
            let wanted = param(query, "name");
            let runners: Vec<Value> = state
                .runners
                .iter()
                .filter(|(_, (r, n, _))| *r == repo && wanted.is_none_or(|w| w == n))
                .map(|(id, (_, n, _))| json!({ "id": id, "name": n }))
                .collect();
            ResponseTemplate::new(200)
                .set_body_json(json!({ "total_count": runners.len(), "runners": runners }))
        }
        ("DELETE", ["runners", id]) => {
            // A runner of another repository is not found through this
            // one; a runner running a job cannot be deleted: 422 ("Delete a
            // self-hosted runner from a repository", GitHub REST docs).
            let id = id.parse::<u64>().ok();
            let Some((id, name)) = id.and_then(|id| {
                let (r, n, _) = state.runners.get(&id)?;
                (*r == repo).then(|| (id, n.clone()))
            }) else {
                return error(404, "Not Found");
            };
            let busy = state.jobs.values().any(|j| {
                j.repository == repo
                    && j.status == "in_progress"
                    && j.runner_name.as_deref() == Some(name.as_str())
            });
            if busy {
                return error(
                    422,
                    &format!("Bad request - Runner \"{name}\" is still running a job"),
                );
            }
            state.runners.remove(&id);
            state.runner_names.remove(&(repo, name));
            ResponseTemplate::new(204)
        }
        ("GET", ["jobs", id]) => match id
            .parse::<u64>()
            .ok()
            .and_then(|id| Some((id, state.jobs.get(&id)?)))
        {
            Some((id, job)) if job.repository == repo => {
                ResponseTemplate::new(200).set_body_json(job_json(state, id, job))
            }
            _ => error(404, "Not Found"),
        },
        ("POST", ["jobs", id, "rerun"]) => {
            let id = id.parse::<u64>().ok();
            let run = id
                .and_then(|id| state.jobs.get(&id))
                .filter(|job| job.repository == repo)
                .map(|job| job.run_id);
            // GitHub refuses to re-run a job while its workflow run is not
            // completed (403 Forbidden: cli/cli#9221).
            if run.is_some_and(|run| {
                state
                    .jobs
                    .values()
                    .any(|j| j.run_id == run && j.repository == repo && j.status != "completed")
            }) {
                return error(403, "This workflow run is not completed");
            }
            rerun(state, id, run.is_some())
        }
        ("POST", ["runs", id, "cancel"]) => {
            let run: u64 = id.parse().unwrap_or(0);
            let jobs: Vec<&mut StandInJob> = state
                .jobs
                .values_mut()
                .filter(|j| j.run_id == run && j.repository == repo)
                .collect();
            if jobs.is_empty() {
                return error(404, "Not Found");
            }
            if jobs.iter().all(|j| j.status == "completed") {
                return error(409, "Cannot cancel a workflow run that is completed.");
            }
            for job in jobs {
                job.status = "completed".to_owned();
                job.conclusion = Some("cancelled".to_owned());
            }
            ResponseTemplate::new(202).set_body_json(json!({}))
        }
        ("GET", ["runs"]) => {
            let status = param(query, "status").unwrap_or("queued");
            let mut runs: Vec<u64> = state
                .jobs
                .values()
                .filter(|j| j.repository == repo)
                .filter(|j| match status {
                    // A run is queued until one of its jobs starts.
                    "queued" => j.status == "queued",
                    other => j.status == other,
                })
                .map(|j| j.run_id)
                .collect();
            runs.sort_unstable();
            runs.dedup();
            let runs: Vec<Value> = runs
                .into_iter()
                .map(|id| {
                    let mut run = run_json(state, &repo, id);
                    run["status"] = json!(status);
                    run
                })
                .collect();
            ResponseTemplate::new(200)
                .set_body_json(json!({ "total_count": runs.len(), "workflow_runs": runs }))
        }
        ("GET", ["runs", id]) => {
            let run: u64 = id.parse().unwrap_or(0);
            if !state
                .jobs
                .values()
                .any(|j| j.run_id == run && j.repository == repo)
            {
                return error(404, "Not Found");
            }
            ResponseTemplate::new(200).set_body_json(run_json(state, &repo, run))
        }
        ("GET", ["runs", id, "jobs"]) => {
            let run: u64 = id.parse().unwrap_or(0);
            let jobs: Vec<Value> = state
                .jobs
                .iter()
                .filter(|(_, j)| j.run_id == run && j.repository == repo)
                .map(|(id, j)| job_json(state, *id, j))
                .collect();
            ResponseTemplate::new(200)
                .set_body_json(json!({ "total_count": jobs.len(), "jobs": jobs }))
        }
        _ => error(404, "Not Found"),
    }
}

/// A `workflow_job` webhook body shaped like GitHub's, for the demo, the
/// benchmarks and tests that send webhooks over HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowJobWebhook {
    /// The job's id.
    pub job_id: u64,
    /// Its run.
    pub run_id: u64,
    /// The run attempt.
    pub run_attempt: u32,
    /// `owner/name`.
    pub repository: String,
    /// The App installation.
    pub installation_id: u64,
    /// The repository owner's GitHub account id.
    pub owner_id: u64,
    /// The job's `runs-on` labels.
    pub labels: Vec<String>,
    /// Its name.
    pub name: String,
}

impl WorkflowJobWebhook {
    /// `action` (`queued`, `in_progress`, `completed`), on `runner` (id,
    /// name) once picked up, with `conclusion` once completed.
    pub fn body(
        &self,
        action: &str,
        runner: Option<(u64, &str)>,
        conclusion: Option<&str>,
    ) -> Vec<u8> {
        let status = match action {
            "in_progress" => "in_progress",
            "completed" => "completed",
            _ => "queued",
        };
        let owner = self.repository.split('/').next().unwrap_or_default();
        let now = rfc3339(now());
        json!({
            "action": action,
            "workflow_job": {
                "id": self.job_id,
                "run_id": self.run_id,
                "run_attempt": self.run_attempt,
                "status": status,
                "conclusion": conclusion,
                "name": self.name,
                "labels": self.labels,
                "started_at": now,
                "completed_at": if status == "completed" { Some(now.clone()) } else { None },
                "runner_id": runner.map(|(id, _)| id),
                "runner_name": runner.map(|(_, name)| name),
                "steps": [],
            },
            "repository": {
                "full_name": self.repository,
                "name": self.repository.split('/').nth(1).unwrap_or_default(),
                "owner": { "login": owner, "id": self.owner_id },
                "private": true,
            },
            "installation": { "id": self.installation_id },
            "sender": { "login": "octocat" },
        })
        .to_string()
        .into_bytes()
    }
}
