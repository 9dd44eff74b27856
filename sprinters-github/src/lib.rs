#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod app;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
mod axum;
mod installations;
mod recovery;
mod registry;
mod sink;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
pub mod webhook;

pub use app::{
    API_URL_ENV, APP_ID_ENV, DEFAULT_REQUEST_TIMEOUT, GithubApp, GithubAppConfig, PRIVATE_KEY_ENV,
    PRIVATE_KEY_FILE_ENV,
};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use axum::webhook_router;
pub use installations::Installation;
pub use recovery::{DeliveryRecovery, RecoveryReport};
pub use registry::GithubRegistry;
pub use sink::DeliverySink;
pub use webhook::{WebhookError, WebhookVerifier};
