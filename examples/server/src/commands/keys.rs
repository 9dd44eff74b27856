//! `sprinters keys init|rotate|add-access-key`: the store's master key and
//! the vault's access keys.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use secrecy::SecretString;
use sprinters_core::domain::{AccountId, OwnerId};
use sprinters_core::engine::LEADER_LEASE;
use sprinters_core::ports::{AcquireLease, JobStore, ReleaseLease};
use sprinters_core::vault::{CredentialVault, StoredAccessKey};
use sprinters_server::config::{Config, StoreConfig};
use sprinters_store::{FileKeyProvider, MasterKey, PostgresJobStore, SqliteJobStore};

use super::{fail, runtime, usage_error};

/// The master key's file name in the data directory.
pub(crate) const MASTER_KEY_FILE: &str = "master.key";

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Create the master key file DIR/master.key (mode 0600); refuses to
    /// overwrite one.
    Init {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Replace the master key: every data key is re-wrapped under a new
    /// one, the old file is kept as master.key.old until you delete it.
    /// With --data-keys, start new data keys instead (new records use
    /// them; older ones stay readable).
    Rotate {
        /// The data directory of the embedded store.
        #[arg(long, required_unless_present = "config", conflicts_with = "config")]
        data_dir: Option<PathBuf>,
        /// The `serve` configuration instead: its store (a PostgreSQL
        /// database, while the replicas run for --data-keys) and its
        /// master key file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Start new data keys instead of replacing the master key.
        #[arg(long)]
        data_keys: bool,
    },
    /// Store an AWS access key for one owner's connection to an account,
    /// encrypted. The secret access key is read from standard input, never
    /// from an argument.
    AddAccessKey {
        /// The data directory of the embedded store.
        #[arg(long, required_unless_present = "config", conflicts_with = "config")]
        data_dir: Option<PathBuf>,
        /// The `serve` configuration instead: its store (a PostgreSQL
        /// database, while the replicas run) and its master key file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The owner's numeric GitHub account id (its `github_owner_id`):
        /// the key serves that owner's jobs only.
        #[arg(long)]
        owner_id: u64,
        /// The 12-digit AWS account id.
        #[arg(long)]
        account: String,
        /// The access key id (not a secret on its own).
        #[arg(long)]
        access_key_id: String,
    },
}

pub(crate) fn run(command: KeysCommand) -> ExitCode {
    match command {
        KeysCommand::Init { data_dir } => init(&data_dir),
        KeysCommand::Rotate {
            data_dir,
            config,
            data_keys,
        } => match Target::of(data_dir, config) {
            Ok(target) => rotate(&target, data_keys),
            Err(e) => fail(e),
        },
        KeysCommand::AddAccessKey {
            data_dir,
            config,
            owner_id,
            account,
            access_key_id,
        } => match Target::of(data_dir, config) {
            Ok(target) => add_access_key(&target, OwnerId::new(owner_id), &account, access_key_id),
            Err(e) => fail(e),
        },
    }
}

fn init(dir: &Path) -> ExitCode {
    if let Err(e) = sprinters_server::data_dir::create(dir) {
        return fail(e);
    }
    let path = dir.join(MASTER_KEY_FILE);
    match MasterKey::create_file(&path) {
        Ok(_) => {
            println!(
                "created {} (mode 0600); back it up: without it the store cannot be read",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e.to_string()),
    }
}

/// The store in `dir`, with its master key file.
pub(crate) fn open_store(dir: &Path) -> Result<SqliteJobStore, String> {
    open_embedded(dir, &dir.join(MASTER_KEY_FILE))
}

/// The store in `dir`, opened with the master key in `key_file`.
fn open_embedded(dir: &Path, key_file: &Path) -> Result<SqliteJobStore, String> {
    let key = MasterKey::from_file(key_file).map_err(|e| {
        format!(
            "{e} (create one with `sprinters keys init --data-dir {}`)",
            dir.display()
        )
    })?;
    SqliteJobStore::open_with_key(dir, &key).map_err(|e| e.to_string())
}

/// The store a command works on, with its master key file: the embedded
/// one in a data directory, or the database a `serve` configuration names.
enum Target {
    Embedded { dir: PathBuf, key_file: PathBuf },
    Database(Box<Config>),
}

impl Target {
    fn of(data_dir: Option<PathBuf>, config: Option<PathBuf>) -> Result<Self, String> {
        let config = match (data_dir, config) {
            (Some(dir), _) => {
                return Ok(Self::Embedded {
                    key_file: dir.join(MASTER_KEY_FILE),
                    dir,
                });
            }
            (None, Some(path)) => {
                Config::load(&path).map_err(|e| format!("{}: {e}", path.display()))?
            }
            (None, None) => return Err("give --data-dir or --config".to_owned()),
        };
        Ok(match config.store {
            StoreConfig::Embedded => Self::Embedded {
                dir: config.server.data_dir.clone(),
                key_file: config.server.master_key_file.clone(),
            },
            StoreConfig::Postgres { .. } => Self::Database(Box::new(config)),
        })
    }

    fn key_file(&self) -> &Path {
        match self {
            Self::Embedded { key_file, .. } => key_file,
            Self::Database(c) => &c.server.master_key_file,
        }
    }
}

/// The database a configuration names, opened with its master key file.
async fn open_database(config: &Config) -> Result<PostgresJobStore, String> {
    let StoreConfig::Postgres {
        url,
        max_connections,
        ca_file,
        request_timeout,
    } = &config.store
    else {
        return Err("the configuration names no database".to_owned());
    };
    let mut builder = PostgresJobStore::builder(url.clone())
        .max_connections((*max_connections).min(2))
        .request_timeout(*request_timeout);
    if let Some(file) = ca_file {
        builder = builder.ca_file(file);
    }
    builder
        .connect(&FileKeyProvider::new(&config.server.master_key_file))
        .await
        .map_err(|e| format!("store (PostgreSQL): {e}"))
}

fn rotate(target: &Target, data_keys: bool) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    if data_keys {
        let rotated = match target {
            Target::Embedded { dir, key_file } => open_embedded(dir, key_file).and_then(|store| {
                rt.block_on(store.rotate_data_keys())
                    .map_err(|e| e.to_string())
            }),
            Target::Database(config) => rt.block_on(async {
                let store = open_database(config).await?;
                store.rotate_data_keys().await.map_err(|e| e.to_string())
            }),
        };
        return match rotated {
            Ok(n) => {
                println!("rotated: {n} data keys retired; new records use new keys");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        };
    }
    let current = target.key_file().to_path_buf();
    let next = current.with_extension("key.new");
    let old = current.with_extension("key.old");
    if old.exists() {
        return fail(format!(
            "{} exists from an earlier rotation; delete it (after checking backups) first",
            old.display()
        ));
    }
    let rotated = match target {
        Target::Embedded { dir, key_file } => open_embedded(dir, key_file).and_then(|store| {
            let key = MasterKey::create_file(&next).map_err(|e| e.to_string())?;
            rt.block_on(store.rotate_master_key(&key))
                .map_err(|e| e.to_string())
        }),
        Target::Database(config) => rt.block_on(rotate_database_master(config, &next)),
    };
    if let Err(e) = rotated {
        let _ = std::fs::remove_file(&next);
        return fail(e);
    }
    // The key ring is rewrapped: now swap the files.
    let swapped = std::fs::rename(&current, &old).and_then(|_| std::fs::rename(&next, &current));
    match swapped {
        Ok(()) => {
            println!(
                "rotated: {} is the new master key; the old one is {} (delete it once backups no longer need it)",
                current.display(),
                old.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!(
            "the store uses the new key in {} but the files could not be swapped: {e}",
            next.display()
        )),
    }
}

/// Re-wraps a shared database's keys under a new master key written to
/// `next`. Replicas hold the old key: while one runs (one of them leads
/// the reconciler within its lease's time) the rotation is refused, and the
/// leader's lease is held meanwhile so that none starts leading.
async fn rotate_database_master(config: &Config, next: &Path) -> Result<(), String> {
    let store = open_database(config).await?;
    let me = format!("sprinters-keys-rotate-{}", std::process::id());
    let now = sprinters_core::time::Timestamp::from_system_time(std::time::SystemTime::now());
    let grant = store
        .acquire_lease(AcquireLease::new(
            LEADER_LEASE,
            me.clone(),
            now,
            std::time::Duration::from_secs(300),
        ))
        .await
        .map_err(|e| e.to_string())?;
    if !grant.acquired {
        return Err(format!(
            "replica {} is running (it leads the reconciler): stop every replica first, since they hold the old master key",
            grant.holder
        ));
    }
    let rotated = async {
        let key = MasterKey::create_file(next).map_err(|e| e.to_string())?;
        store
            .rotate_master_key(&key)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    .await;
    let _ = store
        .release_lease(ReleaseLease::new(LEADER_LEASE, me))
        .await;
    rotated
}

fn add_access_key(
    target: &Target,
    owner: OwnerId,
    account: &str,
    access_key_id: String,
) -> ExitCode {
    let account = match AccountId::parse(account) {
        Ok(a) => a,
        Err(e) => return usage_error(format!("--account: {e}")),
    };
    if access_key_id.len() < 16 || !access_key_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return usage_error("--access-key-id: expected an AWS access key id such as AKIA...");
    }
    let mut secret = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut secret) {
        return fail(format!(
            "reading the secret access key from standard input: {e}"
        ));
    }
    let secret = SecretString::from(secret.trim().to_owned());
    if secrecy::ExposeSecret::expose_secret(&secret).is_empty() {
        return fail("no secret access key on standard input".to_owned());
    }
    let key = StoredAccessKey {
        access_key_id,
        secret_access_key: secret,
    };
    let stored = runtime().and_then(|rt| match target {
        Target::Embedded { dir, key_file } => open_embedded(dir, key_file).and_then(|store| {
            rt.block_on(store.put_access_key(owner, account.clone(), key))
                .map_err(|e| e.to_string())
        }),
        Target::Database(config) => rt.block_on(async {
            let store = open_database(config).await?;
            store
                .put_access_key(owner, account.clone(), key)
                .await
                .map_err(|e| e.to_string())
        }),
    });
    match stored {
        Ok(()) => {
            println!(
                "stored the access key of owner {owner} for account {account}, encrypted under the account's data key"
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
