//! AES-256-GCM with 96-bit random nonces: the one cipher of the store.
//!
//! Nonces come from `rand`'s thread-local ChaCha12 generator, seeded and
//! periodically reseeded from the operating system: cryptographically
//! secure, and no system call per record.

use std::fmt;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};

/// The nonce length of AES-GCM: 96 bits.
pub const NONCE_LEN: usize = 12;

/// A data key ready to seal and open, exactly as the store seals records.
/// The key schedule it holds is zeroized on drop.
pub struct Cipher(Aes256Gcm);

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cipher([REDACTED])")
    }
}

/// Authentication failed: wrong key, wrong associated data, or tampering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unauthentic;

impl Cipher {
    /// A cipher for `key`.
    pub fn new(key: &[u8; 32]) -> Self {
        Self(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)))
    }

    /// Encrypts `plaintext` bound to `aad` under a fresh random nonce.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> ([u8; NONCE_LEN], Vec<u8>) {
        let nonce = Aes256Gcm::generate_nonce(&mut rand::thread_rng());
        // Encryption only fails for inputs over 64 GiB.
        let ciphertext = self
            .0
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .unwrap_or_default();
        (nonce.into(), ciphertext)
    }

    /// Decrypts and authenticates.
    pub fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, Unauthentic> {
        self.0
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| Unauthentic)
    }

    /// Seals `plaintext` as one database column: `nonce || ciphertext`.
    pub(crate) fn seal_body(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let (nonce, ct) = self.seal(aad, plaintext);
        let mut body = Vec::with_capacity(NONCE_LEN + ct.len());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&ct);
        body
    }

    /// Opens a column sealed by [`Cipher::seal_body`].
    pub(crate) fn open_body(&self, aad: &[u8], body: &[u8]) -> Result<Vec<u8>, Unauthentic> {
        let (nonce, ct) = body.split_at_checked(NONCE_LEN).ok_or(Unauthentic)?;
        let nonce: &[u8; NONCE_LEN] = nonce.try_into().map_err(|_| Unauthentic)?;
        self.open(nonce, aad, ct)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_only_with_its_key_and_associated_data() {
        let cipher = Cipher::new(&[7; 32]);
        let (nonce, ct) = cipher.seal(b"account-1/record-9/v3", b"hello");
        assert_ne!(&ct[..5], b"hello");
        assert_eq!(
            cipher.open(&nonce, b"account-1/record-9/v3", &ct).unwrap(),
            b"hello"
        );
        assert_eq!(
            cipher.open(&nonce, b"account-2/record-9/v3", &ct),
            Err(Unauthentic)
        );
        assert_eq!(
            Cipher::new(&[8; 32]).open(&nonce, b"account-1/record-9/v3", &ct),
            Err(Unauthentic)
        );
        let (nonce2, _) = cipher.seal(b"", b"hello");
        assert_ne!(nonce, nonce2, "every seal draws a new nonce");
    }
}
