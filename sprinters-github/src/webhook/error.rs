//! Why a webhook request was refused.

use std::fmt;

/// A refused webhook request. Each variant says what was wrong and maps to
/// the HTTP status the handler answers with; none carries the body or a
/// secret.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebhookError {
    /// No `X-Hub-Signature-256` header (an old `sha1=` signature alone is
    /// not accepted).
    MissingSignature,
    /// The signature is malformed or made with another secret.
    BadSignature,
    /// A required header is missing.
    MissingHeader(&'static str),
    /// A header is present but unusable.
    InvalidHeader(&'static str),
    /// The body is larger than the limit.
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body is not JSON.
    MalformedJson(String),
    /// The body is JSON, but not the shape the event promises.
    InvalidPayload(String),
}

impl WebhookError {
    /// The HTTP status to answer with: 401 for signatures, 413 for size,
    /// 400 for the rest.
    pub fn status(&self) -> u16 {
        match self {
            WebhookError::MissingSignature | WebhookError::BadSignature => 401,
            WebhookError::BodyTooLarge { .. } => 413,
            _ => 400,
        }
    }
}

impl fmt::Display for WebhookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebhookError::MissingSignature => f.write_str(
                "missing X-Hub-Signature-256 header (a sha256 signature is required; sha1 is not accepted)",
            ),
            WebhookError::BadSignature => {
                f.write_str("X-Hub-Signature-256 does not match the body under any configured secret")
            }
            WebhookError::MissingHeader(name) => write!(f, "missing {name} header"),
            WebhookError::InvalidHeader(name) => write!(f, "invalid {name} header"),
            WebhookError::BodyTooLarge { limit } => {
                write!(f, "body larger than the limit of {limit} bytes")
            }
            WebhookError::MalformedJson(e) => write!(f, "body is not valid JSON: {e}"),
            WebhookError::InvalidPayload(e) => write!(f, "unexpected payload: {e}"),
        }
    }
}

impl std::error::Error for WebhookError {}
