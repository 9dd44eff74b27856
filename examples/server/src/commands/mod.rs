//! One module per subcommand.

use std::process::ExitCode;

pub(crate) mod accounts;
pub(crate) mod jobs;
pub(crate) mod keys;
pub(crate) mod labels;
pub(crate) mod policy;
pub(crate) mod serve;
pub(crate) mod store;

/// Prints one line about what went wrong and fails (exit 1).
pub(crate) fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

/// Prints one line about a bad argument and fails (exit 2).
pub(crate) fn usage_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

/// A runtime for the commands that call async APIs.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}
