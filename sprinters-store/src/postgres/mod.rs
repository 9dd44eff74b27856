//! The PostgreSQL job store: several control-plane replicas share one
//! database (the `postgres` feature).
//!
//! What the database sees: sealed record bodies (AES-256-GCM under the same
//! per-account data keys as the SQLite store, the key ring itself wrapped by
//! the master key in the database) and the few columns the queries need:
//! keyed hashes of the record id, owner, account and label set, the queue
//! time, the state, and the launch claim's holder and expiry. No
//! repository, label, instance id or name in clear.

mod jobs;
mod keys;
mod schema;
mod tenants;
mod tls;
mod vault;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use secrecy::{ExposeSecret, SecretString};
use sprinters_core::{Error, Result};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::keys::KeyProvider;
use keys::DbKeys;

/// The environment variable [`PostgresStoreBuilder::from_env`] reads.
pub const DATABASE_URL_ENV: &str = "SPRINTERS_DATABASE_URL";

/// A [`JobStore`](sprinters_core::ports::JobStore) and
/// [`CredentialVault`](sprinters_core::vault::CredentialVault) on
/// PostgreSQL. Cheap to clone; clones share the pool.
///
/// ```no_run
/// use secrecy::SecretString;
/// use sprinters_store::{EnvKeyProvider, PostgresJobStore};
///
/// # async fn connect() -> sprinters_core::Result<()> {
/// // Verified TLS unless the database is local and the URL says sslmode=disable.
/// let url = SecretString::from("postgres://sprinters@db.internal/sprinters".to_owned());
/// let store = PostgresJobStore::builder(url)
///     .max_connections(16)
///     .connect(&EnvKeyProvider)
///     .await?;
/// # let _ = store;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresJobStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    keys: DbKeys,
}

impl fmt::Debug for PostgresJobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresJobStore")
            .field("database", &self.inner.db.target)
            .finish_non_exhaustive()
    }
}

/// Connects a [`PostgresJobStore`]: the URL (a secret: it may hold a
/// password), the pool size and the roots TLS trusts.
///
/// TLS (1.3 or 1.2, certificate and host name verified) is required, with
/// one exception: a server on this machine (a loopback address or a Unix
/// socket) with `sslmode=disable` in the URL. The driver's own default,
/// `sslmode=prefer`, is taken as `require`, since it falls back to plain
/// text whenever the other end declines TLS.
pub struct PostgresStoreBuilder {
    url: SecretString,
    max_connections: usize,
    roots: tls::Roots,
    request_timeout: Duration,
    key_refresh: Duration,
}

/// How long one database call may take by default: waiting for a pooled
/// connection, opening one, and each statement.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl fmt::Debug for PostgresStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStoreBuilder")
            .field("url", &"[REDACTED]")
            .field("max_connections", &self.max_connections)
            .field("roots", &self.roots)
            .field("request_timeout", &self.request_timeout)
            .field("key_refresh", &self.key_refresh)
            .finish()
    }
}

impl PostgresStoreBuilder {
    /// A builder for `url` (`postgres://user:password@host:port/db`, or the
    /// key-value form), with a pool of 16 connections.
    pub fn new(url: SecretString) -> Self {
        Self {
            url,
            max_connections: 16,
            roots: tls::Roots::System,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            key_refresh: Duration::from_secs(1),
        }
    }

    /// How often this replica looks (before a seal) whether another one
    /// destroyed or rotated data keys; default 1 s, the engine's tick. No
    /// new record is sealed with a destroyed or rotated-out key for longer.
    pub fn key_refresh(mut self, every: Duration) -> Self {
        self.key_refresh = every;
        self
    }

    /// How long one call may take (at least 1 s; default 30 s): waiting
    /// for a pooled connection, opening one (TCP, TLS and the startup), and
    /// each statement. Past it the call fails as retryable; a statement cut
    /// short is cancelled on the server, and the kernel drops a connection
    /// whose sent data goes unacknowledged as long (`tcp_user_timeout`), so
    /// a dead network never holds a pooled connection.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout.max(Duration::from_secs(1));
        self
    }

    /// The URL from `SPRINTERS_DATABASE_URL`.
    pub fn from_env() -> Result<Self> {
        let url = std::env::var(DATABASE_URL_ENV)
            .map_err(|_| Error::config(format!("{DATABASE_URL_ENV} is not set")))?;
        Ok(Self::new(SecretString::from(url)))
    }

    /// At most `n` connections (at least 1).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Trusts only the CA certificates in this PEM file for the server's
    /// certificate (a private CA, or a provider's bundle such as RDS's
    /// `global-bundle.pem`) instead of the system's roots.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.roots = tls::Roots::File(path.into());
        self
    }

    /// Connects, applies the migrations this build has and the database
    /// lacks, and opens (or creates) the key ring with the master key that
    /// `keys` supplies. A wrong key, an unreachable server or a database
    /// newer than this build is an error that names it; nothing is written
    /// then but the migrations.
    pub async fn connect(self, keys: &dyn KeyProvider) -> Result<PostgresJobStore> {
        let mut config =
            tokio_postgres::Config::from_str(self.url.expose_secret()).map_err(|e| {
                // The parser's message never repeats the URL.
                Error::config(format!("the database URL is not valid: {e}"))
            })?;
        let target = describe(&config);
        tls::settle_ssl_mode(&mut config, &target)?;
        let timeout = self.request_timeout;
        config.connect_timeout(timeout);
        config.tcp_user_timeout(timeout);
        let connector = tls::connector(&self.roots)?;
        let manager = Manager::from_config(
            config,
            connector.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(self.max_connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()
            .map_err(|e| Error::config(format!("building the connection pool: {e}")))?;
        let db = Db {
            pool,
            target,
            round_trips: AtomicU64::new(0),
            timeout,
            connector,
        };
        {
            let mut client = db.client().await?;
            schema::migrate(&mut client).await?;
        }
        let master = keys.master_key().await?;
        let keys = DbKeys::open(&db, &master, self.key_refresh).await?;
        Ok(PostgresJobStore {
            inner: Arc::new(Inner { db, keys }),
        })
    }
}

impl PostgresJobStore {
    /// [`PostgresStoreBuilder::new`].
    pub fn builder(url: SecretString) -> PostgresStoreBuilder {
        PostgresStoreBuilder::new(url)
    }

    /// Statements sent to the server so far (each one network round trip;
    /// the first use of a statement on a connection adds one to prepare it).
    pub fn round_trips(&self) -> u64 {
        self.inner.db.round_trips.load(Ordering::Relaxed)
    }

    /// The schema version this build migrates to.
    pub fn schema_version() -> i32 {
        schema::LATEST
    }

    /// Starts new data keys for every account (and the records of none):
    /// new records use them, older ones stay readable under theirs. Online:
    /// every replica follows within its key refresh. Returns the keys
    /// retired.
    pub async fn rotate_data_keys(&self) -> Result<u64> {
        self.inner.keys.rotate_all(&self.inner.db).await
    }

    /// Re-wraps the key ring and every data key under `new`, in one
    /// transaction; from then on the store opens with `new` only. Replicas
    /// running with the old master key cannot load keys they have not yet
    /// cached: rotate with every replica stopped (`sprinters keys rotate`
    /// refuses while one leads the reconciler). Returns the data keys
    /// re-wrapped.
    pub async fn rotate_master_key(&self, new: &crate::MasterKey) -> Result<u64> {
        self.inner.keys.rewrap(&self.inner.db, new).await
    }

    /// Destroys the data keys of `account` and deletes its records and its
    /// stored access key: nobody can read them any more (crypto-shredding),
    /// even from a backup of the database. Returns the keys destroyed.
    pub async fn delete_account(&self, account: &sprinters_core::domain::AccountId) -> Result<u64> {
        let db = &self.inner.db;
        let account_h = self
            .inner
            .keys
            .opaque("account", account.as_str().as_bytes());
        let scope = self.inner.keys.scope_of(Some(account));
        let n = self.inner.keys.destroy(db, &scope).await?;
        let client = db.client().await?;
        db.execute(
            &client,
            "DELETE FROM sprinters_jobs WHERE account_h = $1",
            &[&account_h],
        )
        .await?;
        db.execute(
            &client,
            "DELETE FROM sprinters_vault WHERE account_h = $1",
            &[&account_h],
        )
        .await?;
        Ok(n)
    }
}

/// The pool and the statement counter.
pub(crate) struct Db {
    pool: Pool,
    /// `host:port/dbname`, for messages: never the user or password.
    target: String,
    round_trips: AtomicU64,
    /// The deadline of each call.
    timeout: Duration,
    /// For cancelling a statement past its deadline.
    connector: tls::RustlsTls,
}

impl Db {
    /// Runs one statement of `client` under the deadline. Past it, the
    /// statement is cancelled on the server (in the background: a dead
    /// network must not hold the caller) and the call fails as retryable.
    async fn within<T>(
        &self,
        client: &deadpool_postgres::Client,
        doing: &str,
        call: impl std::future::Future<Output = std::result::Result<T, tokio_postgres::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(answer) => answer.map_err(|e| pg_error(doing, e)),
            Err(_) => {
                let token = client.cancel_token();
                let connector = self.connector.clone();
                tokio::spawn(async move {
                    let _ = token.cancel_query(connector).await;
                });
                Err(Error::unavailable(format!(
                    "{doing}: the database at {} did not answer within {} s",
                    self.target,
                    self.timeout.as_secs()
                )))
            }
        }
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Client> {
        self.pool.get().await.map_err(|e| {
            let message = format!(
                "connecting to the database at {}: {}",
                self.target,
                causes(&e)
            );
            match e {
                deadpool_postgres::PoolError::Backend(source) => pg_error(&message, source),
                _ => Error::unavailable(message),
            }
        })
    }

    async fn statement(
        &self,
        client: &deadpool_postgres::Client,
        sql: &str,
    ) -> Result<tokio_postgres::Statement> {
        self.within(client, "preparing a statement", client.prepare_cached(sql))
            .await
    }

    pub(crate) async fn query(
        &self,
        client: &deadpool_postgres::Client,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        let statement = self.statement(client, sql).await?;
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        self.within(client, "querying", client.query(&statement, params))
            .await
    }

    pub(crate) async fn query_opt(
        &self,
        client: &deadpool_postgres::Client,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>> {
        let statement = self.statement(client, sql).await?;
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        self.within(client, "querying", client.query_opt(&statement, params))
            .await
    }

    pub(crate) async fn query_one(
        &self,
        client: &deadpool_postgres::Client,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row> {
        self.query_opt(client, sql, params)
            .await?
            .ok_or_else(|| Error::integrity("the database returned no row where one was due"))
    }

    pub(crate) async fn execute(
        &self,
        client: &deadpool_postgres::Client,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64> {
        let statement = self.statement(client, sql).await?;
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        self.within(client, "writing", client.execute(&statement, params))
            .await
    }
}

/// An error and its sources, each message once: the driver's "error
/// performing TLS handshake" alone does not say that the certificate was
/// refused, its source does.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

fn describe(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("(default)");
    format!("{host}:{port}/{db}")
}

/// Maps a driver error: a lost or refused connection and the server's
/// transient states are retryable, a unique violation is a `Conflict`,
/// missing privileges are `PermissionDenied`, the rest `Unavailable`.
pub(crate) fn pg_error(doing: &str, e: tokio_postgres::Error) -> Error {
    use tokio_postgres::error::SqlState;
    let message = match e.as_db_error() {
        Some(db) => format!("{doing}: {} ({})", db.message(), db.code().code()),
        None => format!("{doing}: {e}"),
    };
    let error = match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => Error::conflict(message),
        Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => Error::permission_denied(format!(
            "{message}: the database user needs SELECT, INSERT, UPDATE and DELETE on the sprinters_* tables (and CREATE for the migrations)"
        )),
        Some(c)
            if *c == SqlState::INVALID_PASSWORD
                || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
        {
            Error::permission_denied(message)
        }
        _ => Error::unavailable(message),
    };
    error.with_source(e)
}
