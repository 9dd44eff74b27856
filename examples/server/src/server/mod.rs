//! `sprinters serve`: every default adapter composed into a control plane.
//!
//! The embedded SQLite store (or PostgreSQL, shared by replicas), the GitHub App (webhooks, registry, delivery
//! recovery), the AWS adapters (EC2 launcher, credentials per account) and
//! the engine, behind one axum server.

mod api;
mod console;
mod listener;
mod metrics;
mod owners;
mod policy;
mod tenants;

use std::sync::Arc;
use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;
use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use sprinters_aws::{
    AmbientProvider, AssumeRoleProvider, AwsClientConfig, CredentialChain, Ec2Launcher,
    ImageCatalog, StoredKeyProvider,
};
use sprinters_core::domain::AccountId;
use sprinters_core::engine::{Engine, EngineConfig, Limits, Tenants};
use sprinters_core::labels::LabelParser;
use sprinters_core::observe::{EngineObserver, NoObserver, Observers};
use sprinters_core::ports::CredentialProvider;
use sprinters_core::ports::JobStore;
use sprinters_core::time::{Clock, SystemClock};
use sprinters_core::vault::CredentialVault;
use sprinters_github::{
    DeliveryRecovery, GithubApp, GithubAppConfig, GithubRegistry, WebhookVerifier, webhook_router,
};
use sprinters_store::{FileKeyProvider, PostgresJobStore, SqliteJobStore};

use crate::config::{AccountCredentials, ApiToken, Config, StoreConfig};
pub use listener::{
    BODY_LIMIT, EdgeLimits, HEADER_TIMEOUT, REQUEST_TIMEOUT, guard, serve_http, tls_config,
};
pub use metrics::Metrics;

/// How often the webhook log is read back for failed deliveries, and how
/// far back the first pass looks.
const RECOVERY_EVERY: Duration = Duration::from_secs(300);
const RECOVERY_LOOKBACK: Duration = Duration::from_secs(6 * 3600);

/// The store a control plane runs on.
#[derive(Debug, Clone)]
pub enum PlaneStore {
    /// The embedded SQLite store: one process.
    Embedded(Arc<SqliteJobStore>),
    /// PostgreSQL: any number of replicas.
    Postgres(Arc<PostgresJobStore>),
}

impl PlaneStore {
    /// As a job store.
    pub fn jobs(&self) -> Arc<dyn JobStore> {
        match self {
            PlaneStore::Embedded(s) => s.clone(),
            PlaneStore::Postgres(s) => s.clone(),
        }
    }

    /// As the vault of stored access keys.
    pub fn vault(&self) -> Arc<dyn CredentialVault> {
        match self {
            PlaneStore::Embedded(s) => s.clone(),
            PlaneStore::Postgres(s) => s.clone(),
        }
    }

    /// Crypto-shreds `account`: its data keys destroyed, its records and
    /// stored key deleted.
    pub async fn delete_account(&self, account: &AccountId) -> sprinters_core::Result<()> {
        match self {
            PlaneStore::Embedded(s) => s.delete_account(account).await.map(|_| ()),
            PlaneStore::Postgres(s) => s.delete_account(account).await.map(|_| ()),
        }
    }
}

/// A composed control plane, ready to serve.
///
/// ```no_run
/// use sprinters_server::config::Config;
/// use sprinters_server::server::ControlPlane;
///
/// # async fn run() -> Result<(), String> {
/// let config = Config::load(std::path::Path::new("sprinters.toml")).map_err(|e| e.to_string())?;
/// let plane = ControlPlane::build(config).await?;
/// let listener = tokio::net::TcpListener::bind(plane.listen_addr())
///     .await
///     .map_err(|e| e.to_string())?;
/// plane.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await
/// # }
/// ```
pub struct ControlPlane {
    engine: Arc<Engine>,
    store: PlaneStore,
    // The App, to bind configured owners not bound at start, and the owners.
    binding: (Arc<GithubApp>, Arc<Engine>),
    recovery: DeliveryRecovery,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    edge: EdgeLimits,
    listen: std::net::SocketAddr,
    // `/metrics` on a listener of its own, when configured.
    metrics: Option<(std::net::SocketAddr, Router)>,
    /// Held while serving: this replica's id is its own (see
    /// [`crate::data_dir::replica_id`]).
    _replica_lock: Option<std::fs::File>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("listen", &self.listen)
            .field("metrics_listen", &self.metrics.as_ref().map(|(a, _)| a))
            .finish_non_exhaustive()
    }
}

fn describe(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl ControlPlane {
    /// Opens the store and builds every adapter from `config`. Fails with
    /// one line naming what is wrong.
    pub async fn build(config: Config) -> Result<Self, String> {
        Self::builder(config).build().await
    }

    /// A builder, for what a configuration file cannot say.
    pub fn builder(config: Config) -> ControlPlaneBuilder {
        ControlPlaneBuilder {
            config,
            observer: Arc::new(NoObserver),
            platform_credentials: None,
        }
    }
}

/// Builds a [`ControlPlane`] from its configuration and what a file
/// cannot hold: an observer of the engine beside the metrics, and the
/// platform's own AWS credentials.
pub struct ControlPlaneBuilder {
    config: Config,
    observer: Arc<dyn EngineObserver>,
    platform_credentials: Option<SharedCredentialsProvider>,
}

impl std::fmt::Debug for ControlPlaneBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlaneBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ControlPlaneBuilder {
    /// Told what the engine does, beside the metrics (the demo times
    /// launches with it).
    pub fn observer(mut self, observer: Arc<dyn EngineObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// The platform's credentials that assume customers' roles (the
    /// environment's default chain otherwise).
    pub fn platform_credentials(mut self, credentials: SharedCredentialsProvider) -> Self {
        self.platform_credentials = Some(credentials);
        self
    }

    /// Opens the store and builds every adapter. Fails with one line
    /// naming what is wrong.
    pub async fn build(self) -> Result<ControlPlane, String> {
        let Self {
            config,
            observer,
            platform_credentials,
        } = self;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let tls = match &config.server.tls {
            Some(files) => Some(tls_config(&files.cert_file, &files.key_file)?),
            None => None,
        };
        crate::data_dir::create(&config.server.data_dir)?;
        let keys = FileKeyProvider::new(&config.server.master_key_file);
        let store = match &config.store {
            StoreConfig::Embedded => PlaneStore::Embedded(Arc::new(
                SqliteJobStore::open(&config.server.data_dir, &keys)
                    .await
                    .map_err(|e| format!("store {}: {e}", config.server.data_dir.display()))?,
            )),
            StoreConfig::Postgres {
                url,
                max_connections,
                ca_file,
                request_timeout,
            } => PlaneStore::Postgres(Arc::new({
                let mut builder = PostgresJobStore::builder(url.clone())
                    .max_connections(*max_connections)
                    .request_timeout(*request_timeout);
                if let Some(file) = ca_file {
                    builder = builder.ca_file(file);
                }
                builder
                    .connect(&keys)
                    .await
                    .map_err(|e| format!("store (PostgreSQL): {e}"))?
            })),
        };

        let github_config =
            GithubAppConfig::from_key_file(config.github.app_id, &config.github.private_key_file)
                .and_then(|c| c.api_url(config.github.api_url.clone()))
                .map(|c| c.request_timeout(config.github.request_timeout))
                .map_err(describe)?;
        let github =
            Arc::new(GithubApp::with_clock(github_config, clock.clone()).map_err(describe)?);
        let mut verifier = None;
        for secret in &config.github.webhook_secrets {
            verifier = Some(
                match verifier {
                    None => WebhookVerifier::new(secret.clone()),
                    Some(v) => WebhookVerifier::with_secret(v, secret.clone()),
                }
                .map_err(describe)?,
            );
        }
        let verifier = verifier.ok_or("github.webhook_secret_file: is required")?;

        let mut aws = AwsClientConfig::new().operation_timeout(config.aws.request_timeout);
        if let Some(url) = &config.aws.endpoint_url {
            aws = aws.endpoint_url(url.clone()).map_err(describe)?;
        }
        // Configured logins wait for their binding to GitHub's ids (below,
        // once the engine can keep it in the store).
        let tenants = tenants::seed(&config.accounts);
        let credentials = credentials(
            &config,
            &aws,
            platform_credentials.clone(),
            store.vault(),
            clock.clone(),
            tenants.clone(),
        )
        .await?;
        let mut images = ImageCatalog::new();
        for (image, region, ami) in &config.aws.images {
            images = images
                .pin(region.clone(), *image, ami.clone())
                .map_err(describe)?;
        }
        let launcher = Arc::new(
            Ec2Launcher::builder(aws.clone())
                .images(images)
                .clock(clock.clone())
                .build(),
        );

        let configured_accounts: Vec<_> = config
            .accounts
            .iter()
            .map(|a| (a.github_owner.clone(), a.aws_account_id.clone()))
            .collect();
        let shredder = Arc::new(owners::Shredder {
            tenants: tenants.clone(),
            store: store.clone(),
            configured: configured_accounts.clone(),
        });
        let mut engine_config =
            EngineConfig::new(config.server.controller_id.clone(), tenants.clone());
        let mut replica_lock = None;
        engine_config.replica_id = match &store {
            // Only one process can open the embedded store, so a serve restarted
            // after a crash is the same replica: with a stable id it takes
            // its own claims and the reconciler's lease back at once,
            // instead of waiting them out.
            PlaneStore::Embedded(_) => format!("{}-embedded-store", config.server.controller_id),
            // Replicas sharing a database each need their own id, kept in
            // their own data directory: a replica restarted there resumes
            // its claims at once; one that dies for good loses them when
            // they lapse.
            PlaneStore::Postgres(_) => {
                crate::data_dir::create(&config.server.data_dir)?;
                let (id, lock) = crate::data_dir::replica_id(&config.server.data_dir)?;
                replica_lock = Some(lock);
                format!("{}-{id}", config.server.controller_id)
            }
        };
        engine_config.max_lifetime = Duration::from_secs(config.limits.max_lifetime_minutes * 60);
        engine_config.idle_grace = Duration::from_secs(config.limits.idle_grace_seconds);
        engine_config.reconcile_interval =
            Duration::from_secs(config.limits.reconcile_interval_seconds);
        engine_config.claim_ttl = Duration::from_secs(config.limits.claim_ttl_seconds);
        // A launch call cut short lands, if at all, within its timeout.
        engine_config.in_flight_window = config.aws.request_timeout;
        engine_config.leader_ttl = Duration::from_secs(config.limits.leader_ttl_seconds);
        let mut limits = Limits::default();
        limits.per_account = Some(config.limits.max_concurrent_per_account);
        engine_config.limits = limits;
        engine_config.policy = config.policy.clone();
        let labels = LabelParser::new()
            .with_prefix(&config.github.label_prefix)
            .map_err(describe)?
            .with_default_region(config.aws.default_region.clone());
        let metrics = Arc::new(Metrics::default());
        let engine = Arc::new(
            Engine::builder()
                .observer(Arc::new(Observers(vec![
                    metrics.clone(),
                    shredder,
                    observer,
                ])))
                .registry(Arc::new(GithubRegistry::new(github.clone())))
                .credentials(credentials)
                .launcher(launcher.clone())
                .store(store.jobs())
                .clock(clock.clone())
                .labels(labels.clone())
                .config(engine_config)
                .build()
                .map_err(describe)?,
        );
        // Bindings kept in the store first (a restart asks GitHub nothing
        // about a login bound before, whoever holds it now), then GitHub
        // for the rest: from then on the id is the tenant.
        engine.sync_tenants().await.map_err(describe)?;
        tenants::bind_configured(&github, &engine).await;
        let default_spec = labels
            .parse_label(&format!("{}:aws", labels.prefix()))
            .map_err(describe)?;
        let owners = owners::OwnersState {
            tokens: Arc::new(config.server.api_tokens.clone()),
            engine: engine.clone(),
            github: github.clone(),
            store: store.clone(),
            aws,
            platform: platform_credentials,
            launcher,
            default_spec,
            controller_id: config.server.controller_id.clone(),
            platform_account_id: config.aws.platform_account_id.clone(),
            configured_accounts: configured_accounts.clone(),
            template_url: config.aws.cloudformation_template_url.clone(),
        };

        let webhooks = webhook_router(verifier, engine.clone(), clock.clone()).layer(
            middleware::from_fn_with_state(metrics.clone(), count_webhooks),
        );
        let router = guard(
            Router::new()
                .nest("/webhooks/github", webhooks)
                .merge(api_router(
                    store.clone(),
                    config.server.api_tokens.clone(),
                    metrics.clone(),
                    tenants.clone(),
                ))
                .merge(owners_router(owners)),
            config.server.edge,
        );
        // `/metrics` on its own listener when one is configured.
        let metrics = metrics_router(metrics, store.clone());
        let (router, metrics) = match config.server.metrics_listen {
            Some(addr) => (router, Some((addr, metrics))),
            None => (router.merge(metrics), None),
        };
        Ok(ControlPlane {
            engine: engine.clone(),
            store,
            _replica_lock: replica_lock,
            binding: (github.clone(), engine),
            recovery: DeliveryRecovery::new(github, clock),
            router,
            tls,
            edge: config.server.edge,
            listen: config.server.listen,
            metrics,
        })
    }
}

impl ControlPlane {
    /// The router, for tests that call it without a socket.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The store.
    pub fn store(&self) -> &PlaneStore {
        &self.store
    }

    /// The owners served, bound to their GitHub ids.
    pub fn tenants(&self) -> &Tenants {
        self.engine.tenants()
    }

    /// Serves on `listener` (over TLS when configured) until `shutdown`
    /// resolves, then stops taking requests, lets in-flight requests and
    /// launches finish and returns.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), String> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let http = serve_http(
            listener,
            self.router.clone(),
            self.tls.clone(),
            self.edge,
            wait(stopped.clone()),
        );
        // Bound before anything runs: a port taken is an error at start.
        let metrics_listener = match &self.metrics {
            Some((addr, router)) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| format!("cannot listen for /metrics on {addr}: {e}"))?;
                tracing::info!(%addr, "serving /metrics");
                Some((listener, router.clone()))
            }
            None => None,
        };
        let metrics = async {
            if let Some((listener, router)) = metrics_listener {
                serve_http(listener, router, None, self.edge, wait(stopped.clone())).await;
            }
        };
        let engine = self.engine.run(wait(stopped.clone()));
        let recovery = recover_while_leading(&self.recovery, &self.engine, wait(stopped.clone()));
        let binding = bind_unbound(&self.binding.0, &self.binding.1, wait(stopped.clone()));
        let trigger = async move {
            shutdown.await;
            tracing::info!("shutting down: draining in-flight work");
            let _ = stop.send(true);
        };
        let ((), (), ran, (), (), ()) =
            tokio::join!(http, metrics, engine, recovery, binding, trigger);
        ran.map_err(describe)
    }

    /// Where the configuration says to listen.
    pub fn listen_addr(&self) -> std::net::SocketAddr {
        self.listen
    }
}

/// The routes that read the store: `/` (the console), `/api/jobs`,
/// `/healthz` and `/readyz`.
/// A token scoped to owners sees the jobs of the account ids those logins
/// were bound to in `tenants`, and nothing of whoever holds a login later.
pub fn api_router(
    store: PlaneStore,
    tokens: Vec<ApiToken>,
    metrics: Arc<Metrics>,
    tenants: Tenants,
) -> Router {
    let state = api::ApiState {
        store,
        tokens: Arc::new(tokens),
        metrics,
        tenants,
    };
    Router::new()
        .route("/", get(console::page))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/api/jobs", get(api::jobs))
        .route("/api/accounts", get(api::accounts))
        .with_state(state)
}

/// `/metrics`: what the engine counted, no record read.
pub fn metrics_router(metrics: Arc<Metrics>, store: PlaneStore) -> Router {
    let state = api::ApiState {
        store,
        tokens: Arc::new(Vec::new()),
        metrics,
        tenants: Tenants::new(),
    };
    Router::new()
        .route("/metrics", get(api::metrics))
        .with_state(state)
}

/// `/api/owners/{owner}/accounts[/{account}]`: connecting owners' AWS
/// accounts at run time (unscoped tokens only).
fn owners_router(state: owners::OwnersState) -> Router {
    use axum::routing::put;
    Router::new()
        .route(
            "/api/owners/{owner}/accounts",
            get(owners::list).post(owners::connect),
        )
        .route(
            "/api/owners/{owner}/accounts/{account}",
            put(owners::verify).delete(owners::disconnect),
        )
        .route(
            "/api/owners/{owner}/policy",
            get(policy::get).put(policy::put),
        )
        .with_state(state)
}

/// Counts webhook requests by event and outcome.
async fn count_webhooks(
    axum::extract::State(metrics): axum::extract::State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let event = request
        .headers()
        .get("x-github-event")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let response = next.run(request).await;
    metrics.webhook(&event, response.status().as_u16());
    response
}

/// The configured connections' credentials: assumed roles per (owner,
/// account), stored keys, and the ambient chain for at most one account,
/// each reached only by the owner the connection's login was bound to.
async fn credentials(
    config: &Config,
    aws: &AwsClientConfig,
    platform: Option<SharedCredentialsProvider>,
    vault: Arc<dyn CredentialVault>,
    clock: Arc<dyn Clock>,
    tenants: Tenants,
) -> Result<Arc<dyn CredentialProvider>, String> {
    let mut roles = AssumeRoleProvider::builder(aws.clone()).clock(clock.clone());
    if let Some(platform) = platform {
        roles = roles.platform_credentials(platform);
    }
    let mut others: Vec<Arc<dyn CredentialProvider>> = Vec::new();
    let mut any_vault = false;
    for account in &config.accounts {
        match &account.credentials {
            // Connected once the owner is bound: see `ConfiguredCredentials`.
            AccountCredentials::Role(_) => {}
            AccountCredentials::Vault => any_vault = true,
            AccountCredentials::Ambient => {
                others.push(Arc::new(
                    AmbientProvider::load(account.aws_account_id.clone()).await,
                ));
            }
        }
    }
    if any_vault {
        others.push(Arc::new(StoredKeyProvider::new(vault)));
    }
    Ok(Arc::new(tenants::ConfiguredCredentials {
        tenants,
        accounts: config.accounts.clone(),
        roles: Arc::new(roles.build().await),
        others: Arc::new(CredentialChain::new(others)),
    }))
}

/// Configured owners the App was not installed on at start are looked up
/// again every few minutes (an `installation.created` binds them sooner).
async fn bind_unbound(
    github: &GithubApp,
    engine: &Engine,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let clock = SystemClock;
    let passes = async {
        loop {
            clock.sleep(RECOVERY_EVERY).await;
            if !engine.tenants().unbound().is_empty() {
                tenants::bind_configured(github, engine).await;
            }
        }
    };
    tokio::select! {
        _ = shutdown => {}
        _ = passes => {}
    }
}

/// The webhook-log recovery, on the replica that leads the reconciler only
/// (replicas sharing a database would otherwise each redeliver the same
/// failed deliveries). A replica that becomes leader looks back to where
/// it last looked, at most [`RECOVERY_LOOKBACK`].
async fn recover_while_leading(
    recovery: &DeliveryRecovery,
    engine: &Engine,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let clock = SystemClock;
    let mut since = clock.now().saturating_sub(RECOVERY_LOOKBACK);
    let passes = async {
        loop {
            let started = clock.now();
            since = since.max(started.saturating_sub(RECOVERY_LOOKBACK));
            match engine.leads().await {
                Ok(true) => match recovery.recover_since(since).await {
                    // Past only what was redelivered or found delivered.
                    Ok(report) => {
                        since = report.resume_from.saturating_sub(Duration::from_secs(60))
                    }
                    Err(e) => tracing::warn!(error = %e, "webhook recovery pass failed"),
                },
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "asking for leadership failed"),
            }
            clock.sleep(RECOVERY_EVERY).await;
        }
    };
    tokio::select! {
        _ = shutdown => {}
        _ = passes => {}
    }
}
