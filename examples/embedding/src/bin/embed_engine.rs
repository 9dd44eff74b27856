//! The engine embedded with the default adapters: the GitHub App (JIT
//! runners, webhooks), the customer's role assumed with its external id
//! (STS), EC2, and the encrypted SQLite store, behind one axum route. This
//! is what `sprinters serve` composes, without its configuration file,
//! console, API or metrics: one owner, one AWS account.
//!
//! ```sh
//! GITHUB_APP_ID=123 GITHUB_APP_KEY_FILE=app.pem GITHUB_WEBHOOK_SECRET_FILE=hook.secret \
//! OWNER_LOGIN=octo-org OWNER_ID=31337 INSTALLATION_ID=4242 \
//! AWS_ACCOUNT_ID=123456789012 ROLE_ARN=arn:aws:iam::123456789012:role/sprinters \
//! EXTERNAL_ID_FILE=external.id DATA_DIR=/var/lib/sprinters \
//! SPRINTERS_MASTER_KEY="$(openssl rand -base64 32)" \
//!   cargo run -p sprinters-embedding --bin embed-engine
//! ```
//!
//! Optional: `GITHUB_API_URL` (GitHub Enterprise), `AWS_ENDPOINT_URL` (an
//! emulator), `LISTEN` (default `127.0.0.1:8080`).
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::sync::Arc;

use axum::Router;
use secrecy::SecretString;
use sprinters_aws::{AssumeRoleProvider, AwsClientConfig, CustomerRole, Ec2Launcher};
use sprinters_core::domain::{AccountId, InstallationId, Owner, OwnerId};
use sprinters_core::engine::{Engine, EngineConfig, Tenants};
use sprinters_core::time::SystemClock;
use sprinters_github::{
    GithubApp, GithubAppConfig, GithubRegistry, WebhookVerifier, webhook_router,
};
use sprinters_store::{EnvKeyProvider, SqliteJobStore};

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set (see the top of embed_engine.rs)"))
}

fn secret_file(name: &str) -> Result<SecretString, Box<dyn Error>> {
    let path = var(name)?;
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{name} {path}: {e}"))?;
    Ok(SecretString::from(text.trim().to_owned()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // GitHub: the App (its installation tokens), JIT runners, webhooks.
    let mut app = GithubAppConfig::from_key_file(
        var("GITHUB_APP_ID")?.parse()?,
        var("GITHUB_APP_KEY_FILE")?,
    )?;
    if let Ok(url) = var("GITHUB_API_URL") {
        app = app.api_url(url)?;
    }
    let github = Arc::new(GithubApp::new(app)?);
    let verifier = WebhookVerifier::new(secret_file("GITHUB_WEBHOOK_SECRET_FILE")?)?;

    // The tenant: a GitHub owner (by its numeric id, which never changes
    // hands) and the AWS account it connected.
    let owner_id = OwnerId::new(var("OWNER_ID")?.parse()?);
    let account = AccountId::parse(&var("AWS_ACCOUNT_ID")?)?;
    let tenants = Tenants::new();
    let installation = InstallationId::new(var("INSTALLATION_ID")?.parse()?);
    tenants.connect(
        owner_id,
        installation,
        Owner::parse(&var("OWNER_LOGIN")?)?,
        account.clone(),
    );

    // AWS: the customer's role, assumed with the agreed external id; EC2.
    let mut aws = AwsClientConfig::new();
    if let Ok(url) = var("AWS_ENDPOINT_URL") {
        aws = aws.endpoint_url(url)?;
    }
    let role = CustomerRole::new(
        &account,
        &var("ROLE_ARN")?,
        secret_file("EXTERNAL_ID_FILE")?,
    )?;
    let roles = AssumeRoleProvider::builder(aws.clone()).role(owner_id, account, role);
    let launcher = Ec2Launcher::builder(aws).build();

    // The job history: SQLite, each record sealed under a key of the
    // account, the data keys under the master key in SPRINTERS_MASTER_KEY.
    let store = SqliteJobStore::open(var("DATA_DIR")?, &EnvKeyProvider).await?;

    let engine = Arc::new(
        Engine::builder()
            .registry(Arc::new(GithubRegistry::new(github)))
            .credentials(Arc::new(roles.build().await))
            .launcher(Arc::new(launcher))
            .store(Arc::new(store))
            .config(EngineConfig::new("embedded", tenants))
            .build()?,
    );

    let webhooks = webhook_router(verifier, engine.clone(), Arc::new(SystemClock));
    let router = Router::new().nest("/webhooks/github", webhooks);
    let listen = var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!(
        "webhooks on http://{}/webhooks/github",
        listener.local_addr()?
    );

    let stop = || async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let serve = axum::serve(listener, router).with_graceful_shutdown(stop());
    let (served, ran) = tokio::join!(serve, engine.run(stop()));
    served?;
    ran?;
    Ok(())
}
