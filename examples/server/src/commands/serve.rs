//! `sprinters serve --config FILE`: the control plane.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use sprinters_server::config::Config;
use sprinters_server::server::ControlPlane;

use super::fail;

/// Arguments of `sprinters serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The configuration file (see examples/server/sprinters.example.toml).
    #[arg(long)]
    config: PathBuf,
}

pub(crate) fn run(args: ServeArgs) -> ExitCode {
    sprinters_server::logging::init("info");
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(e) => return fail(format!("{}: {e}", args.config.display())),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(async move {
        let plane = ControlPlane::build(config).await?;
        let addr = plane.listen_addr();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        tracing::info!(%addr, "serving");
        plane.serve(listener, shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
