//! The one error type of the SDK.
//!
//! Adapters map their own failures (AWS error codes, GitHub status codes, I/O)
//! into an [`ErrorKind`] at the boundary and keep the original as the source,
//! so the engine decides what to do from the kind alone.

use std::fmt;
use std::time::Duration;

/// What went wrong, in terms the engine acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The thing asked for does not exist (an instance, a job, a record).
    NotFound,
    /// A compare-and-swap lost: someone else changed the record first.
    Conflict,
    /// A delivery was processed already: the write that carried it was
    /// not made (see [`crate::ports::PutJob::delivery`]).
    Duplicate,
    /// The caller lacks a permission; the message says what to grant.
    PermissionDenied,
    /// An API asked us to slow down, possibly saying for how long.
    RateLimited {
        /// How long the API asked us to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// No capacity for the requested instance type or market.
    CapacityUnavailable,
    /// A `runs-on` label is malformed; the message names the part.
    InvalidLabel,
    /// The configuration is wrong (unknown image, subnet, account, ...).
    Config,
    /// Stored data failed a checksum or authentication check.
    Integrity,
    /// A dependency is down or timed out; trying again may work.
    Unavailable,
}

impl ErrorKind {
    /// A short stable name, for metrics labels and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Duplicate => "duplicate",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::RateLimited { .. } => "rate_limited",
            ErrorKind::CapacityUnavailable => "capacity_unavailable",
            ErrorKind::InvalidLabel => "invalid_label",
            ErrorKind::Config => "config",
            ErrorKind::Integrity => "integrity",
            ErrorKind::Unavailable => "unavailable",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The SDK's error: a kind, a message a person can act on, and the source.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// `Result` with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying error, kept for `source()` chains.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether trying the same call again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::RateLimited { .. } | ErrorKind::Unavailable | ErrorKind::Conflict
        )
    }

    /// How long the remote side asked us to wait, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.kind {
            ErrorKind::RateLimited { retry_after } => retry_after,
            _ => None,
        }
    }

    /// [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// [`ErrorKind::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    /// [`ErrorKind::Duplicate`].
    pub fn duplicate(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Duplicate, message)
    }
    /// [`ErrorKind::PermissionDenied`].
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::PermissionDenied, message)
    }
    /// [`ErrorKind::RateLimited`].
    pub fn rate_limited(retry_after: Option<Duration>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::RateLimited { retry_after }, message)
    }
    /// [`ErrorKind::CapacityUnavailable`].
    pub fn capacity_unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::CapacityUnavailable, message)
    }
    /// [`ErrorKind::InvalidLabel`].
    pub fn invalid_label(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidLabel, message)
    }
    /// [`ErrorKind::Config`].
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
    /// [`ErrorKind::Integrity`].
    pub fn integrity(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Integrity, message)
    }
    /// [`ErrorKind::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_kinds_are_exactly_the_transient_ones() {
        let retryable = [
            Error::rate_limited(Some(Duration::from_secs(3)), "slow down"),
            Error::unavailable("503"),
            Error::conflict("version moved"),
        ];
        for e in retryable {
            assert!(e.is_retryable(), "{e}");
        }
        let permanent = [
            Error::not_found("x"),
            Error::duplicate("x"),
            Error::permission_denied("x"),
            Error::capacity_unavailable("x"),
            Error::invalid_label("x"),
            Error::config("x"),
            Error::integrity("x"),
        ];
        for e in permanent {
            assert!(!e.is_retryable(), "{e}");
        }
    }

    #[test]
    fn display_names_kind_and_message_and_keeps_source() {
        let io = std::io::Error::other("disk on fire");
        let e = Error::unavailable("store write failed").with_source(io);
        assert_eq!(e.to_string(), "unavailable: store write failed");
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("disk on fire"));
        assert_eq!(
            Error::rate_limited(Some(Duration::from_secs(7)), "x").retry_after(),
            Some(Duration::from_secs(7))
        );
    }
}
