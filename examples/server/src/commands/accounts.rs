//! `sprinters accounts connect|verify|list|disconnect`: the owners API of a
//! running control plane (`/api/owners/{owner}/accounts`), for operators.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::{fail, runtime, usage_error};

/// Where the control plane is and how to authenticate.
#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// The control plane's base URL (`https://sprinters.example.com`, or
    /// `http://127.0.0.1:8080` on this machine).
    #[arg(long)]
    server: String,
    /// A file holding an API token whose owners are `["*"]`.
    #[arg(long)]
    token_file: PathBuf,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AccountsCommand {
    /// Connect an AWS account to an owner: prints the external id and the
    /// CloudFormation stack's parameters (shown this once).
    Connect {
        #[command(flatten)]
        server: ServerArgs,
        /// The owner: its login or numeric GitHub account id.
        #[arg(long)]
        owner: String,
        /// The 12-digit AWS account id.
        #[arg(long)]
        account: String,
    },
    /// Verify a connection with the role its stack made.
    Verify {
        #[command(flatten)]
        server: ServerArgs,
        /// The owner: its login or numeric GitHub account id.
        #[arg(long)]
        owner: String,
        /// The 12-digit AWS account id.
        #[arg(long)]
        account: String,
        /// The stack's RoleArn output.
        #[arg(long)]
        role_arn: String,
    },
    /// An owner's accounts and their state.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// The owner: its login or numeric GitHub account id.
        #[arg(long)]
        owner: String,
    },
    /// Disconnect an account: nothing launches there any more.
    Disconnect {
        #[command(flatten)]
        server: ServerArgs,
        /// The owner: its login or numeric GitHub account id.
        #[arg(long)]
        owner: String,
        /// The 12-digit AWS account id.
        #[arg(long)]
        account: String,
    },
}

pub(crate) fn run(command: AccountsCommand) -> ExitCode {
    let (server, method, path, body) = match command {
        AccountsCommand::Connect {
            server,
            owner,
            account,
        } => (
            server,
            Method::POST,
            format!("/api/owners/{owner}/accounts"),
            Some(json!({ "aws_account_id": account })),
        ),
        AccountsCommand::Verify {
            server,
            owner,
            account,
            role_arn,
        } => (
            server,
            Method::PUT,
            format!("/api/owners/{owner}/accounts/{account}"),
            Some(json!({ "role_arn": role_arn })),
        ),
        AccountsCommand::List { server, owner } => (
            server,
            Method::GET,
            format!("/api/owners/{owner}/accounts"),
            None,
        ),
        AccountsCommand::Disconnect {
            server,
            owner,
            account,
        } => (
            server,
            Method::DELETE,
            format!("/api/owners/{owner}/accounts/{account}"),
            None,
        ),
    };
    // Path parts are logins, ids and account ids: nothing to escape.
    if path.contains(['?', '#', ' ']) || path.contains("..") {
        return usage_error("--owner and --account take a login, an id or 12 digits");
    }
    let token = match read_token(&server.token_file) {
        Ok(t) => t,
        Err(e) => return usage_error(e),
    };
    let answer =
        runtime().and_then(|rt| rt.block_on(call(&server.server, &token, method, &path, body)));
    match answer {
        Ok((status, body)) => {
            let text = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            if (200..300).contains(&status) {
                println!("{text}");
                ExitCode::SUCCESS
            } else {
                fail(format!(
                    "the control plane answered {status}: {}",
                    text.trim()
                ))
            }
        }
        Err(e) => fail(e),
    }
}

fn read_token(path: &Path) -> Result<SecretString, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--token-file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!(
            "--token-file {}: the file is empty",
            path.display()
        ));
    }
    Ok(SecretString::from(token.to_owned()))
}

/// One request over HTTP/1.1 (TLS for `https://`, verified against the
/// system's roots); the status and body.
async fn call(
    server: &str,
    token: &SecretString,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Vec<u8>), String> {
    let (tls, rest) = if let Some(rest) = server.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = server.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(format!("--server {server:?}: expected http:// or https://"));
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(format!(
            "--server {server:?}: expected a base URL such as https://host:port"
        ));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']').to_owned(),
            p.parse::<u16>()
                .map_err(|_| format!("--server {server:?}: bad port"))?,
        ),
        _ => (authority.to_owned(), if tls { 443 } else { 80 }),
    };
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("connecting to {authority}: {e}"))?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, authority)
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", token.expose_secret()),
        )
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(payload)))
        .map_err(|e| format!("building the request: {e}"))?;
    if tls {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            // A certificate the system lists but rustls cannot parse is
            // skipped, as a browser would.
            let _ = roots.add(cert);
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("--server host {host}: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS with {authority}: {e}"))?;
        send(TokioIo::new(stream), request).await
    } else {
        send(TokioIo::new(stream), request).await
    }
}

async fn send<T>(io: T, request: Request<Full<Bytes>>) -> Result<(u16, Vec<u8>), String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes()
        .to_vec();
    Ok((status, body))
}
