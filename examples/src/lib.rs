//! The crate of the `sprinters` binary: a control plane composed of the
//! SDK's default adapters. The binary is the product; this library target
//! exists so that the workspace README's examples, which compose every
//! crate, compile as doctests and cannot rot.
#![deny(missing_docs)]

/// The workspace README's examples.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct WorkspaceReadme;

pub mod config;
pub mod data_dir;
pub mod demo;
pub mod server;
pub mod view;
