//! The key ring: one data key (or several, after rotations) per account,
//! each wrapped by the master key, kept in `keyring.json`.
//!
//! Nothing in the file is readable without the master key: scopes are
//! keyed hashes of account ids, data keys are AES-256-GCM ciphertexts
//! bound to their id and scope.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aes_gcm::aead::OsRng;
use aes_gcm::aead::rand_core::RngCore;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sprinters_core::domain::AccountId;
use sprinters_core::{Error, Result};
use zeroize::Zeroizing;

use crate::crypto::{Cipher, NONCE_LEN};
use crate::frame::{self, Kind};
use crate::fsio;
use crate::keys::MasterKey;

/// Seals are counted in blocks reserved ahead in the file, so that a crash
/// can only over-count.
const RESERVE_BLOCK: u64 = 1 << 20;
/// A data key is retired after this many seals: far below the 2^32 that
/// NIST allows for random 96-bit nonces.
pub(crate) const SEALS_PER_KEY: u64 = if cfg!(test) { 5 } else { 1 << 30 };
pub(crate) const CHECK: &[u8] = b"sprinters key ring v1";

/// Seals the database stores reserve from a key's row at a time, so that
/// summed over replicas and crashes a key is never used past its limit.
pub(crate) const BLOCK: u64 = if SEALS_PER_KEY < RESERVE_BLOCK {
    SEALS_PER_KEY
} else {
    RESERVE_BLOCK
};
const FILE: &str = "keyring.json";

/// Records of no account (a rejected job, a delivery id) use this scope.
pub(crate) const SYSTEM_SCOPE: &str = "system";

#[derive(Serialize, Deserialize)]
struct KeyRingFile {
    format: u32,
    check: String,
    index_key: String,
    next_id: u32,
    keys: Vec<KeyFileEntry>,
}

#[derive(Serialize, Deserialize, Clone)]
struct KeyFileEntry {
    id: u32,
    scope: String,
    /// `None` once destroyed (crypto-shredded).
    wrapped: Option<String>,
    reserved: u64,
    active: bool,
}

#[derive(Debug)]
struct DataKey {
    scope: String,
    cipher: Option<Cipher>,
    wrapped: Option<String>,
    used: u64,
    reserved: u64,
    active: bool,
}

/// Why a record could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenFailure {
    /// Its data key was destroyed: the record is shredded.
    Shredded,
    /// Unknown key, or authentication failed: tampering or corruption.
    Unauthentic,
}

/// The loaded key ring. `Debug` shows key ids and scopes, never keys.
pub(crate) struct KeyRing {
    path: PathBuf,
    master: Cipher,
    index_key: Zeroizing<[u8; 32]>,
    keys: BTreeMap<u32, DataKey>,
    next_id: u32,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("path", &self.path)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

pub(crate) fn wrap_aad(id: u32, scope: &str) -> Vec<u8> {
    let mut aad = b"sprinters data key ".to_vec();
    aad.extend_from_slice(&id.to_le_bytes());
    aad.extend_from_slice(scope.as_bytes());
    aad
}

pub(crate) fn encode(nonce: &[u8; NONCE_LEN], ct: &[u8]) -> String {
    let mut bytes = nonce.to_vec();
    bytes.extend_from_slice(ct);
    STANDARD.encode(bytes)
}

pub(crate) fn decode(text: &str) -> Option<([u8; NONCE_LEN], Vec<u8>)> {
    let bytes = STANDARD.decode(text).ok()?;
    if bytes.len() < NONCE_LEN {
        return None;
    }
    let (nonce, ct) = bytes.split_at(NONCE_LEN);
    Some((nonce.try_into().ok()?, ct.to_vec()))
}

/// The raw bytes of data key `id` of `scope`, unwrapped by `master` (to
/// wrap them again under another master key).
pub(crate) fn unwrap_raw(
    master: &Cipher,
    id: u32,
    scope: &str,
    wrapped: &str,
) -> Result<Zeroizing<Vec<u8>>> {
    let bad = || Error::integrity(format!("data key {id} fails authentication"));
    let (n, ct) = decode(wrapped).ok_or_else(bad)?;
    Ok(Zeroizing::new(
        master
            .open(&n, &wrap_aad(id, scope), &ct)
            .map_err(|_| bad())?,
    ))
}

/// A data key unwrapped by the master key, bound to its id and scope.
pub(crate) fn unwrap_data_key(
    master: &Cipher,
    id: u32,
    scope: &str,
    wrapped: &str,
) -> Result<Cipher> {
    let bad = || Error::integrity(format!("data key {id} fails authentication"));
    let raw = unwrap_raw(master, id, scope, wrapped)?;
    let bytes: Zeroizing<[u8; 32]> = Zeroizing::new(raw.as_slice().try_into().map_err(|_| bad())?);
    Ok(Cipher::new(&bytes))
}

pub(crate) fn random_key() -> Zeroizing<[u8; 32]> {
    let mut key = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(key.as_mut());
    key
}

impl KeyRing {
    /// Opens the key ring in `dir`, or creates one. A wrong master key is
    /// refused before anything is written.
    pub(crate) fn open_or_create(dir: &Path, master: &MasterKey) -> Result<Self> {
        let path = dir.join(FILE);
        let cipher = Cipher::new(master.bytes());
        if !path.exists() {
            let index_key = random_key();
            let (n, ct) = cipher.seal(b"check", CHECK);
            let (n2, ct2) = cipher.seal(b"index key", index_key.as_ref());
            let ring = KeyRing {
                path,
                master: cipher,
                index_key,
                keys: BTreeMap::new(),
                next_id: 1,
            };
            ring.persist_with(encode(&n, &ct), encode(&n2, &ct2))?;
            return Ok(ring);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::unavailable(format!("reading {}: {e}", path.display())).with_source(e)
        })?;
        let file: KeyRingFile = serde_json::from_str(&text)
            .map_err(|e| Error::integrity(format!("{} is not a key ring: {e}", path.display())))?;
        let wrong_key = || {
            Error::config(format!(
                "the master key does not open the key ring {} (a different key, or a damaged file); nothing was changed",
                path.display()
            ))
        };
        let (n, ct) = decode(&file.check).ok_or_else(wrong_key)?;
        if cipher.open(&n, b"check", &ct).ok().as_deref() != Some(CHECK) {
            return Err(wrong_key());
        }
        let (n, ct) = decode(&file.index_key).ok_or_else(wrong_key)?;
        let raw = Zeroizing::new(
            cipher
                .open(&n, b"index key", &ct)
                .map_err(|_| wrong_key())?,
        );
        let index_key: Zeroizing<[u8; 32]> =
            Zeroizing::new(raw.as_slice().try_into().map_err(|_| wrong_key())?);
        let mut keys = BTreeMap::new();
        for entry in file.keys {
            let cipher = match &entry.wrapped {
                None => None,
                Some(wrapped) => {
                    let (n, ct) = decode(wrapped).ok_or_else(wrong_key)?;
                    let raw = Zeroizing::new(
                        cipher
                            .open(&n, &wrap_aad(entry.id, &entry.scope), &ct)
                            .map_err(|_| {
                                Error::integrity(format!(
                                    "data key {} in {} fails authentication",
                                    entry.id,
                                    path.display()
                                ))
                            })?,
                    );
                    let bytes: Zeroizing<[u8; 32]> =
                        Zeroizing::new(raw.as_slice().try_into().map_err(|_| {
                            Error::integrity(format!("data key {} has the wrong length", entry.id))
                        })?);
                    Some(Cipher::new(&bytes))
                }
            };
            keys.insert(
                entry.id,
                DataKey {
                    scope: entry.scope,
                    cipher,
                    wrapped: entry.wrapped,
                    // A crash may have used the whole reservation.
                    used: entry.reserved,
                    reserved: entry.reserved,
                    active: entry.active,
                },
            );
        }
        Ok(KeyRing {
            path,
            master: cipher,
            index_key,
            keys,
            next_id: file.next_id,
        })
    }

    /// The scope of an account's records: a keyed hash, so the file does
    /// not list the accounts.
    pub(crate) fn scope_of(&self, account: Option<&AccountId>) -> String {
        self.opaque_ids().scope(account)
    }

    /// The keyed hash, to use without holding the key ring.
    pub(crate) fn opaque_ids(&self) -> OpaqueIds {
        OpaqueIds(self.index_key.clone())
    }

    /// The id of the key new records of `scope` are sealed with, creating
    /// or rotating it when needed (which rewrites the file).
    pub(crate) fn active_key(&mut self, scope: &str) -> Result<u32> {
        let current = self
            .keys
            .iter()
            .find(|(_, k)| k.active && k.scope == scope && k.cipher.is_some())
            .map(|(id, k)| (*id, k.used));
        match current {
            Some((id, used)) if used < SEALS_PER_KEY => Ok(id),
            _ => self.rotate(scope),
        }
    }

    /// Seals `plaintext` with data key `id`, counting the use.
    /// A whole frame holding `plaintext`, sealed under the current data key
    /// of `scope` (created or rotated as needed): the one way records are
    /// sealed, for writes and compaction alike. Returns the frame and the
    /// key's id.
    pub(crate) fn seal_frame(
        &mut self,
        kind: Kind,
        scope: &str,
        record_id: [u8; 16],
        version: u64,
        plaintext: &[u8],
    ) -> Result<(Vec<u8>, u32)> {
        let key_id = self.active_key(scope)?;
        let aad = frame::aad(kind, key_id, &record_id, version);
        let mut bytes = frame::start(&aad, plaintext.len());
        bytes.extend_from_slice(plaintext);
        // Sealed in place: no copy of the record, and the plaintext becomes
        // ciphertext where it lies.
        self.cipher_for_seal(key_id)?
            .seal_in_place(&aad, &mut bytes, frame::NONCE_AT);
        self.count_seal(key_id)?;
        frame::finish(&mut bytes);
        Ok((bytes, key_id))
    }

    fn cipher_for_seal(&self, id: u32) -> Result<&Cipher> {
        self.keys
            .get(&id)
            .ok_or_else(|| Error::integrity(format!("no data key {id}")))?
            .cipher
            .as_ref()
            .ok_or_else(|| Error::integrity(format!("data key {id} was destroyed")))
    }

    fn count_seal(&mut self, id: u32) -> Result<()> {
        let Some(key) = self.keys.get_mut(&id) else {
            return Ok(());
        };
        key.used += 1;
        if key.used >= key.reserved {
            key.reserved += RESERVE_BLOCK;
            self.persist()?;
        }
        Ok(())
    }

    /// Opens a record sealed with data key `id`.
    pub(crate) fn open(
        &self,
        id: u32,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ct: &[u8],
    ) -> Result<Vec<u8>, OpenFailure> {
        match self.keys.get(&id) {
            Some(DataKey {
                cipher: Some(c), ..
            }) => c.open(nonce, aad, ct).map_err(|_| OpenFailure::Unauthentic),
            Some(DataKey { cipher: None, .. }) => Err(OpenFailure::Shredded),
            None => Err(OpenFailure::Unauthentic),
        }
    }

    /// Whether `id` is the key new records of its scope use.
    pub(crate) fn is_active(&self, id: u32) -> bool {
        self.keys.get(&id).is_some_and(|k| k.active)
    }

    /// The scope data key `id` belongs to.
    pub(crate) fn scope_of_key(&self, id: u32) -> Option<&str> {
        self.keys.get(&id).map(|k| k.scope.as_str())
    }

    /// Starts a new data key for `scope`; older ones stay for reading until
    /// compaction has re-sealed their records.
    pub(crate) fn rotate(&mut self, scope: &str) -> Result<u32> {
        let id = self.next_id;
        let raw = random_key();
        let (n, ct) = self.master.seal(&wrap_aad(id, scope), raw.as_ref());
        for key in self.keys.values_mut().filter(|k| k.scope == scope) {
            key.active = false;
        }
        self.keys.insert(
            id,
            DataKey {
                scope: scope.to_owned(),
                cipher: Some(Cipher::new(&raw)),
                wrapped: Some(encode(&n, &ct)),
                used: 0,
                reserved: RESERVE_BLOCK,
                active: true,
            },
        );
        self.next_id += 1;
        self.persist()?;
        Ok(id)
    }

    /// Destroys every data key of `scope`: its records can no longer be
    /// read by anyone.
    pub(crate) fn destroy(&mut self, scope: &str) -> Result<usize> {
        let mut n = 0;
        for key in self
            .keys
            .values_mut()
            .filter(|k| k.scope == scope && k.cipher.is_some())
        {
            key.cipher = None;
            key.wrapped = None;
            key.active = false;
            n += 1;
        }
        self.persist()?;
        Ok(n)
    }

    /// Drops retired keys no record uses any more (after compaction).
    pub(crate) fn forget_unused(&mut self, used: &std::collections::HashSet<u32>) -> Result<()> {
        let before = self.keys.len();
        self.keys.retain(|id, k| k.active || used.contains(id));
        if self.keys.len() != before {
            self.persist()?;
        }
        Ok(())
    }

    /// Re-wraps every data key under `new`; no record is rewritten.
    pub(crate) fn rotate_master(&mut self, new: &MasterKey) -> Result<()> {
        let master = Cipher::new(new.bytes());
        for (id, key) in self.keys.iter_mut() {
            let Some(wrapped) = &key.wrapped else {
                continue;
            };
            let (n, ct) = decode(wrapped)
                .ok_or_else(|| Error::integrity(format!("data key {id} is malformed")))?;
            let raw = Zeroizing::new(
                self.master
                    .open(&n, &wrap_aad(*id, &key.scope), &ct)
                    .map_err(|_| Error::integrity(format!("data key {id} fails authentication")))?,
            );
            let (n, ct) = master.seal(&wrap_aad(*id, &key.scope), &raw);
            key.wrapped = Some(encode(&n, &ct));
        }
        self.master = master;
        self.persist()
    }

    fn persist(&self) -> Result<()> {
        let (n, ct) = self.master.seal(b"check", CHECK);
        let (n2, ct2) = self.master.seal(b"index key", self.index_key.as_ref());
        self.persist_with(encode(&n, &ct), encode(&n2, &ct2))
    }

    fn persist_with(&self, check: String, index_key: String) -> Result<()> {
        let file = KeyRingFile {
            format: 1,
            check,
            index_key,
            next_id: self.next_id,
            keys: self
                .keys
                .iter()
                .map(|(id, k)| KeyFileEntry {
                    id: *id,
                    scope: k.scope.clone(),
                    wrapped: k.wrapped.clone(),
                    reserved: k.reserved,
                    active: k.active,
                })
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| Error::integrity(format!("encoding the key ring: {e}")))?;
        fsio::replace_atomically(&self.path, &bytes)
    }
}

/// Computes opaque record ids: HMAC-SHA256 under the store's index key,
/// truncated to 16 bytes.
pub(crate) struct OpaqueIds(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for OpaqueIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpaqueIds([REDACTED])")
    }
}

impl OpaqueIds {
    /// Keyed hashes under `key`.
    pub(crate) fn new(key: Zeroizing<[u8; 32]>) -> Self {
        Self(key)
    }

    /// The key scope of an account's records (a keyed hash in hex, so
    /// that no store lists the accounts), or the system's.
    pub(crate) fn scope(&self, account: Option<&AccountId>) -> String {
        match account {
            None => SYSTEM_SCOPE.to_owned(),
            Some(a) => self
                .id("account", a.as_str().as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        }
    }

    pub(crate) fn id(&self, domain: &str, data: &[u8]) -> [u8; 16] {
        // HMAC pads a key shorter than the hash's block with zeros; doing
        // it here makes the construction infallible.
        let mut block = Zeroizing::new([0u8; 64]);
        block[..32].copy_from_slice(self.0.as_ref());
        let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new(block.as_ref().into());
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(data);
        let digest = mac.finalize().into_bytes();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_key_is_retired_before_its_seal_limit_and_still_opens_old_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut ring = KeyRing::open_or_create(dir.path(), &MasterKey::generate()).unwrap();
        let scope = ring.scope_of(None);
        let first = ring.active_key(&scope).unwrap();
        let mut sealed = Vec::new();
        for i in 0..SEALS_PER_KEY {
            let (bytes, key) = ring
                .seal_frame(Kind::Job, &scope, [1; 16], i + 1, b"record")
                .unwrap();
            assert_eq!(key, first, "seal {i} still uses the first key");
            sealed.push(bytes);
        }
        let second = ring.active_key(&scope).unwrap();
        assert_ne!(
            second, first,
            "the key is rotated once its limit is reached"
        );
        assert!(!ring.is_active(first) && ring.is_active(second));
        for bytes in &sealed {
            let f = frame::decode_one(bytes, "test", 0).unwrap();
            let plaintext = ring.open(f.key_id, f.nonce, f.aad, f.ciphertext).unwrap();
            assert_eq!(plaintext, b"record", "older records still open");
        }
    }

    #[test]
    fn opaque_ids_match_hmac_with_the_unpadded_key() {
        // Stores written before must keep their ids: padding the key to the
        // block by hand is the same HMAC (RFC 2104).
        let key = [7u8; 32];
        let ids = OpaqueIds(Zeroizing::new(key));
        let mut reference = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
        reference.update(b"job\0data");
        assert_eq!(
            ids.id("job", b"data"),
            reference.finalize().into_bytes()[..16]
        );
        assert_ne!(ids.id("job", b"data"), ids.id("lease", b"data"));
        assert_ne!(
            ids.id("job", b"data"),
            OpaqueIds(Zeroizing::new([8; 32])).id("job", b"data")
        );
    }
}
