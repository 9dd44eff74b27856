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
pub use events::{EventSourceHarness, MemoryEventSourceHarness, event_source};
pub use hooked::HookedStore;
pub use launcher::{LauncherFixture, cloud_launcher};
pub use registry::{RegistryFixture, runner_registry};
pub use sim::{
    FLOOD_CAP, GITHUB_PER_MINUTE, SimConfig, SimFailure, SimReport, sim_engine_config, simulate,
};
pub use store::{job_store, live_launch, sample_owner_id, sample_record};

mod vault;
pub use vault::credential_vault;

/// Each suite's checks on their own, for an adapter that can run only some
/// of them, or wants one failure at a time. Each check states what it
/// needs besides the port. The suites' entry points
/// ([`job_store`], [`event_source`], ...) run every check of their suite.
pub mod checks {
    /// The [`EventSource`](crate::ports::EventSource) suite's checks.
    pub mod event_source {
        pub use crate::testing::events::{
            a_dropped_poll_loses_nothing, acknowledged_deliveries_do_not_come_back,
            every_delivery_comes_out_at_least_once, unacknowledged_deliveries_come_back,
        };
    }
    /// The [`CloudLauncher`](crate::ports::CloudLauncher) suite's checks.
    pub mod cloud_launcher {
        pub use crate::testing::launcher::{
            a_launch_is_idempotent_on_its_token, owned_instances_are_listed_by_controller_and_job,
            terminate_is_idempotent_and_describe_follows,
            unknown_instances_are_not_found_and_terminate_succeeds,
        };
    }
    /// The [`RunnerRegistry`](crate::ports::RunnerRegistry) suite's checks.
    pub mod runner_registry {
        pub use crate::testing::registry::{
            a_job_is_rerun_only_once_its_run_is_completed,
            jit_runners_are_created_replaced_and_removed,
            job_status_is_read_and_unknown_jobs_are_not_found,
            queued_jobs_and_run_origins_are_read,
        };
    }
    /// The [`JobStore`](crate::ports::JobStore) suite's checks.
    pub mod job_store {
        pub use crate::testing::store::{
            claims, claims_count_every_live_launch, claims_within_caps, deliveries,
            deliveries_recorded_with_writes, due_work, history, leases,
            put_get_and_compare_and_swap, queued_counts, retention, spare_runners, tenants,
        };
    }
}
