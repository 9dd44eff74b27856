//! TLS to the database, with rustls (TLS 1.3 and 1.2, the certificate chain
//! and the host name verified).
//!
//! Records leave the process sealed, but the queries' opaque columns, the
//! lease holders and the password exchange do not: the security page
//! promises that everything in motion is encrypted, so TLS is required
//! unless the server is on this machine (a loopback address or a Unix
//! socket, e.g. a local proxy such as the Cloud SQL or RDS proxy) *and* the
//! URL says `sslmode=disable`. `sslmode=prefer`, the driver's default, would
//! fall back to plain text when a server (or whoever answers in its place)
//! declines TLS, so it is taken as `require`.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use sprinters_core::{Error, Result};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// Where the trusted roots come from.
#[derive(Debug, Clone)]
pub(crate) enum Roots {
    /// The operating system's store (what a managed database's public CA
    /// chains to).
    System,
    /// Only the certificates in this PEM file (a private CA, or a cloud
    /// provider's bundle such as RDS's).
    File(std::path::PathBuf),
}

/// Settles the connection's `sslmode`: `prefer` becomes `require`, and
/// `disable` is refused unless every host is on this machine.
pub(crate) fn settle_ssl_mode(config: &mut tokio_postgres::Config, target: &str) -> Result<()> {
    match config.get_ssl_mode() {
        SslMode::Disable if !all_hosts_local(config) => Err(Error::config(format!(
            "the database URL for {target} says sslmode=disable, but the server is not on \
             this machine: job data would cross the network in clear. Use TLS (sslmode=require, \
             the default here), or connect through a proxy on a loopback address"
        ))),
        SslMode::Disable => Ok(()),
        _ => {
            config.ssl_mode(SslMode::Require);
            Ok(())
        }
    }
}

fn all_hosts_local(config: &tokio_postgres::Config) -> bool {
    let addrs = config.get_hostaddrs();
    config.get_hosts().iter().enumerate().all(|(i, host)| {
        // A `hostaddr` is where the connection really goes.
        if let Some(addr) = addrs.get(i) {
            return addr.is_loopback();
        }
        match host {
            Host::Unix(_) => true,
            Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .trim_matches(['[', ']'])
                        .parse::<IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
        }
    }) && !config.get_hosts().is_empty()
}

/// The client configuration: aws-lc-rs (the provider the rest of the
/// workspace uses, chosen explicitly so that no process-wide default is
/// needed), TLS 1.3 and 1.2, no client certificate.
pub(crate) fn connector(roots: &Roots) -> Result<RustlsTls> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            // Unreadable entries are skipped, as every TLS client does; an
            // empty store then fails each handshake with a clear error.
            store.add_parsable_certificates(found.certs);
        }
        Roots::File(path) => add_pem_file(&mut store, path)?,
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::config(format!("the TLS configuration for the database: {e}")))?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(RustlsTls {
        config: Arc::new(config),
    })
}

fn add_pem_file(store: &mut RootCertStore, path: &Path) -> Result<()> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::config(format!("reading the database CA file {shown}: {e}")))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::config(format!("the database CA file {shown}: {e}")))?;
    if certs.is_empty() {
        return Err(Error::config(format!(
            "the database CA file {shown} holds no PEM certificate"
        )));
    }
    for cert in certs {
        store
            .add(cert)
            .map_err(|e| Error::config(format!("the database CA file {shown}: {e}")))?;
    }
    Ok(())
}

/// A `MakeTlsConnect` for tokio-postgres over tokio-rustls.
#[derive(Clone)]
pub(crate) struct RustlsTls {
    config: Arc<ClientConfig>,
}

impl<S> MakeTlsConnect<S> for RustlsTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<RustlsConnect> {
        let name =
            ServerName::try_from(domain.trim_matches(['[', ']']).to_owned()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{domain} is not a host name or address TLS can verify"),
                )
            })?;
        Ok(RustlsConnect {
            connector: tokio_rustls::TlsConnector::from(Arc::clone(&self.config)),
            name,
        })
    }
}

/// One handshake, for one host.
pub(crate) struct RustlsConnect {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let stream = self.connector.connect(self.name, stream).await?;
            Ok(RustlsStream(stream))
        })
    }
}

/// The encrypted connection.
pub(crate) struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    /// No channel binding: SCRAM then authenticates without it (the
    /// certificate check already ties the connection to the server).
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn settled(url: &str) -> Result<SslMode> {
        let mut config =
            tokio_postgres::Config::from_str(url).map_err(|e| Error::config(e.to_string()))?;
        settle_ssl_mode(&mut config, "db")?;
        Ok(config.get_ssl_mode())
    }

    #[test]
    fn the_drivers_prefer_becomes_require() -> Result<()> {
        assert_eq!(settled("postgres://u@db.example.com/x")?, SslMode::Require);
        assert_eq!(
            settled("postgres://u@db.example.com/x?sslmode=prefer")?,
            SslMode::Require
        );
        assert_eq!(settled("postgres://u@127.0.0.1/x")?, SslMode::Require);
        Ok(())
    }

    #[test]
    fn plain_text_is_only_for_a_server_on_this_machine() -> Result<()> {
        for local in [
            "postgres://u@127.0.0.1:5432/x?sslmode=disable",
            "postgres://u@localhost/x?sslmode=disable",
            "postgres://u@[::1]/x?sslmode=disable",
            "host=/run/postgresql user=u sslmode=disable",
            "host=db.example.com hostaddr=127.0.0.1 user=u sslmode=disable",
        ] {
            assert_eq!(settled(local)?, SslMode::Disable, "{local}");
        }
        for remote in [
            "postgres://u@db.example.com/x?sslmode=disable",
            "postgres://u@10.0.0.5/x?sslmode=disable",
            "host=127.0.0.1,db.example.com user=u sslmode=disable",
        ] {
            let error = settled(remote).expect_err(remote);
            assert!(error.to_string().contains("sslmode=disable"), "{error}");
        }
        Ok(())
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n")?;
        let error = connector(&Roots::File(path)).err().map(|e| e.to_string());
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.contains("no PEM certificate")),
            "{error:?}"
        );
        let missing = connector(&Roots::File(dir.path().join("missing.pem")))
            .err()
            .map(|e| e.to_string());
        assert!(
            missing
                .as_deref()
                .is_some_and(|e| e.contains("missing.pem")),
            "{missing:?}"
        );
        Ok(())
    }
}
