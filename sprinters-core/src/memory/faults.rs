//! Fault injection for the in-memory adapters.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};

use super::lock;
use crate::{Error, Result};

type MakeError = Arc<dyn Fn() -> Error + Send + Sync>;

/// Errors queued per operation name: the next calls of that operation fail
/// with them, in order.
#[derive(Default)]
pub struct Faults {
    queued: Mutex<HashMap<&'static str, VecDeque<MakeError>>>,
}

impl Faults {
    /// The next `times` calls of `operation` fail with `make()`.
    pub fn fail_next(
        &self,
        operation: &'static str,
        times: usize,
        make: impl Fn() -> Error + Send + Sync + 'static,
    ) {
        let make: MakeError = Arc::new(make);
        let mut queued = lock(&self.queued);
        let q = queued.entry(operation).or_default();
        for _ in 0..times {
            q.push_back(make.clone());
        }
    }

    /// Clears every queued fault.
    pub fn clear(&self) {
        lock(&self.queued).clear();
    }

    /// Fails if a fault is queued for `operation`.
    pub fn check(&self, operation: &'static str) -> Result<()> {
        let make = lock(&self.queued)
            .get_mut(operation)
            .and_then(VecDeque::pop_front);
        match make {
            Some(make) => Err(make()),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let queued = lock(&self.queued);
        let counts: HashMap<_, _> = queued.iter().map(|(k, v)| (*k, v.len())).collect();
        f.debug_struct("Faults").field("queued", &counts).finish()
    }
}
