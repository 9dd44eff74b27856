//! Verified webhooks: [`WebhookVerifier`] turns a request's headers and raw
//! body into a typed [`Delivery`], or a [`WebhookError`] that says what was
//! wrong. Framework-independent: the axum route (feature `axum`) is a thin
//! layer over it.

mod error;
mod payload;

use hmac::{Hmac, Mac};
use http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use sprinters_core::domain::DeliveryId;
use sprinters_core::events::Delivery;
use sprinters_core::time::Timestamp;
use sprinters_core::{Error, Result};

pub use error::WebhookError;
pub use payload::parse_event;

/// GitHub's signature header: `sha256=` and the hex HMAC of the body.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// The event name header.
pub const EVENT_HEADER: &str = "x-github-event";
/// The delivery id header (a GUID, the same on redelivery).
pub const DELIVERY_HEADER: &str = "x-github-delivery";
/// The default body limit: GitHub caps payloads at 25 MB, but the events
/// Sprinters reads are a few KiB.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// Checks signatures and parses deliveries.
///
/// Several secrets may be active at once, so a webhook secret can be
/// rotated without downtime: add the new one, change it on GitHub, remove
/// the old one.
#[derive(Clone)]
pub struct WebhookVerifier {
    secrets: Vec<SecretString>,
    max_body: usize,
}

impl std::fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookVerifier")
            .field("secrets", &self.secrets.len())
            .field("max_body", &self.max_body)
            .finish()
    }
}

impl WebhookVerifier {
    /// A verifier for `secret`; an empty secret is a `Config` error.
    pub fn new(secret: SecretString) -> Result<Self> {
        Self {
            secrets: Vec::new(),
            max_body: DEFAULT_MAX_BODY,
        }
        .with_secret(secret)
    }

    /// Also accepts signatures made with `secret`.
    pub fn with_secret(mut self, secret: SecretString) -> Result<Self> {
        if secret.expose_secret().is_empty() {
            return Err(Error::config("a webhook secret must not be empty"));
        }
        self.secrets.push(secret);
        Ok(self)
    }

    /// Refuses bodies larger than `bytes` (default 1 MiB).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// The body limit.
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// Verifies and parses one delivery. Nothing of the body is read
    /// before its signature has been checked.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        received_at: Timestamp,
    ) -> std::result::Result<Delivery, WebhookError> {
        if body.len() > self.max_body {
            return Err(WebhookError::BodyTooLarge {
                limit: self.max_body,
            });
        }
        self.check_signature(headers, body)?;
        let event = header(headers, EVENT_HEADER)?;
        let id = header(headers, DELIVERY_HEADER)?;
        let id = DeliveryId::parse(id).map_err(|_| WebhookError::InvalidHeader(DELIVERY_HEADER))?;
        let event = parse_event(event, body)?;
        Ok(Delivery {
            id,
            received_at,
            event,
        })
    }

    /// `Ok` when any active secret signed `body`, compared in constant time.
    pub fn check_signature(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> std::result::Result<(), WebhookError> {
        let value = headers
            .get(SIGNATURE_HEADER)
            .ok_or(WebhookError::MissingSignature)?;
        let hex_mac = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("sha256="))
            .ok_or(WebhookError::BadSignature)?;
        let claimed = hex::decode(hex_mac).map_err(|_| WebhookError::BadSignature)?;
        let signed_by_any = self.secrets.iter().any(|secret| {
            // HMAC accepts keys of any length: this cannot fail.
            Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
                .map(|mut mac| {
                    mac.update(body);
                    mac.verify_slice(&claimed).is_ok()
                })
                .unwrap_or(false)
        });
        if signed_by_any {
            Ok(())
        } else {
            Err(WebhookError::BadSignature)
        }
    }
}

/// The `sha256=...` signature GitHub would send for `body` under `secret`
/// (for tests and for stand-ins that play GitHub).
pub fn sign(secret: &SecretString, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn header<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
) -> std::result::Result<&'h str, WebhookError> {
    let value = headers.get(name).ok_or(WebhookError::MissingHeader(name))?;
    value
        .to_str()
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or(WebhookError::InvalidHeader(name))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn githubs_published_test_vector() {
        // https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
        let s = secret("It's a Secret to Everybody");
        assert_eq!(
            sign(&s, b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            SIGNATURE_HEADER,
            HeaderValue::from_static(
                "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            ),
        );
        let verifier = WebhookVerifier::new(s).unwrap();
        assert!(verifier.check_signature(&headers, b"Hello, World!").is_ok());
        assert_eq!(
            verifier.check_signature(&headers, b"Hello, World?"),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn an_empty_secret_is_refused() {
        assert!(WebhookVerifier::new(secret("")).is_err());
    }

    #[test]
    fn debug_shows_no_secret() {
        let v = WebhookVerifier::new(secret("hunter2-webhook")).unwrap();
        assert!(!format!("{v:?}").contains("hunter2"));
    }
}
