#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod domain;
pub mod engine;
mod error;
pub mod events;
pub mod job;
pub mod labels;
pub mod layers;
pub mod memory;
pub mod observe;
pub mod policy;
pub mod ports;
pub mod tenant;
// Test support: a failed check panics, which is how a test fails.
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub mod testing;
pub mod time;
pub mod vault;

pub use error::{Error, ErrorKind, Result};
