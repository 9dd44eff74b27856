#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod crypto;
mod fsio;
mod keyring;
mod keys;
mod latency;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
mod postgres;
mod rows;
mod sealed;
mod sqlite;

pub use keys::{
    EnvKeyProvider, FileKeyProvider, KeyProvider, MASTER_KEY_ENV, MasterKey, StaticKeyProvider,
};
pub use latency::SyncLatency;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::{
    DATABASE_URL_ENV, DEFAULT_REQUEST_TIMEOUT as POSTGRES_REQUEST_TIMEOUT, PostgresJobStore,
    PostgresStoreBuilder,
};
pub use sqlite::{BackupReport, DATABASE_FILE, SqliteJobStore, backup};
