//! [`GithubApp`]: authentication as a GitHub App with `octocrab`, and the
//! one place where GitHub's answers become core errors.
//!
//! The App signs a short JWT with its private key to ask for installation
//! tokens; each installation's token is kept until 5 minutes before it
//! expires, and concurrent callers share one refresh.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};
use octocrab::Octocrab;
use octocrab::models::AppId;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sprinters_core::domain::InstallationId;
use sprinters_core::time::{Clock, SystemClock, Timestamp};
use sprinters_core::{Error, ErrorKind, Result};

/// The App id variable of [`GithubAppConfig::from_env`].
pub const APP_ID_ENV: &str = "SPRINTERS_GITHUB_APP_ID";
/// The variable holding the App's private key (PEM).
pub const PRIVATE_KEY_ENV: &str = "SPRINTERS_GITHUB_APP_PRIVATE_KEY";
/// The variable naming a file with the App's private key (PEM).
pub const PRIVATE_KEY_FILE_ENV: &str = "SPRINTERS_GITHUB_APP_PRIVATE_KEY_FILE";
/// The variable with the API's base URL (GitHub Enterprise Server).
pub const API_URL_ENV: &str = "SPRINTERS_GITHUB_API_URL";

const REFRESH_BEFORE: Duration = Duration::from_secs(300);
/// How long one GitHub request may take unless configured.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What to check when GitHub refuses the App itself.
pub(crate) const APP_HINT: &str =
    "check the App id and that the private key is the App's current one";

/// Who the App is and where its API lives.
#[derive(Clone)]
pub struct GithubAppConfig {
    app_id: u64,
    private_key: SecretString,
    api_url: String,
    request_timeout: Duration,
}

impl std::fmt::Debug for GithubAppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubAppConfig")
            .field("app_id", &self.app_id)
            .field("private_key", &"[REDACTED]")
            .field("api_url", &self.api_url)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl GithubAppConfig {
    /// App `app_id` with its private key (PEM), on api.github.com.
    pub fn new(app_id: u64, private_key_pem: SecretString) -> Self {
        Self {
            app_id,
            private_key: private_key_pem,
            api_url: "https://api.github.com".to_owned(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// How long one call may take before it fails as retryable: connecting,
    /// sending, the whole answer, and for an installation's call getting
    /// its token first (waiting for it included). 30 s unless set; at least
    /// one second. GitHub that stops answering then holds no webhook,
    /// launch or lock for longer.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout.max(Duration::from_secs(1));
        self
    }

    /// The private key from a PEM file.
    pub fn from_key_file(app_id: u64, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let pem = std::fs::read_to_string(path).map_err(|e| {
            Error::config(format!(
                "cannot read the GitHub App private key {}: {e}",
                path.display()
            ))
        })?;
        Ok(Self::new(app_id, SecretString::from(pem)))
    }

    /// From `SPRINTERS_GITHUB_APP_ID`, the key from
    /// `SPRINTERS_GITHUB_APP_PRIVATE_KEY` or the file named by
    /// `SPRINTERS_GITHUB_APP_PRIVATE_KEY_FILE`, and optionally
    /// `SPRINTERS_GITHUB_API_URL`.
    pub fn from_env() -> Result<Self> {
        let id = std::env::var(APP_ID_ENV)
            .map_err(|_| Error::config(format!("{APP_ID_ENV} is not set")))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| Error::config(format!("{APP_ID_ENV} is not a number")))?;
        let mut config = match (
            std::env::var(PRIVATE_KEY_ENV),
            std::env::var(PRIVATE_KEY_FILE_ENV),
        ) {
            (Ok(pem), _) if !pem.is_empty() => Self::new(id, SecretString::from(pem)),
            (_, Ok(file)) if !file.is_empty() => Self::from_key_file(id, file)?,
            _ => {
                return Err(Error::config(format!(
                    "set {PRIVATE_KEY_ENV} or {PRIVATE_KEY_FILE_ENV} to the App's private key"
                )));
            }
        };
        if let Ok(url) = std::env::var(API_URL_ENV) {
            config = config.api_url(url)?;
        }
        Ok(config)
    }

    /// The REST API's base URL, such as `https://github.example.com/api/v3`
    /// for GitHub Enterprise Server.
    pub fn api_url(mut self, url: impl Into<String>) -> Result<Self> {
        let url = url.into();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(Error::config(format!(
                "GitHub API URL {url:?} is not an http(s) URL"
            )));
        }
        self.api_url = url.trim_end_matches('/').to_owned();
        Ok(self)
    }
}

/// An installation token and when it stops working.
#[derive(Clone)]
struct InstallationToken {
    client: Octocrab,
    expires_at: Timestamp,
}

type TokenSlot = Arc<tokio::sync::Mutex<Option<InstallationToken>>>;

/// A GitHub App: its JWT-authenticated client and its installations'
/// tokens.
pub struct GithubApp {
    app: Octocrab,
    clock: Arc<dyn Clock>,
    timeout: Duration,
    tokens: Mutex<HashMap<InstallationId, TokenSlot>>,
}

impl std::fmt::Debug for GithubApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubApp").finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct AccessToken {
    token: String,
    expires_at: Option<String>,
}

/// A response of GitHub's: status, headers, body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    pub(crate) fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::unavailable(format!(
                "GitHub answered {what} with an unexpected body: {e}"
            ))
        })
    }
}

impl GithubApp {
    /// The App; a key that is not an RSA private key in PEM is a `Config`
    /// error.
    pub fn new(config: GithubAppConfig) -> Result<Self> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// As [`new`](Self::new), with token expiries checked against `clock`.
    pub fn with_clock(config: GithubAppConfig, clock: Arc<dyn Clock>) -> Result<Self> {
        let builder = Octocrab::builder()
            .base_uri(config.api_url.as_str())
            .map_err(|e| Error::config(format!("GitHub API URL {}: {e}", config.api_url)))?
            .app_from_rsa_pem(AppId(config.app_id), config.private_key.expose_secret())
            .map_err(|_| {
                Error::config(format!(
                    "the private key of GitHub App {} is not an RSA private key in PEM format",
                    config.app_id
                ))
            })?
            // One immediate retry of a 5xx or transport error; rate
            // limits come back as RateLimited for the engine to schedule.
            .add_retry_config(octocrab::service::middleware::retry::RetryConfig::Simple(1));
        let app = builder
            .build()
            .map_err(|e| Error::config(format!("cannot build the GitHub client: {e}")))?;
        Ok(Self {
            app,
            clock,
            timeout: config.request_timeout,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// Calls the API as the App itself (JWT).
    pub(crate) async fn as_app(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Reply> {
        let request = call(&self.app, method, path, body, APP_HINT, self.clock.as_ref());
        self.bounded(path, request).await
    }

    /// Calls the API as `installation`, which needs `permission` (such as
    /// `administration: write`) for it.
    pub(crate) async fn as_installation(
        &self,
        installation: InstallationId,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        permission: &str,
    ) -> Result<Reply> {
        // One bound for all of it: waiting for the installation's token
        // (another caller may be fetching it), fetching it, and the call.
        let request = async {
            let client = self.installation_client(installation).await?;
            let hint = format!(
                "the App needs the permission {permission} and must be installed on the repository"
            );
            call(&client, method, path, body, &hint, self.clock.as_ref()).await
        };
        self.bounded(path, request).await
    }

    /// `request`, failed as retryable once the configured timeout passed.
    async fn bounded(
        &self,
        path: &str,
        request: impl std::future::Future<Output = Result<Reply>>,
    ) -> Result<Reply> {
        tokio::time::timeout(self.timeout, request)
            .await
            .unwrap_or_else(|_| {
                Err(Error::unavailable(format!(
                    "{path}: GitHub did not answer within {:?}",
                    self.timeout
                )))
            })
    }

    async fn installation_client(&self, installation: InstallationId) -> Result<Octocrab> {
        let slot = {
            let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
            tokens.entry(installation).or_default().clone()
        };
        let mut cached = slot.lock().await;
        let now = self.clock.now();
        if let Some(token) = cached
            .as_ref()
            .filter(|t| now < t.expires_at.saturating_sub(REFRESH_BEFORE))
        {
            return Ok(token.client.clone());
        }
        let reply = self
            .as_app(
                Method::POST,
                &format!("/app/installations/{installation}/access_tokens"),
                None,
            )
            .await?;
        let issued: AccessToken = reply.json("an installation token request")?;
        let expires_at = issued
            .expires_at
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .map(Timestamp::from_system_time)
            .unwrap_or_else(|| now.saturating_add(Duration::from_secs(3600)));
        let client = self
            .app
            .user_access_token(SecretString::from(issued.token))
            .map_err(|e| Error::unavailable(format!("cannot use the installation token: {e}")))?;
        *cached = Some(InstallationToken {
            client: client.clone(),
            expires_at,
        });
        Ok(client)
    }
}

/// One request; GitHub's answer mapped to a core error unless 2xx.
async fn call(
    client: &Octocrab,
    method: Method,
    path: &str,
    body: Option<&serde_json::Value>,
    hint: &str,
    clock: &dyn Clock,
) -> Result<Reply> {
    let what = format!("{method} {path}");
    let unreachable =
        |e: octocrab::Error| Error::unavailable(format!("{what}: GitHub unreachable: {e}"));
    let request = client
        .build_request(
            http::Request::builder().method(method.clone()).uri(path),
            body,
        )
        .map_err(unreachable)?;
    let response = client.execute(request).await.map_err(unreachable)?;
    let status = response.status();
    let headers = response.headers().clone();
    let text = client.body_to_string(response).await.map_err(unreachable)?;
    let reply = Reply {
        status,
        headers,
        body: text.into_bytes(),
    };
    if status.is_success() {
        return Ok(reply);
    }
    Err(map_status(&what, &reply, hint, clock))
}

#[derive(Deserialize)]
struct GithubMessage {
    message: Option<String>,
}

/// GitHub's status and headers as a core error.
pub(crate) fn map_status(what: &str, reply: &Reply, hint: &str, clock: &dyn Clock) -> Error {
    let headers = &reply.headers;
    let message = serde_json::from_slice::<GithubMessage>(&reply.body)
        .ok()
        .and_then(|m| m.message)
        .map(|m| m.chars().take(200).collect::<String>())
        .unwrap_or_default();
    let status = reply.status;
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let retry_after = number("retry-after").map(Duration::from_secs);
    let exhausted = number("x-ratelimit-remaining") == Some(0);
    let secondary = message.to_ascii_lowercase().contains("rate limit");
    let limited = status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN && (retry_after.is_some() || exhausted || secondary));
    if limited {
        let until_reset = number("x-ratelimit-reset").map(|reset| {
            let now = clock.now().as_millis() / 1000;
            Duration::from_secs(reset.saturating_sub(now))
        });
        let wait = retry_after
            .or(until_reset)
            .or(Some(Duration::from_secs(60)));
        return Error::new(
            ErrorKind::RateLimited { retry_after: wait },
            format!("{what}: GitHub rate limit ({status}): {message}"),
        );
    }
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::permission_denied(format!(
            "{what}: GitHub refused ({status}: {message}); {hint}"
        )),
        StatusCode::NOT_FOUND => Error::not_found(format!("{what}: not found on GitHub")),
        StatusCode::CONFLICT => Error::conflict(format!("{what}: {status}: {message}")),
        s if s.is_server_error() => {
            Error::unavailable(format!("{what}: GitHub unavailable ({status}): {message}"))
        }
        _ => Error::config(format!(
            "{what}: GitHub refused the request ({status}): {message}"
        )),
    }
}
