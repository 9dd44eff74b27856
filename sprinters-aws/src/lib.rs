#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

/// Whether the adapters of this crate exist yet.
pub const IMPLEMENTED: bool = false;
