//! Key material shared by the SQLite and PostgreSQL stores: how a data key
//! is wrapped by the master key (bound to its id and scope), how many
//! seals a data key may make, and the keyed hashes that stand for ids and
//! accounts in clear columns.

use aes_gcm::aead::OsRng;
use aes_gcm::aead::rand_core::RngCore;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sprinters_core::domain::AccountId;
use sprinters_core::{Error, Result};
use zeroize::Zeroizing;

use crate::crypto::{Cipher, NONCE_LEN};

/// Seals reserved from a key's row at a time.
const RESERVE_BLOCK: u64 = 1 << 20;
/// A data key is retired after this many seals: far below the 2^32 that
/// NIST allows for random 96-bit nonces.
pub(crate) const SEALS_PER_KEY: u64 = if cfg!(test) { 5 } else { 1 << 30 };
/// Sealed under the master key: a key that opens it is the store's.
pub(crate) const CHECK: &[u8] = b"sprinters key ring v1";

/// Seals the database stores reserve from a key's row at a time, so that
/// summed over replicas and crashes a key is never used past its limit.
pub(crate) const BLOCK: u64 = if SEALS_PER_KEY < RESERVE_BLOCK {
    SEALS_PER_KEY
} else {
    RESERVE_BLOCK
};

/// Records of no account (a rejected job, a delivery id) use this scope.
pub(crate) const SYSTEM_SCOPE: &str = "system";

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
