//! The key ring in the database: the master-key check and the index key in
//! `sprinters_keyring`, one row per data key in `sprinters_data_keys`, every
//! key wrapped by the master key exactly as in the SQLite store's
//! `keyring` and `data_keys` tables.
//!
//! Replicas share the data keys. Seals are counted by reserving blocks in
//! the key's row (`reserved`), so that, summed over replicas and crashes,
//! a key is never used past its limit; a replica's unused rest of a block
//! is simply lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sprinters_core::{Error, Result};
use zeroize::Zeroizing;

use super::Db;
use crate::crypto::Cipher;
use crate::keyring::{
    BLOCK, CHECK, OpaqueIds, SEALS_PER_KEY, decode, encode, random_key, unwrap_data_key,
    unwrap_raw, wrap_aad,
};
use crate::keys::MasterKey;
use deadpool_postgres::Client;

#[derive(Default)]
struct Known {
    /// Every data key seen, by id; `None` once destroyed.
    ciphers: HashMap<u32, Option<Arc<Cipher>>>,
    /// Per scope: the key new records use and the seals left of this
    /// replica's block.
    sealing: HashMap<String, (u32, u64)>,
}

/// The key ring of one replica: the master cipher, the index key and the
/// data keys it has used so far. `Debug` shows nothing of the keys.
pub(crate) struct DbKeys {
    master: Cipher,
    ids: OpaqueIds,
    known: Mutex<Known>,
    /// The index key, to wrap it under a new master key.
    index_key: Zeroizing<[u8; 32]>,
    /// The key ring's epoch as last read, and when: a change means another
    /// replica destroyed or rotated data keys.
    epoch: Mutex<(i64, Option<Instant>)>,
    /// How often the epoch is read before a seal.
    refresh: Duration,
}

impl std::fmt::Debug for DbKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DbKeys([REDACTED])")
    }
}

impl DbKeys {
    /// Reads the key ring, creating it on first use. A wrong master key is
    /// refused before anything is written.
    pub(crate) async fn open(db: &Db, master: &MasterKey, refresh: Duration) -> Result<Self> {
        let cipher = Cipher::new(master.bytes());
        let index_key = random_key();
        let (n, ct) = cipher.seal(b"check", CHECK);
        let (n2, ct2) = cipher.seal(b"index key", index_key.as_ref());
        let client = &db.client().await?;
        // Two replicas creating it at once: one insert wins, both read it.
        db.execute(
            client,
            "INSERT INTO sprinters_keyring (id, check_sealed, index_key_sealed) \
             VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING",
            &[&encode(&n, &ct), &encode(&n2, &ct2)],
        )
        .await?;
        let row = db
            .query_one(
                client,
                "SELECT check_sealed, index_key_sealed FROM sprinters_keyring WHERE id = 1",
                &[],
            )
            .await?;
        let wrong_key = || {
            Error::config(
                "the master key does not open the database's key ring (a different key, or a damaged row); nothing was changed",
            )
        };
        let (n, ct) = decode(row.get(0)).ok_or_else(wrong_key)?;
        if cipher.open(&n, b"check", &ct).ok().as_deref() != Some(CHECK) {
            return Err(wrong_key());
        }
        let (n, ct) = decode(row.get(1)).ok_or_else(wrong_key)?;
        let raw = Zeroizing::new(
            cipher
                .open(&n, b"index key", &ct)
                .map_err(|_| wrong_key())?,
        );
        let index_key: Zeroizing<[u8; 32]> =
            Zeroizing::new(raw.as_slice().try_into().map_err(|_| wrong_key())?);
        Ok(Self {
            master: cipher,
            ids: OpaqueIds::new(index_key.clone()),
            index_key,
            known: Mutex::new(Known::default()),
            epoch: Mutex::new((0, None)),
            refresh,
        })
    }

    /// Drops the cached keys when another replica has destroyed or rotated
    /// data keys since the last look (read at most once per `refresh`), so
    /// that no seal uses a destroyed key, nor an old one after a rotation,
    /// for longer than that.
    async fn follow_epoch(&self, db: &Db, client: &Client) -> Result<()> {
        let due = {
            let (_, checked) = *self.epoch.lock().unwrap_or_else(|e| e.into_inner());
            checked.is_none_or(|t| t.elapsed() >= self.refresh)
        };
        if !due {
            return Ok(());
        }
        let row = db
            .query_one(
                client,
                "SELECT epoch, check_sealed FROM sprinters_keyring WHERE id = 1",
                &[],
            )
            .await?;
        let now: i64 = row.get(0);
        // The master key rotated under a running replica: it must not wrap
        // a new data key (nobody else could open it) nor go on sealing.
        let opens = decode(row.get(1)).is_some_and(|(n, ct)| {
            self.master.open(&n, b"check", &ct).ok().as_deref() == Some(CHECK)
        });
        if !opens {
            return Err(Error::config(
                "the master key was rotated by another process: restart this replica with the new key",
            ));
        }
        let mut epoch = self.epoch.lock().unwrap_or_else(|e| e.into_inner());
        if epoch.1.is_some() && epoch.0 != now {
            let mut known = self.known();
            known.sealing.clear();
            known.ciphers.clear();
        }
        *epoch = (now, Some(Instant::now()));
        Ok(())
    }

    /// Tells every replica to drop its cached keys (within its refresh).
    pub(crate) async fn bump_epoch(db: &Db, client: &Client) -> Result<()> {
        db.execute(
            client,
            "UPDATE sprinters_keyring SET epoch = epoch + 1 WHERE id = 1",
            &[],
        )
        .await?;
        Ok(())
    }

    /// Starts new data keys for every scope: new records use them, older
    /// ones stay readable under theirs. Every replica follows within its
    /// refresh.
    pub(crate) async fn rotate_all(&self, db: &Db) -> Result<u64> {
        let client = &db.client().await?;
        let n = db
            .execute(
                client,
                "UPDATE sprinters_data_keys SET active = false WHERE active",
                &[],
            )
            .await?;
        Self::bump_epoch(db, client).await?;
        self.known().sealing.clear();
        Ok(n)
    }

    /// Re-wraps the key ring and every live data key under `new`, in one
    /// transaction. Replicas still holding the old master key keep their
    /// cached keys but cannot load others: the master key is rotated with
    /// every replica stopped (the command checks).
    pub(crate) async fn rewrap(&self, db: &Db, new: &MasterKey) -> Result<u64> {
        let new = Cipher::new(new.bytes());
        let mut client = db.client().await?;
        let pg = |doing: &'static str| move |e: tokio_postgres::Error| super::pg_error(doing, e);
        // One transaction under one deadline: cut short (a timeout, a
        // dropped future), the transaction's drop rolls it back before the
        // connection serves anyone else.
        let work = async {
            let tx = client
                .transaction()
                .await
                .map_err(pg("starting the rotation"))?;
            let rows = tx
                .query(
                    "SELECT id, scope, wrapped FROM sprinters_data_keys \
                     WHERE wrapped IS NOT NULL FOR UPDATE",
                    &[],
                )
                .await
                .map_err(pg("reading the data keys"))?;
            for row in &rows {
                let id: i32 = row.get(0);
                let scope: String = row.get(1);
                let wrapped: String = row.get(2);
                let raw = unwrap_raw(&self.master, id as u32, &scope, &wrapped)?;
                let (n, ct) = new.seal(&wrap_aad(id as u32, &scope), raw.as_ref());
                tx.execute(
                    "UPDATE sprinters_data_keys SET wrapped = $2 WHERE id = $1",
                    &[&id, &encode(&n, &ct)],
                )
                .await
                .map_err(pg("re-wrapping a data key"))?;
            }
            let (n, ct) = new.seal(b"check", CHECK);
            let (n2, ct2) = new.seal(b"index key", self.index_key.as_ref());
            tx.execute(
                "UPDATE sprinters_keyring SET check_sealed = $1, index_key_sealed = $2, \
                 epoch = epoch + 1 WHERE id = 1",
                &[&encode(&n, &ct), &encode(&n2, &ct2)],
            )
            .await
            .map_err(pg("re-wrapping the key ring"))?;
            tx.commit().await.map_err(pg("committing the rotation"))?;
            Ok::<u64, Error>(rows.len() as u64)
        };
        tokio::time::timeout(db.timeout, work)
            .await
            .map_err(|_| {
                Error::unavailable(format!(
                    "rotating the master key: the database did not answer within {} s; nothing was changed",
                    db.timeout.as_secs()
                ))
            })?
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A keyed hash naming a record or a filter value without saying what.
    pub(crate) fn opaque(&self, domain: &str, data: &[u8]) -> Vec<u8> {
        self.ids.id(domain, data).to_vec()
    }

    /// The scope of an account's records (a keyed hash), or the system's.
    pub(crate) fn scope_of(&self, account: Option<&sprinters_core::domain::AccountId>) -> String {
        self.ids.scope(account)
    }

    /// Seals `plaintext` bound to `aad` under the current key of `scope`:
    /// the key's id and `nonce || ciphertext`.
    pub(crate) async fn seal(
        &self,
        db: &Db,
        client: &Client,
        scope: &str,
        aad: impl Fn(u32) -> Vec<u8>,
        plaintext: &[u8],
    ) -> Result<(u32, Vec<u8>)> {
        self.follow_epoch(db, client).await?;
        let (id, cipher) = self.sealing_key(db, client, scope).await?;
        Ok((id, cipher.seal_body(&aad(id), plaintext)))
    }

    /// Opens a body sealed by [`DbKeys::seal`]; `None` when its key was
    /// destroyed (the record is shredded).
    pub(crate) async fn open_body(
        &self,
        db: &Db,
        client: &Client,
        key_id: u32,
        aad: &[u8],
        body: &[u8],
        what: &str,
    ) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let Some(cipher) = self.cipher(db, client, key_id).await? else {
            return Ok(None);
        };
        cipher
            .open_body(aad, body)
            .map(|p| Some(Zeroizing::new(p)))
            .map_err(|_| Error::integrity(format!("{what} fails authentication")))
    }

    async fn sealing_key(
        &self,
        db: &Db,
        client: &Client,
        scope: &str,
    ) -> Result<(u32, Arc<Cipher>)> {
        {
            let mut known = self.known();
            let current = known.sealing.get(scope).copied();
            if let Some((id, left)) = current
                && left > 0
                && let Some(Some(cipher)) = known.ciphers.get(&id).cloned()
            {
                known.sealing.insert(scope.to_owned(), (id, left - 1));
                return Ok((id, cipher));
            }
        }
        self.reserve(db, client, scope).await
    }

    /// Reserves a block of seals of the scope's active key, rotating a key
    /// at its limit and creating the first one; replicas racing here agree
    /// through the one-active-key-per-scope unique index.
    async fn reserve(&self, db: &Db, client: &Client, scope: &str) -> Result<(u32, Arc<Cipher>)> {
        for _ in 0..16 {
            let active = db
                .query_opt(
                    client,
                    "SELECT id FROM sprinters_data_keys WHERE scope = $1 AND active",
                    &[&scope],
                )
                .await?;
            if let Some(row) = active {
                let id: i32 = row.get(0);
                let reserved = db
                    .query_opt(
                        client,
                        "UPDATE sprinters_data_keys SET reserved = reserved + $2 \
                         WHERE id = $1 AND active RETURNING reserved",
                        &[&id, &(BLOCK as i64)],
                    )
                    .await?;
                let Some(reserved) = reserved.map(|r| r.get::<_, i64>(0)) else {
                    continue; // rotated meanwhile
                };
                if reserved as u64 > SEALS_PER_KEY {
                    db.execute(
                        client,
                        "UPDATE sprinters_data_keys SET active = false WHERE id = $1",
                        &[&id],
                    )
                    .await?;
                    continue;
                }
                let id = id as u32;
                let Some(cipher) = self.cipher(db, client, id).await? else {
                    continue;
                };
                self.known()
                    .sealing
                    .insert(scope.to_owned(), (id, BLOCK - 1));
                return Ok((id, cipher));
            }
            let id: i64 = db
                .query_one(client, "SELECT nextval('sprinters_data_key_ids')", &[])
                .await?
                .get(0);
            let id =
                u32::try_from(id).map_err(|_| Error::integrity("data key ids are exhausted"))?;
            let raw = random_key();
            let (n, ct) = self.master.seal(&wrap_aad(id, scope), raw.as_ref());
            let inserted = db
                .execute(
                    client,
                    "INSERT INTO sprinters_data_keys (id, scope, wrapped, reserved, active) \
                     VALUES ($1, $2, $3, $4, true) ON CONFLICT (scope) WHERE active DO NOTHING",
                    &[&(id as i32), &scope, &encode(&n, &ct), &(BLOCK as i64)],
                )
                .await?;
            if inserted == 1 {
                let cipher = Arc::new(Cipher::new(&raw));
                let mut known = self.known();
                known.ciphers.insert(id, Some(cipher.clone()));
                known.sealing.insert(scope.to_owned(), (id, BLOCK - 1));
                return Ok((id, cipher));
            }
        }
        Err(Error::unavailable(
            "could not settle on a data key: too many replicas rotating at once",
        ))
    }

    /// A data key by id, loaded once. It takes the caller's connection:
    /// taking a second one from the pool while holding the first would
    /// deadlock a pool that every task holds one of.
    async fn cipher(&self, db: &Db, client: &Client, id: u32) -> Result<Option<Arc<Cipher>>> {
        if let Some(known) = self.known().ciphers.get(&id) {
            return Ok(known.clone());
        }
        let row = db
            .query_opt(
                client,
                "SELECT scope, wrapped FROM sprinters_data_keys WHERE id = $1",
                &[&(id as i32)],
            )
            .await?
            .ok_or_else(|| Error::integrity(format!("no data key {id} in the key ring")))?;
        let scope: String = row.get(0);
        let wrapped: Option<String> = row.get(1);
        let cipher = match wrapped {
            None => None,
            Some(w) => Some(Arc::new(unwrap_data_key(&self.master, id, &scope, &w)?)),
        };
        self.known().ciphers.insert(id, cipher.clone());
        Ok(cipher)
    }

    /// Destroys every data key of `scope` (crypto-shredding); returns how
    /// many. Other replicas drop them within their refresh (the epoch);
    /// the records themselves are deleted by the caller.
    pub(crate) async fn destroy(&self, db: &Db, scope: &str) -> Result<u64> {
        let client = &db.client().await?;
        let n = db
            .execute(
                client,
                "UPDATE sprinters_data_keys SET wrapped = NULL, active = false \
                 WHERE scope = $1 AND wrapped IS NOT NULL",
                &[&scope],
            )
            .await?;
        Self::bump_epoch(db, client).await?;
        let mut known = self.known();
        known.sealing.remove(scope);
        known.ciphers.clear();
        Ok(n)
    }
}
