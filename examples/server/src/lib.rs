#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

/// The workspace README's examples.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct WorkspaceReadme;

/// The embedding guide's examples.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/engine.md")]
pub struct EngineGuide;

pub mod config;
pub mod data_dir;
pub mod logging;
pub mod server;
pub mod view;
