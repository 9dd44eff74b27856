//! In-memory adapters of every port: the reference the conformance suites
//! are checked against, the adapters of the engine's tests and benchmarks,
//! and a simulated GitHub, EC2 and STS with fault injection.

mod credentials;
mod events;
mod faults;
mod launcher;
mod registry;
mod store;

pub use credentials::MemoryCredentials;
pub use events::MemoryEventSource;
pub use faults::Faults;
pub use launcher::{MemoryLauncher, SimInstance};
pub use registry::{MemoryRegistry, SimRunner};
pub use store::MemoryJobStore;

/// Locks a mutex, ignoring poisoning: the in-memory state stays usable after
/// a test thread panicked while holding it.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
