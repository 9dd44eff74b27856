//! The control plane's HTTP edge: TLS 1.3 and 1.2 only, time limits that
//! a slow client cannot outlast, and a drain that finishes the request in
//! flight. Time limits are checked on tokio's paused clock, never by
//! waiting.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use sprinters_server::server::{
    EdgeLimits, HEADER_TIMEOUT, REQUEST_TIMEOUT, guard, serve_http, tls_config,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

fn router(release: Option<Arc<tokio::sync::Notify>>) -> Router {
    guard(
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/echo", post(|body: String| async move { body }))
            .route(
                "/slow",
                get(move || async move {
                    if let Some(release) = release {
                        release.notified().await;
                    }
                    "finished"
                }),
            ),
        EdgeLimits::default(),
    )
}

async fn start(
    router: Router,
    tls: bool,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = tls.then(|| tls_config(&fixture("cert.pem"), &fixture("key.pem")).unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_http(
        listener,
        router,
        tls,
        EdgeLimits::default(),
        async {
            let _ = stopped.await;
        },
    ));
    (addr, stop, server)
}

async fn read_all(stream: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn client(version: &'static rustls::SupportedProtocolVersion) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(fixture("cert.pem")).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn tls_13_and_12_are_served() {
    let (addr, _stop, _server) = start(router(None), true).await;
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut tls = client(version)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.protocol_version(), Some(version.version));
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let response = read_all(&mut tls).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("ok"), "{response}");
    }
}

#[tokio::test]
async fn tls_11_and_plain_http_are_refused_on_a_tls_port() {
    let (addr, _stop, _server) = start(router(None), true).await;
    // A TLS 1.1 ClientHello (no supported_versions extension).
    let mut body = vec![0x03, 0x02];
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // no session id
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // two CBC suites
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut hello = vec![0x01, 0x00, 0x00, body.len() as u8];
    hello.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01, 0x00, hello.len() as u8];
    record.extend_from_slice(&hello);
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&record).await.unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    assert_eq!(answer.first(), Some(&0x15), "an alert: {answer:?}");
    // rustls answers handshake_failure (40); protocol_version (70) would
    // say the same.
    assert!(
        matches!(answer.get(6), Some(&(40 | 70))),
        "refused: {answer:?}"
    );

    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let answer = read_all(&mut tcp).await;
    assert!(!answer.contains("ok"), "no plain HTTP on a TLS port");
}

#[test]
fn bad_tls_files_are_named() {
    let missing = tls_config(Path::new("/nonexistent/cert.pem"), &fixture("key.pem")).unwrap_err();
    assert!(
        missing.starts_with("server.tls_cert_file: /nonexistent/cert.pem"),
        "{missing}"
    );
    let swapped = tls_config(&fixture("cert.pem"), &fixture("cert.pem")).unwrap_err();
    assert!(swapped.starts_with("server.tls_key_file:"), "{swapped}");
    assert!(!swapped.contains("BEGIN"), "no PEM in the message");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let (addr, _stop, _server) = start(router(None), false).await;
    let started = tokio::time::Instant::now();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    let answer = read_all(&mut tcp).await;
    assert!(!answer.contains("ok"), "{answer}");
    let waited = started.elapsed();
    assert!(
        waited >= HEADER_TIMEOUT && waited < REQUEST_TIMEOUT,
        "closed after {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_body_that_trickles_in_gets_408() {
    let (addr, _stop, _server) = start(router(None), false).await;
    let started = tokio::time::Instant::now();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nonly ten b",
    )
    .await
    .unwrap();
    let answer = read_all(&mut tcp).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() >= REQUEST_TIMEOUT);
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413() {
    let (addr, _stop, _server) = start(router(None), false).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let size = sprinters_server::server::BODY_LIMIT + 1;
    tcp.write_all(
        format!("POST /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {size}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let _ = tcp.write_all(&vec![b'x'; size]).await;
    let answer = read_all(&mut tcp).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight() {
    let release = Arc::new(tokio::sync::Notify::new());
    let (addr, stop, server) = start(router(Some(release.clone())), false).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    // The request is in the handler once the handler waits on `release`;
    // a second request proves the server took the first one in.
    let mut other = TcpStream::connect(addr).await.unwrap();
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(read_all(&mut other).await.ends_with("ok"));
    stop.send(()).unwrap();
    // On this single-threaded runtime, a few turns let the server see the
    // signal and reach its drain; a server that did not drain ends here.
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(!server.is_finished(), "a request is still in flight");
    release.notify_one();
    let answer = read_all(&mut tcp).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("finished"), "{answer}");
    server.await.unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test(start_paused = true)]
async fn past_the_connection_limit_clients_wait_their_turn() {
    let limits = EdgeLimits {
        max_connections: 1,
        ..EdgeLimits::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_http(
        listener,
        router(None),
        None,
        limits,
        std::future::pending(),
    ));
    let mut first = TcpStream::connect(addr).await.unwrap();
    first.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    second
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_secs(1), second.read(&mut byte))
            .await
            .is_err(),
        "the second connection waits while the first holds the only slot"
    );
    first
        .write_all(b"Host: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(read_all(&mut first).await.ends_with("ok"));
    assert!(
        read_all(&mut second).await.ends_with("ok"),
        "then it is served"
    );
}
