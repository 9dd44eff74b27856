//! `sprinters keys init|rotate|add-access-key`: the store's master key and
//! the vault's access keys.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use secrecy::SecretString;
use sprinters_core::domain::{AccountId, OwnerId};
use sprinters_core::vault::{CredentialVault, StoredAccessKey};
use sprinters_store::{MasterKey, SqliteJobStore};

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
    Rotate {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Store an AWS access key for one owner's connection to an account,
    /// encrypted. The secret access key is read from standard input, never
    /// from an argument.
    AddAccessKey {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
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
        KeysCommand::Rotate { data_dir } => rotate(&data_dir),
        KeysCommand::AddAccessKey {
            data_dir,
            owner_id,
            account,
            access_key_id,
        } => add_access_key(&data_dir, OwnerId::new(owner_id), &account, access_key_id),
    }
}

fn init(dir: &Path) -> ExitCode {
    if let Err(e) = sprinters_examples::data_dir::create(dir) {
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
    let key = MasterKey::from_file(&dir.join(MASTER_KEY_FILE)).map_err(|e| {
        format!(
            "{e} (create one with `sprinters keys init --data-dir {}`)",
            dir.display()
        )
    })?;
    SqliteJobStore::open_with_key(dir, &key).map_err(|e| e.to_string())
}

fn rotate(dir: &Path) -> ExitCode {
    let store = match open_store(dir) {
        Ok(store) => store,
        Err(e) => return fail(e),
    };
    let current = dir.join(MASTER_KEY_FILE);
    let next = dir.join("master.key.new");
    let old = dir.join("master.key.old");
    if old.exists() {
        return fail(format!(
            "{} exists from an earlier rotation; delete it (after checking backups) first",
            old.display()
        ));
    }
    let key = match MasterKey::create_file(&next) {
        Ok(key) => key,
        Err(e) => return fail(e.to_string()),
    };
    let rotated = runtime().and_then(|rt| {
        rt.block_on(store.rotate_master_key(&key))
            .map_err(|e| e.to_string())
    });
    if let Err(e) = rotated {
        let _ = std::fs::remove_file(&next);
        return fail(e.to_string());
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

fn add_access_key(dir: &Path, owner: OwnerId, account: &str, access_key_id: String) -> ExitCode {
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
    let store = match open_store(dir) {
        Ok(store) => store,
        Err(e) => return fail(e),
    };
    let key = StoredAccessKey {
        access_key_id,
        secret_access_key: secret,
    };
    let stored = runtime().and_then(|rt| {
        rt.block_on(store.put_access_key(owner, account.clone(), key))
            .map_err(|e| e.to_string())
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
