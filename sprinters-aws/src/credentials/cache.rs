//! Credentials per account, kept until shortly before they expire, with one
//! refresh at a time per account (single flight).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sprinters_core::Result;
use sprinters_core::domain::{AccountId, OwnerId};
use sprinters_core::ports::Credentials;
use sprinters_core::time::Clock;

type Slot = Arc<tokio::sync::Mutex<Option<Credentials>>>;

/// One owner's connection to one account: credentials are never shared
/// between two owners' connections, even to the same account.
pub(crate) type ConnectionKey = (OwnerId, AccountId);

/// A cache of credentials by connection.
#[derive(Debug)]
pub(crate) struct CredentialCache {
    clock: Arc<dyn Clock>,
    refresh_before: Duration,
    slots: Mutex<HashMap<ConnectionKey, Slot>>,
}

impl CredentialCache {
    /// Credentials are refreshed `refresh_before` their expiry.
    pub(crate) fn new(clock: Arc<dyn Clock>, refresh_before: Duration) -> Self {
        Self {
            clock,
            refresh_before,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The cached credentials of `key` while fresh, else what `fetch`
    /// gets (once for all concurrent callers). Errors are not cached.
    pub(crate) async fn get<F, Fut>(&self, key: &ConnectionKey, fetch: F) -> Result<Credentials>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Credentials>>,
    {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.entry(key.clone()).or_default().clone()
        };
        // Callers queue here while one refreshes, then find it fresh.
        let mut cached = slot.lock().await;
        if let Some(credentials) = cached.as_ref().filter(|c| self.is_fresh(c)) {
            return Ok(credentials.clone());
        }
        let fresh = fetch().await?;
        *cached = Some(fresh.clone());
        Ok(fresh)
    }

    /// Forgets the credentials of `key` (its role changed or went).
    pub(crate) fn evict(&self, key: &ConnectionKey) {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    fn is_fresh(&self, credentials: &Credentials) -> bool {
        match credentials.expires_at {
            None => true,
            Some(expires) => self.clock.now() < expires.saturating_sub(self.refresh_before),
        }
    }
}
