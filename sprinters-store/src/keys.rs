//! The master key and where it comes from: a file (mode 0600 or
//! stricter), the `SPRINTERS_MASTER_KEY` environment variable, or any
//! [`KeyProvider`] (a KMS, say).

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::OsRng;
use aes_gcm::aead::rand_core::RngCore;
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::SecretString;
use sprinters_core::{Error, Result};
use zeroize::Zeroizing;

/// The environment variable holding a base64 master key.
pub const MASTER_KEY_ENV: &str = "SPRINTERS_MASTER_KEY";

/// 32 bytes that wrap every data key. Zeroized when dropped; never shown.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

impl MasterKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(bytes.as_mut());
        Self(bytes)
    }

    /// From raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// From base64 (standard alphabet) of exactly 32 bytes. The error never
    /// repeats the input.
    pub fn from_base64(text: &str) -> Result<Self> {
        let decoded = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| Error::config("the master key is not valid base64"))?,
        );
        let bytes: [u8; 32] = decoded.as_slice().try_into().map_err(|_| {
            Error::config(format!(
                "the master key must be 32 bytes, base64-encoded (44 characters); it decodes to {} bytes",
                decoded.len()
            ))
        })?;
        Ok(Self::from_bytes(bytes))
    }

    /// From `SPRINTERS_MASTER_KEY`.
    pub fn from_env() -> Result<Self> {
        let value = Zeroizing::new(
            std::env::var(MASTER_KEY_ENV)
                .map_err(|_| Error::config(format!("{MASTER_KEY_ENV} is not set")))?,
        );
        Self::from_base64(&value)
            .map_err(|e| Error::config(format!("{MASTER_KEY_ENV}: {}", e.message())))
    }

    /// From a file holding the base64 key, refused unless only its owner
    /// can read it (mode 0600 or stricter).
    pub fn from_file(path: &Path) -> Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| {
            Error::config(format!(
                "cannot read the master key file {}: {e}",
                path.display()
            ))
            .with_source(e)
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::config(format!(
                "the master key file {} is readable by others (mode {mode:04o}); run `chmod 600 {}`",
                path.display(),
                path.display()
            )));
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            Error::config(format!(
                "cannot read the master key file {}: {e}",
                path.display()
            ))
            .with_source(e)
        })?);
        Self::from_base64(&text)
            .map_err(|e| Error::config(format!("{}: {}", path.display(), e.message())))
    }

    /// Creates `path` with a new key, mode 0600; refuses to overwrite.
    pub fn create_file(path: &Path) -> Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let key = Self::generate();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                let what = if e.kind() == std::io::ErrorKind::AlreadyExists {
                    "it already exists; refusing to overwrite a master key"
                } else {
                    "cannot create it"
                };
                Error::config(format!("master key file {}: {what}: {e}", path.display()))
                    .with_source(e)
            })?;
        let text = Zeroizing::new(format!("{}\n", STANDARD.encode(key.0.as_ref())));
        file.write_all(text.as_bytes())
            .and_then(|_| file.sync_all())
            .map_err(|e| {
                Error::unavailable(format!("writing {}: {e}", path.display())).with_source(e)
            })?;
        Ok(key)
    }

    /// The key as base64, e.g. to hand to a secret manager.
    pub fn to_base64(&self) -> SecretString {
        SecretString::from(STANDARD.encode(self.0.as_ref()))
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Supplies the master key; implement it to keep the key in a KMS.
#[async_trait]
pub trait KeyProvider: Send + Sync + fmt::Debug + 'static {
    /// The current master key.
    async fn master_key(&self) -> Result<MasterKey>;
}

/// The master key from a file, see [`MasterKey::from_file`].
#[derive(Debug, Clone)]
pub struct FileKeyProvider {
    path: PathBuf,
}

impl FileKeyProvider {
    /// Reads `path` when asked.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

#[async_trait]
impl KeyProvider for FileKeyProvider {
    async fn master_key(&self) -> Result<MasterKey> {
        MasterKey::from_file(&self.path)
    }
}

/// The master key from `SPRINTERS_MASTER_KEY`.
#[derive(Debug, Clone, Copy, Default)]
pub struct EnvKeyProvider;

#[async_trait]
impl KeyProvider for EnvKeyProvider {
    async fn master_key(&self) -> Result<MasterKey> {
        MasterKey::from_env()
    }
}

/// A fixed key, for tests and for platforms that fetched it themselves.
#[derive(Debug, Clone)]
pub struct StaticKeyProvider(MasterKey);

impl StaticKeyProvider {
    /// Always answers `key`.
    pub fn new(key: MasterKey) -> Self {
        Self(key)
    }
}

#[async_trait]
impl KeyProvider for StaticKeyProvider {
    async fn master_key(&self) -> Result<MasterKey> {
        Ok(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_key_file_readable_by_others_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        MasterKey::create_file(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(MasterKey::from_file(&path).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = MasterKey::from_file(&path).unwrap_err();
        assert!(
            err.to_string().contains("readable by others (mode 0644)"),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(
            MasterKey::from_file(&path).is_ok(),
            "stricter than 0600 is fine"
        );
    }

    #[test]
    fn creating_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let first = MasterKey::create_file(&path).unwrap();
        let err = MasterKey::create_file(&path).unwrap_err();
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");
        assert_eq!(MasterKey::from_file(&path).unwrap().bytes(), first.bytes());
    }

    #[test]
    fn bad_keys_are_named_without_echoing_them() {
        let err = MasterKey::from_base64("c2hvcnQ=").unwrap_err();
        assert!(err.to_string().contains("decodes to 5 bytes"), "{err}");
        let err = MasterKey::from_base64("not base64 at all!").unwrap_err();
        assert!(!err.to_string().contains("not base64 at all"), "{err}");
        let key = MasterKey::generate();
        let text = secrecy::ExposeSecret::expose_secret(&key.to_base64()).to_owned();
        assert_eq!(MasterKey::from_base64(&text).unwrap().bytes(), key.bytes());
        assert_eq!(format!("{key:?}"), "MasterKey([REDACTED])");
    }
}
