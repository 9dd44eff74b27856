//! The `serve` configuration: one TOML file, every key overridable by an
//! environment variable `SPRINTERS_<SECTION>_<KEY>`, validated at start
//! with messages that name the key. Secrets come from files (or the
//! environment) and are held in `SecretString`s.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sprinters_aws::CustomerRole;

pub use crate::server::EdgeLimits;
use sprinters_core::domain::{AccountId, Owner, OwnerId, Region};
use sprinters_core::labels::Image;

/// A configuration error: the key and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key, such as `github.app_id` (empty for the file as a whole).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

fn err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[github]`.
    pub github: GithubConfig,
    /// `[aws]`.
    pub aws: AwsConfig,
    /// `[[accounts]]`.
    pub accounts: Vec<AccountConfig>,
    /// `[limits]`.
    pub limits: LimitsConfig,
    /// `[store]`: the embedded SQLite store in `server.data_dir` unless a
    /// database is named.
    pub store: StoreConfig,
    /// `[policy]`: what a label may ask for unless its owner's policy
    /// says otherwise.
    pub policy: sprinters_core::policy::PlatformPolicy,
}

/// Where job records live.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// The embedded SQLite store in `server.data_dir` (one process).
    Embedded,
    /// PostgreSQL, shared by several replicas.
    Postgres {
        /// `postgres://…`; a secret, since it may hold a password.
        url: SecretString,
        /// The pool size of this replica.
        max_connections: usize,
        /// The CA certificates (PEM) the server's certificate must chain
        /// to; the system's roots when absent.
        ca_file: Option<PathBuf>,
        /// How long one database call may take (`request_timeout_seconds`,
        /// default 30): a pooled connection, a new one, a statement.
        request_timeout: std::time::Duration,
    },
}

/// `[server]`.
#[derive(Debug)]
pub struct ServerConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The store's directory.
    pub data_dir: PathBuf,
    /// The master key file (default `data_dir/master.key`).
    pub master_key_file: PathBuf,
    /// The control plane's id, tagged on every instance it launches.
    pub controller_id: String,
    /// Bearer tokens for `/api` and the console.
    pub api_tokens: Vec<ApiToken>,
    /// A TLS certificate chain and key (PEM); plain HTTP when absent.
    pub tls: Option<TlsConfig>,
    /// Time limits and connection limits of the HTTP edge.
    pub edge: EdgeLimits,
    /// Where `/metrics` is served instead of on `listen` (plain HTTP, such
    /// as a loopback address only the scraper reaches); on `listen` when
    /// absent.
    pub metrics_listen: Option<SocketAddr>,
}

/// A bearer token and the owners whose jobs it may see.
#[derive(Debug, Clone)]
pub struct ApiToken {
    /// The token.
    pub token: SecretString,
    /// Owners it may see; `None` means every owner (`*`).
    pub owners: Option<Vec<Owner>>,
}

/// TLS files.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// The certificate chain (PEM).
    pub cert_file: PathBuf,
    /// The private key (PEM).
    pub key_file: PathBuf,
}

/// `[github]`.
#[derive(Debug)]
pub struct GithubConfig {
    /// The App id.
    pub app_id: u64,
    /// The App's private key file (PEM).
    pub private_key_file: PathBuf,
    /// The webhook secrets (several during a rotation).
    pub webhook_secrets: Vec<SecretString>,
    /// The REST API's URL.
    pub api_url: String,
    /// The label prefix.
    pub label_prefix: String,
    /// How long one GitHub request may take (`request_timeout_seconds`,
    /// default 30).
    pub request_timeout: std::time::Duration,
}

/// `[aws]`.
#[derive(Debug)]
pub struct AwsConfig {
    /// An endpoint instead of AWS (an emulator).
    pub endpoint_url: Option<String>,
    /// How long one EC2 or STS operation may take, retries included
    /// (`request_timeout_seconds`, default 30).
    pub request_timeout: std::time::Duration,
    /// The region of labels that name none.
    pub default_region: Region,
    /// Pinned AMIs: (image, region, AMI id).
    pub images: Vec<(Image, Region, String)>,
    /// The platform's own AWS account, which customers' roles trust: a
    /// parameter of their CloudFormation stack.
    pub platform_account_id: Option<AccountId>,
    /// Where the platform publishes the role's CloudFormation template
    /// (`sprinters policy cloudformation`, on S3): with it, connecting an
    /// account answers a quick-create link.
    pub cloudformation_template_url: Option<String>,
}

/// How an account's credentials are obtained.
#[derive(Debug, Clone)]
pub enum AccountCredentials {
    /// Assume this role (its ARN checked against the account) with the
    /// agreed external id.
    Role(CustomerRole),
    /// An access key stored in the vault (`sprinters keys add-access-key`).
    Vault,
    /// The environment's credentials (the platform's own account).
    Ambient,
}

/// `[[accounts]]`.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    /// The GitHub user or organization, by login: bound at start to the
    /// account id GitHub reports for the App's installation on that login.
    pub github_owner: Owner,
    /// The account id the login must be bound to, when the operator pins
    /// it (`github_owner_id`): a binding to any other id is refused.
    pub github_owner_id: Option<OwnerId>,
    /// Its AWS account.
    pub aws_account_id: AccountId,
    /// How to get credentials for it.
    pub credentials: AccountCredentials,
}

/// `[limits]`.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// No instance lives longer.
    pub max_lifetime_minutes: u64,
    /// A spare runner idles this long before it is ended.
    pub idle_grace_seconds: u64,
    /// Instances at once per AWS account.
    pub max_concurrent_per_account: usize,
    /// How often the reconciler looks for orphans, spares and lost jobs.
    pub reconcile_interval_seconds: u64,
    /// How long a replica's launch claim lasts: a replica that dies
    /// mid-launch holds its jobs this long.
    pub claim_ttl_seconds: u64,
    /// How long the reconciler's leadership lasts unrenewed: how soon
    /// another replica leads after the leader dies.
    pub leader_ttl_seconds: u64,
}

// The file as written. Unknown keys are errors that name them.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    github: RawGithub,
    #[serde(default)]
    aws: RawAws,
    #[serde(default)]
    accounts: Vec<RawAccount>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    store: RawStore,
    policy: Option<toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    url: Option<String>,
    url_file: Option<PathBuf>,
    max_connections: Option<toml::Value>,
    ca_file: Option<PathBuf>,
    request_timeout_seconds: Option<toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    metrics_listen: Option<String>,
    data_dir: Option<PathBuf>,
    master_key_file: Option<PathBuf>,
    controller_id: Option<String>,
    #[serde(default)]
    api_tokens: Vec<RawToken>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    header_timeout_seconds: Option<toml::Value>,
    request_timeout_seconds: Option<toml::Value>,
    max_connections: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    token: Option<String>,
    token_file: Option<PathBuf>,
    owners: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGithub {
    app_id: Option<toml::Value>,
    private_key_file: Option<PathBuf>,
    webhook_secret: Option<String>,
    webhook_secret_file: Option<PathBuf>,
    previous_webhook_secret_file: Option<PathBuf>,
    api_url: Option<String>,
    label_prefix: Option<String>,
    request_timeout_seconds: Option<toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAws {
    endpoint_url: Option<String>,
    request_timeout_seconds: Option<toml::Value>,
    default_region: Option<String>,
    platform_account_id: Option<toml::Value>,
    cloudformation_template_url: Option<String>,
    #[serde(default)]
    images: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    github_owner: String,
    github_owner_id: Option<u64>,
    aws_account_id: toml::Value,
    role_arn: Option<String>,
    external_id: Option<String>,
    external_id_file: Option<PathBuf>,
    credentials: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_lifetime_minutes: Option<toml::Value>,
    idle_grace_seconds: Option<toml::Value>,
    max_concurrent_per_account: Option<toml::Value>,
    reconcile_interval_seconds: Option<toml::Value>,
    claim_ttl_seconds: Option<toml::Value>,
    leader_ttl_seconds: Option<toml::Value>,
}

/// The keys `SPRINTERS_<SECTION>_<KEY>` may override.
pub const ENV_KEYS: &[(&str, &str)] = &[
    ("server", "listen"),
    ("server", "metrics_listen"),
    ("server", "data_dir"),
    ("server", "master_key_file"),
    ("server", "controller_id"),
    ("server", "tls_cert_file"),
    ("server", "tls_key_file"),
    ("server", "header_timeout_seconds"),
    ("server", "request_timeout_seconds"),
    ("server", "max_connections"),
    ("github", "app_id"),
    ("github", "private_key_file"),
    ("github", "webhook_secret"),
    ("github", "webhook_secret_file"),
    ("github", "previous_webhook_secret_file"),
    ("github", "api_url"),
    ("github", "label_prefix"),
    ("github", "request_timeout_seconds"),
    ("aws", "endpoint_url"),
    ("aws", "request_timeout_seconds"),
    ("aws", "default_region"),
    ("limits", "max_lifetime_minutes"),
    ("limits", "idle_grace_seconds"),
    ("limits", "max_concurrent_per_account"),
    ("limits", "reconcile_interval_seconds"),
    ("limits", "claim_ttl_seconds"),
    ("limits", "leader_ttl_seconds"),
    ("store", "url"),
    ("store", "url_file"),
    ("store", "max_connections"),
    ("store", "ca_file"),
    ("store", "request_timeout_seconds"),
];

impl Config {
    /// Reads `path`, applies the environment's overrides, validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err("", format!("cannot read {}: {e}", path.display())))?;
        let env: BTreeMap<String, String> = std::env::vars().collect();
        Self::parse(&text, &env)
    }

    /// Parses `text` with overrides from `env` (variable → value).
    pub fn parse(text: &str, env: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let mut doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| err("", format!("not valid TOML: {}", e.message())))?;
        for (section, key) in ENV_KEYS {
            let var = format!(
                "SPRINTERS_{}_{}",
                section.to_uppercase(),
                key.to_uppercase()
            );
            if let Some(value) = env.get(&var) {
                let table = doc
                    .entry((*section).to_owned())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let toml::Value::Table(table) = table {
                    table.insert((*key).to_owned(), toml::Value::String(value.clone()));
                }
            }
        }
        let raw = RawFile::deserialize(toml::Value::Table(doc))
            .map_err(|e| err("", e.message().to_string()))?;
        raw.validate()
    }
}

impl RawStore {
    fn validate(self) -> Result<StoreConfig, ConfigError> {
        let url = match (self.url, self.url_file) {
            (Some(_), Some(_)) => return Err(err("store.url", "set url or url_file, not both")),
            (Some(url), None) => SecretString::from(url),
            (None, Some(file)) => secret_file("store.url_file", &file)?,
            (None, None) => {
                for (key, set) in [
                    ("store.max_connections", self.max_connections.is_some()),
                    ("store.ca_file", self.ca_file.is_some()),
                    (
                        "store.request_timeout_seconds",
                        self.request_timeout_seconds.is_some(),
                    ),
                ] {
                    if set {
                        return Err(err(key, "only applies with store.url (a database)"));
                    }
                }
                return Ok(StoreConfig::Embedded);
            }
        };
        let text = url.expose_secret();
        if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
            // Never repeat the value: it may hold a password.
            return Err(err(
                "store.url",
                "must be a postgres:// or postgresql:// URL",
            ));
        }
        let max_connections = number("store.max_connections", self.max_connections.as_ref(), 16)?;
        if max_connections == 0 || max_connections > 1000 {
            return Err(err("store.max_connections", "between 1 and 1000"));
        }
        if let Some(file) = self.ca_file.as_ref().filter(|f| !f.is_file()) {
            return Err(err(
                "store.ca_file",
                format!("{} is not a readable file", file.display()),
            ));
        }
        let timeout = number(
            "store.request_timeout_seconds",
            self.request_timeout_seconds.as_ref(),
            sprinters_store::POSTGRES_REQUEST_TIMEOUT.as_secs(),
        )?;
        if timeout == 0 || timeout > 3600 {
            return Err(err(
                "store.request_timeout_seconds",
                "between 1 and 3600 seconds",
            ));
        }
        Ok(StoreConfig::Postgres {
            url,
            max_connections: max_connections as usize,
            ca_file: self.ca_file,
            request_timeout: std::time::Duration::from_secs(timeout),
        })
    }
}

fn secret_file(key: &str, path: &Path) -> Result<SecretString, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| err(key, format!("cannot read {}: {e}", path.display())))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(err(key, format!("{} is empty", path.display())));
    }
    Ok(SecretString::from(text.to_owned()))
}

fn number(key: &str, value: Option<&toml::Value>, default: u64) -> Result<u64, ConfigError> {
    match value {
        None => Ok(default),
        Some(toml::Value::Integer(n)) if *n >= 0 => Ok(*n as u64),
        Some(toml::Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| err(key, format!("{s:?} is not a whole number"))),
        Some(other) => Err(err(key, format!("{other} is not a whole number"))),
    }
}

impl RawFile {
    fn validate(self) -> Result<Config, ConfigError> {
        let s = self.server;
        let listen = s.listen.unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let listen: SocketAddr = listen.parse().map_err(|_| {
            err(
                "server.listen",
                format!("{listen:?} is not an address such as 0.0.0.0:8080"),
            )
        })?;
        let metrics_listen = match &s.metrics_listen {
            None => None,
            Some(raw) => Some(raw.parse::<SocketAddr>().map_err(|_| {
                err(
                    "server.metrics_listen",
                    format!("{raw:?} is not an address such as 127.0.0.1:9090"),
                )
            })?),
        };
        if metrics_listen == Some(listen) {
            return Err(err(
                "server.metrics_listen",
                "is server.listen itself; leave it out to serve /metrics there",
            ));
        }
        let data_dir = s
            .data_dir
            .ok_or_else(|| err("server.data_dir", "is required (the store's directory)"))?;
        let master_key_file = s
            .master_key_file
            .unwrap_or_else(|| data_dir.join("master.key"));
        let controller_id = s.controller_id.unwrap_or_else(|| "sprinters".to_owned());
        if controller_id.is_empty()
            || controller_id.len() > 64
            || !controller_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(err(
                "server.controller_id",
                "1 to 64 letters, digits, '-', '_' or '.'",
            ));
        }
        let mut api_tokens = Vec::new();
        for (i, t) in s.api_tokens.into_iter().enumerate() {
            let key = format!("server.api_tokens[{i}]");
            let token = match (t.token, t.token_file) {
                (Some(_), Some(_)) => return Err(err(&key, "set token or token_file, not both")),
                (Some(token), None) if token.len() >= 16 => SecretString::from(token),
                (Some(_), None) => {
                    return Err(err(
                        &format!("{key}.token"),
                        "must be at least 16 characters",
                    ));
                }
                (None, Some(file)) => secret_file(&format!("{key}.token_file"), &file)?,
                (None, None) => return Err(err(&key, "needs token_file (or token)")),
            };
            let owners = if t.owners.iter().any(|o| o == "*") {
                None
            } else if t.owners.is_empty() {
                return Err(err(
                    &format!("{key}.owners"),
                    "list the owners it may see, or \"*\"",
                ));
            } else {
                Some(
                    t.owners
                        .iter()
                        .map(|o| {
                            Owner::parse(o)
                                .map_err(|e| err(&format!("{key}.owners"), e.to_string()))
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                )
            };
            api_tokens.push(ApiToken { token, owners });
        }
        let tls = match (s.tls_cert_file, s.tls_key_file) {
            (Some(cert_file), Some(key_file)) => Some(TlsConfig {
                cert_file,
                key_file,
            }),
            (None, None) => None,
            _ => {
                return Err(err(
                    "server.tls_cert_file",
                    "set both tls_cert_file and tls_key_file, or neither",
                ));
            }
        };

        let defaults = EdgeLimits::default();
        let seconds = |key: &str, value: Option<&toml::Value>, default: std::time::Duration| {
            let n = number(key, value, default.as_secs())?;
            if n == 0 || n > 3600 {
                return Err(err(key, "between 1 and 3600 seconds"));
            }
            Ok(std::time::Duration::from_secs(n))
        };
        let edge = EdgeLimits {
            header_timeout: seconds(
                "server.header_timeout_seconds",
                s.header_timeout_seconds.as_ref(),
                defaults.header_timeout,
            )?,
            request_timeout: seconds(
                "server.request_timeout_seconds",
                s.request_timeout_seconds.as_ref(),
                defaults.request_timeout,
            )?,
            max_connections: number(
                "server.max_connections",
                s.max_connections.as_ref(),
                defaults.max_connections as u64,
            )? as usize,
        };
        if edge.max_connections == 0 {
            return Err(err("server.max_connections", "at least 1"));
        }

        let g = self.github;
        let app_id = number("github.app_id", g.app_id.as_ref(), 0)?;
        if app_id == 0 {
            return Err(err("github.app_id", "is required (the GitHub App's id)"));
        }
        let private_key_file = g.private_key_file.ok_or_else(|| {
            err(
                "github.private_key_file",
                "is required (the App's private key, PEM)",
            )
        })?;
        if !private_key_file.is_file() {
            return Err(err(
                "github.private_key_file",
                format!("{} does not exist", private_key_file.display()),
            ));
        }
        let mut webhook_secrets = vec![match (g.webhook_secret, g.webhook_secret_file) {
            (Some(s), None) if !s.is_empty() => SecretString::from(s),
            (None, Some(file)) => secret_file("github.webhook_secret_file", &file)?,
            (Some(_), Some(_)) => {
                return Err(err(
                    "github.webhook_secret",
                    "set webhook_secret or webhook_secret_file, not both",
                ));
            }
            _ => {
                return Err(err(
                    "github.webhook_secret_file",
                    "is required (or webhook_secret)",
                ));
            }
        }];
        if let Some(file) = g.previous_webhook_secret_file {
            webhook_secrets.push(secret_file("github.previous_webhook_secret_file", &file)?);
        }
        let api_url = g
            .api_url
            .unwrap_or_else(|| "https://api.github.com".to_owned());
        if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
            return Err(err(
                "github.api_url",
                format!("{api_url:?} is not an http(s) URL"),
            ));
        }
        let github_timeout = seconds(
            "github.request_timeout_seconds",
            g.request_timeout_seconds.as_ref(),
            sprinters_github::DEFAULT_REQUEST_TIMEOUT,
        )?;
        let label_prefix = g.label_prefix.unwrap_or_else(|| "sprinters".to_owned());
        if label_prefix.is_empty() || label_prefix.contains(':') {
            return Err(err("github.label_prefix", "a non-empty word without ':'"));
        }

        let a = self.aws;
        if let Some(url) = a
            .endpoint_url
            .as_ref()
            .filter(|u| !(u.starts_with("https://") || u.starts_with("http://")))
        {
            return Err(err(
                "aws.endpoint_url",
                format!("{url:?} is not an http(s) URL"),
            ));
        }
        let aws_timeout = seconds(
            "aws.request_timeout_seconds",
            a.request_timeout_seconds.as_ref(),
            std::time::Duration::from_secs(30),
        )?;
        let region = a.default_region.unwrap_or_else(|| "us-east-1".to_owned());
        let default_region =
            Region::parse(&region).map_err(|e| err("aws.default_region", e.to_string()))?;
        let platform_account_id = match &a.platform_account_id {
            None => None,
            Some(v) => {
                let id = match v {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(n) => format!("{n:012}"),
                    other => other.to_string(),
                };
                Some(
                    AccountId::parse(&id)
                        .map_err(|e| err("aws.platform_account_id", e.to_string()))?,
                )
            }
        };
        let cloudformation_template_url = match a.cloudformation_template_url {
            Some(url) if !url.starts_with("https://") => {
                return Err(err(
                    "aws.cloudformation_template_url",
                    format!("{url:?}: expected an https:// URL (the template on S3)"),
                ));
            }
            other => other,
        };
        let mut images = Vec::new();
        for (image, regions) in a.images {
            let key = format!("aws.images.\"{image}\"");
            let parsed = Image::parse(&image)
                .ok_or_else(|| err(&key, "not an image name such as ubuntu-24.04"))?;
            for (region, ami) in regions {
                let rkey = format!("{key}.{region}");
                let region = Region::parse(&region).map_err(|e| err(&rkey, e.to_string()))?;
                let valid = ami.strip_prefix("ami-").is_some_and(|h| {
                    matches!(h.len(), 8 | 17) && h.bytes().all(|b| b.is_ascii_hexdigit())
                });
                if !valid {
                    return Err(err(&rkey, format!("{ami:?} is not an AMI id")));
                }
                images.push((parsed, region, ami));
            }
        }

        let mut accounts = Vec::new();
        for (i, raw) in self.accounts.into_iter().enumerate() {
            let key = format!("accounts[{i}]");
            let github_owner = Owner::parse(&raw.github_owner)
                .map_err(|e| err(&format!("{key}.github_owner"), e.to_string()))?;
            let id = match &raw.aws_account_id {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(n) => format!("{n:012}"),
                other => other.to_string(),
            };
            let aws_account_id = AccountId::parse(&id)
                .map_err(|e| err(&format!("{key}.aws_account_id"), e.to_string()))?;
            let credentials = match (raw.role_arn, raw.credentials.as_deref()) {
                (Some(role_arn), None) => {
                    let external_id = match (raw.external_id, raw.external_id_file) {
                        (Some(id), None) => SecretString::from(id),
                        (None, Some(file)) => {
                            secret_file(&format!("{key}.external_id_file"), &file)?
                        }
                        _ => {
                            return Err(err(
                                &format!("{key}.external_id"),
                                "a role needs external_id or external_id_file (one of them)",
                            ));
                        }
                    };
                    let role = CustomerRole::new(&aws_account_id, &role_arn, external_id)
                        .map_err(|e| err(&format!("{key}.role_arn"), e.message().to_owned()))?;
                    AccountCredentials::Role(role)
                }
                (None, Some("vault")) => AccountCredentials::Vault,
                (None, Some("ambient")) => AccountCredentials::Ambient,
                (None, Some(other)) => {
                    return Err(err(
                        &format!("{key}.credentials"),
                        format!("{other:?}: expected \"vault\" or \"ambient\" (or a role_arn)"),
                    ));
                }
                (Some(_), Some(_)) => {
                    return Err(err(&key, "set role_arn or credentials, not both"));
                }
                (None, None) => {
                    return Err(err(
                        &key,
                        "needs role_arn + external_id, or credentials = \"vault\" or \"ambient\"",
                    ));
                }
            };
            // One connection per owner and account; two owners sharing an
            // account each need a role with an external id of their own, or
            // the second would assume the first one's role.
            for earlier in &accounts {
                let earlier: &AccountConfig = earlier;
                if earlier.aws_account_id != aws_account_id {
                    continue;
                }
                if earlier.github_owner.eq_ignore_case(&github_owner) {
                    return Err(err(
                        &key,
                        format!("{github_owner} already connects {aws_account_id}"),
                    ));
                }
                let shared = match (&earlier.credentials, &credentials) {
                    (AccountCredentials::Role(a), AccountCredentials::Role(b)) => {
                        a.same_external_id(b)
                    }
                    // The environment holds one key, the process's own.
                    (AccountCredentials::Ambient, _) | (_, AccountCredentials::Ambient) => true,
                    // Stored keys are kept per owner and account.
                    _ => false,
                };
                if shared {
                    return Err(err(
                        &format!("{key}.external_id"),
                        format!(
                            "{github_owner} and {} both connect {aws_account_id} with the same credentials; each owner's connection needs a role with an external id of its own, or a stored key of its own",
                            earlier.github_owner
                        ),
                    ));
                }
            }
            accounts.push(AccountConfig {
                github_owner,
                github_owner_id: raw.github_owner_id.map(OwnerId::new),
                aws_account_id,
                credentials,
            });
        }

        let l = self.limits;
        let limits = LimitsConfig {
            max_lifetime_minutes: number(
                "limits.max_lifetime_minutes",
                l.max_lifetime_minutes.as_ref(),
                375,
            )?,
            idle_grace_seconds: number(
                "limits.idle_grace_seconds",
                l.idle_grace_seconds.as_ref(),
                300,
            )?,
            max_concurrent_per_account: number(
                "limits.max_concurrent_per_account",
                l.max_concurrent_per_account.as_ref(),
                100,
            )? as usize,
            reconcile_interval_seconds: number(
                "limits.reconcile_interval_seconds",
                l.reconcile_interval_seconds.as_ref(),
                60,
            )?,
            claim_ttl_seconds: number(
                "limits.claim_ttl_seconds",
                l.claim_ttl_seconds.as_ref(),
                300,
            )?,
            leader_ttl_seconds: number(
                "limits.leader_ttl_seconds",
                l.leader_ttl_seconds.as_ref(),
                15,
            )?,
        };
        for (key, n) in [
            ("limits.claim_ttl_seconds", limits.claim_ttl_seconds),
            ("limits.leader_ttl_seconds", limits.leader_ttl_seconds),
        ] {
            if !(3..=3600).contains(&n) {
                return Err(err(key, "between 3 and 3600 seconds"));
            }
        }
        if limits.reconcile_interval_seconds == 0 {
            return Err(err(
                "limits.reconcile_interval_seconds",
                "at least 1: the reconciler is what ends orphans and finds lost jobs",
            ));
        }
        if limits.max_lifetime_minutes == 0 || limits.max_lifetime_minutes > 7 * 24 * 60 {
            return Err(err(
                "limits.max_lifetime_minutes",
                "between 1 and 10080 (a week)",
            ));
        }

        let store = self.store.validate()?;
        let policy: sprinters_core::policy::PlatformPolicy = match self.policy {
            None => Default::default(),
            Some(raw) => raw
                .try_into()
                .map_err(|e: toml::de::Error| err("policy", e.message().to_owned()))?,
        };
        policy.validate().map_err(|e| err("policy", e))?;

        Ok(Config {
            store,
            policy,
            server: ServerConfig {
                listen,
                metrics_listen,
                data_dir,
                master_key_file,
                controller_id,
                api_tokens,
                tls,
                edge,
            },
            github: GithubConfig {
                app_id,
                private_key_file,
                webhook_secrets,
                api_url,
                label_prefix,
                request_timeout: github_timeout,
            },
            aws: AwsConfig {
                endpoint_url: a.endpoint_url,
                request_timeout: aws_timeout,
                default_region,
                images,
                platform_account_id,
                cloudformation_template_url,
            },
            accounts,
            limits,
        })
    }
}
