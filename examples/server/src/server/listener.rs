//! Serving the router on a socket: optional TLS (1.3 and 1.2 only), time
//! limits so that a slow or silent client cannot hold a connection, and a
//! drain on shutdown that lets requests in flight finish.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

/// The default most a client may take to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The default most a request may take, its body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What a client may take of the server (`[server]` `header_timeout_seconds`,
/// `request_timeout_seconds`, `max_connections`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeLimits {
    /// To send a request's headers; a keep-alive connection idle this long
    /// is closed too.
    pub header_timeout: Duration,
    /// For a whole request, its body included (then 408).
    pub request_timeout: Duration,
    /// Connections at once; more wait in the listen backlog until one
    /// closes.
    pub max_connections: usize,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        Self {
            header_timeout: HEADER_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
            max_connections: 10_000,
        }
    }
}
/// The most a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS server configuration from a PEM certificate chain and private
/// key: TLS 1.3 and 1.2 only, HTTP/1.1. Fails with a line naming the file.
pub fn tls_config(cert_file: &Path, key_file: &Path) -> Result<Arc<ServerConfig>, String> {
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!(
                "server.tls_cert_file: {}: not a PEM certificate chain: {e}",
                cert_file.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "server.tls_cert_file: {}: holds no certificate",
            cert_file.display()
        ));
    }
    // The key's own error could quote it: say only which file is wrong.
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|_| {
        format!(
            "server.tls_key_file: {}: not a PEM private key",
            key_file.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "server.tls_key_file: {} does not match the certificate: {e}",
                key_file.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The most a request body may be (GitHub's webhooks are at most 25 MiB
/// in theory, and well under 100 KiB for `workflow_job`).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// `router` with the limits every route of the control plane has: bodies
/// of at most [`BODY_LIMIT`] (413 beyond), and 408 for a request that
/// takes longer than `limits.request_timeout` (a client trickling its body).
pub fn guard(router: Router, limits: EdgeLimits) -> Router {
    router
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            limits.request_timeout,
            request_timeout,
        ))
}

async fn request_timeout(
    axum::extract::State(limit): axum::extract::State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (StatusCode::REQUEST_TIMEOUT, "the request took too long\n").into_response(),
    }
}

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown`
/// resolves; then stops accepting, lets each connection finish the request
/// it is on, and returns once all are closed.
pub async fn serve_http(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<ServerConfig>>,
    limits: EdgeLimits,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let connections = TaskTracker::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        // At the connection limit, stop accepting: clients wait in the
        // backlog rather than take memory and descriptors.
        let slot = tokio::select! {
            _ = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most likely: let connections
                    // close before accepting more.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let acceptor = acceptor.clone();
        let stopping = stopping.clone();
        let header_timeout = limits.header_timeout;
        connections.spawn(async move {
            let _slot = slot;
            match acceptor {
                None => {
                    serve_connection(TokioIo::new(stream), service, header_timeout, stopping).await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            serve_connection(TokioIo::new(tls), service, header_timeout, stopping)
                                .await
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
    let _ = stop.send(true);
    connections.close();
    connections.wait().await;
}

async fn serve_connection<I>(
    io: I,
    service: TowerToHyperService<Router>,
    header_timeout: Duration,
    mut stopping: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        () = async { let _ = stopping.wait_for(|s| *s).await; } => {
            // Finish the request in flight, then close.
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
