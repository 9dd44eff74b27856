//! The key ring in the database file: the master-key check and the index
//! key in `keyring`, one row per data key in `data_keys`, every key wrapped
//! by the master key exactly as in the PostgreSQL store.
//!
//! Every data key is unwrapped once, at open, into a map that readers
//! share; only the writer thread adds or destroys keys, and it changes the
//! map under the same transaction it writes the rows in (undone if that
//! transaction rolls back).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rusqlite::{Connection, OptionalExtension, params};
use sprinters_core::domain::AccountId;
use sprinters_core::{Error, Result};
use zeroize::Zeroizing;

use super::sql_error;
use crate::crypto::Cipher;
use crate::keyring::{CHECK, OpaqueIds, decode, encode, random_key, unwrap_data_key};
use crate::keys::MasterKey;

/// The keys readers and the writer share. `Debug` shows nothing of them.
pub(crate) struct Keys {
    master: RwLock<Arc<Cipher>>,
    index_key: Zeroizing<[u8; 32]>,
    ids: OpaqueIds,
    /// Every data key by id; `None` once destroyed (crypto-shredded).
    ciphers: RwLock<HashMap<u32, Option<Arc<Cipher>>>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys([REDACTED])")
    }
}

fn wrong_key() -> Error {
    Error::config(
        "the master key does not open the store's key ring (a different key, or a damaged row); nothing was changed",
    )
}

impl Keys {
    /// Reads the key ring, creating it on first use (in `conn`'s open
    /// transaction). A wrong master key is refused before anything is
    /// written.
    pub(crate) fn open(conn: &Connection, master: &MasterKey) -> Result<Self> {
        let cipher = Cipher::new(master.bytes());
        let row: Option<(String, String)> = conn
            .query_row(
                "SELECT check_sealed, index_key_sealed FROM keyring WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| sql_error("reading the key ring", e))?;
        let index_key = match row {
            None => {
                let index_key = random_key();
                let (n, ct) = cipher.seal(b"check", CHECK);
                let (n2, ct2) = cipher.seal(b"index key", index_key.as_ref());
                conn.execute(
                    "INSERT INTO keyring (id, check_sealed, index_key_sealed) VALUES (1, ?1, ?2)",
                    params![encode(&n, &ct), encode(&n2, &ct2)],
                )
                .map_err(|e| sql_error("creating the key ring", e))?;
                index_key
            }
            Some((check, index)) => {
                let (n, ct) = decode(&check).ok_or_else(wrong_key)?;
                if cipher.open(&n, b"check", &ct).ok().as_deref() != Some(CHECK) {
                    return Err(wrong_key());
                }
                let (n, ct) = decode(&index).ok_or_else(wrong_key)?;
                let raw = Zeroizing::new(
                    cipher
                        .open(&n, b"index key", &ct)
                        .map_err(|_| wrong_key())?,
                );
                Zeroizing::new(raw.as_slice().try_into().map_err(|_| wrong_key())?)
            }
        };
        let mut ciphers = HashMap::new();
        let mut statement = conn
            .prepare("SELECT id, scope, wrapped FROM data_keys")
            .map_err(|e| sql_error("reading the data keys", e))?;
        let rows = statement
            .query_map([], |r| {
                Ok((
                    r.get::<_, u32>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })
            .map_err(|e| sql_error("reading the data keys", e))?;
        for row in rows {
            let (id, scope, wrapped) = row.map_err(|e| sql_error("reading the data keys", e))?;
            let key = match wrapped {
                None => None,
                Some(w) => Some(Arc::new(unwrap_data_key(&cipher, id, &scope, &w)?)),
            };
            ciphers.insert(id, key);
        }
        Ok(Self {
            master: RwLock::new(Arc::new(cipher)),
            ids: OpaqueIds::new(index_key.clone()),
            index_key,
            ciphers: RwLock::new(ciphers),
        })
    }

    /// A keyed hash naming a record or a filter value without saying what.
    pub(crate) fn opaque(&self, domain: &str, data: &[u8]) -> [u8; 16] {
        self.ids.id(domain, data)
    }

    /// The scope of an account's records (a keyed hash), or the system's.
    pub(crate) fn scope_of(&self, account: Option<&AccountId>) -> String {
        self.ids.scope(account)
    }

    pub(crate) fn master(&self) -> Arc<Cipher> {
        self.master
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_master(&self, cipher: Arc<Cipher>) {
        *self.master.write().unwrap_or_else(|e| e.into_inner()) = cipher;
    }

    /// Data key `id`: `Some(None)` when destroyed, `None` when unknown.
    pub(crate) fn cipher(&self, id: u32) -> Option<Option<Arc<Cipher>>> {
        self.ciphers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    pub(crate) fn insert(&self, id: u32, cipher: Option<Arc<Cipher>>) {
        self.ciphers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, cipher);
    }

    pub(crate) fn forget(&self, id: u32) {
        self.ciphers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Opens a body sealed under data key `key_id`; `None` when that key
    /// was destroyed (the record is shredded).
    pub(crate) fn open_body(
        &self,
        key_id: u32,
        aad: &[u8],
        body: &[u8],
        what: &str,
    ) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let unauthentic = || Error::integrity(format!("{what} fails authentication"));
        let cipher = match self.cipher(key_id) {
            None => return Err(unauthentic()),
            Some(None) => return Ok(None),
            Some(Some(c)) => c,
        };
        cipher
            .open_body(aad, body)
            .map(|p| Some(Zeroizing::new(p)))
            .map_err(|_| unauthentic())
    }

    /// A data key row's raw key, unwrapped by the current master key.
    pub(crate) fn unwrap_raw(
        &self,
        id: u32,
        scope: &str,
        wrapped: &str,
    ) -> Result<Zeroizing<Vec<u8>>> {
        crate::keyring::unwrap_raw(&self.master(), id, scope, wrapped)
    }

    /// The index key wrapped by `master`, as `keyring` keeps it.
    pub(crate) fn index_key_sealed_by(&self, master: &Cipher) -> String {
        let (n, ct) = master.seal(b"index key", self.index_key.as_ref());
        encode(&n, &ct)
    }
}
