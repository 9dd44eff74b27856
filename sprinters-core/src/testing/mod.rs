//! Conformance suites: public async functions over `&dyn Port` that every
//! adapter's tests call, the way `object_store` runs one integration suite
//! against every backend. A failed check panics with what was expected.
//!
//! Also a [`TestBed`]: the engine wired to the in-memory adapters and a
//! manual clock, with builders for job events; and [`simulate`]: the
//! engine against a simulated GitHub, EC2 and STS, faults and crashes
//! decided by a seed, its invariants checked.

mod bed;
mod credentials;
mod events;
mod hooked;
mod launcher;
mod registry;
mod sim;
mod store;

pub use bed::{JobEvents, TestBed};
pub use credentials::{CredentialsFixture, credential_provider};
pub use events::event_source;
pub use hooked::HookedStore;
pub use launcher::{LauncherFixture, cloud_launcher};
pub use registry::{RegistryFixture, runner_registry};
pub use sim::{
    FLOOD_CAP, GITHUB_PER_MINUTE, SimConfig, SimFailure, SimReport, sim_engine_config, simulate,
};
pub use store::{job_store, live_launch, sample_owner_id, sample_record};

mod vault;
pub use vault::credential_vault;
