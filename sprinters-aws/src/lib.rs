#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod credentials;
mod error;
pub mod launcher;
pub mod policy;
pub mod sdk;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
pub mod user_data;
mod verify;

pub use credentials::{
    AmbientProvider, AssumeRoleProvider, CredentialChain, CustomerRole, StoredKeyProvider,
};
pub use launcher::{Ec2Launcher, ImageCatalog, ImageLookup};
pub use sdk::AwsClientConfig;
pub use verify::{ConnectionCheck, verify_connection};
