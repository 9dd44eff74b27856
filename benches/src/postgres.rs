//! Engines (replicas) over in-memory GitHub and EC2 sharing one PostgreSQL
//! database: what the `postgres` benchmark and the round-trip test run.

use std::sync::Arc;

use secrecy::SecretString;
use sprinters_core::engine::Limits;
use sprinters_core::testing::TestBed;
use sprinters_store::{MasterKey, PostgresJobStore, StaticKeyProvider};

use crate::Rig;

/// A fresh database on the server `SPRINTERS_TEST_POSTGRES_URL` names
/// (`scripts/test` and `scripts/bench-postgres` start one): its URL.
pub async fn fresh_database() -> String {
    let server = std::env::var("SPRINTERS_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "SPRINTERS_TEST_POSTGRES_URL is not set: run scripts/bench-postgres (or scripts/test), which start PostgreSQL"
        )
    });
    let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {server}: {e}"));
    tokio::spawn(connection);
    let name = format!("sprinters_bench_{:016x}", fastrand::u64(..));
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let base = server
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .unwrap_or(server);
    format!("{base}/{name}")
}

/// `n` replicas, each an engine with its own pool (`connections`) and its
/// own replica id, over one database.
pub struct Replicas {
    /// The engines.
    pub rigs: Vec<Rig>,
    /// Their stores, for the round-trip counters.
    pub stores: Vec<PostgresJobStore>,
}

impl Replicas {
    /// Connects `n` replicas to `url`.
    pub async fn start(url: &str, n: usize, connections: usize) -> Self {
        Self::start_with(url, n, connections, Limits::default()).await
    }

    /// [`Replicas::start`] with `limits` in each engine's configuration.
    pub async fn start_with(url: &str, n: usize, connections: usize, limits: Limits) -> Self {
        let key = MasterKey::generate();
        let mut rigs = Vec::new();
        let mut stores = Vec::new();
        for i in 0..n {
            let mut builder = PostgresJobStore::builder(SecretString::from(url.to_owned()))
                .max_connections(connections);
            // Over TLS, as in production, when the server has it (the one
            // scripts/bench-postgres and scripts/test start does).
            if let Ok(ca) = std::env::var("SPRINTERS_TEST_POSTGRES_CA") {
                builder = builder.ca_file(ca);
            }
            let store = builder
                .connect(&StaticKeyProvider::new(key.clone()))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let bed = TestBed::with_config(|c| {
                c.replica_id = format!("replica-{i}");
                c.limits = limits;
            });
            rigs.push(Rig::with_store(bed, Arc::new(store.clone())));
            stores.push(store);
        }
        Self { rigs, stores }
    }

    /// Statements sent by every replica so far.
    pub fn round_trips(&self) -> u64 {
        self.stores.iter().map(PostgresJobStore::round_trips).sum()
    }
}
