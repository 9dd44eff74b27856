//! Logs for the binaries: one line per event on stderr.

/// Logs to stderr. `RUST_LOG` filters (`default` when it is unset), and
/// `SPRINTERS_LOG_FORMAT=json` switches to one JSON object per line.
/// A second call changes nothing.
pub fn init(default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if std::env::var("SPRINTERS_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
