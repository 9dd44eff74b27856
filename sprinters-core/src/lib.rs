#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod domain;
pub mod engine;
mod error;
pub mod events;
pub mod job;
pub mod labels;
pub mod memory;
pub mod ports;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;

pub use error::{Error, ErrorKind, Result};
