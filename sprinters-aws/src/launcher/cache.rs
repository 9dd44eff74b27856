//! A small cache of look-ups (images, networks, security groups, spot
//! prices): entries live for a fixed time; concurrent misses of one key
//! share one look-up; failures are not kept.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sprinters_core::Result;
use sprinters_core::time::{Clock, Timestamp};

type Slot<V> = Arc<tokio::sync::Mutex<Option<(V, Timestamp)>>>;

/// Values by key, each kept for `ttl`.
#[derive(Debug)]
pub(crate) struct TtlCache<K, V> {
    ttl: Duration,
    slots: Mutex<HashMap<K, Slot<V>>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The value of `key`, looked up with `fetch` when missing or stale.
    pub(crate) async fn get<F, Fut>(&self, clock: &dyn Clock, key: &K, fetch: F) -> Result<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V>>,
    {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.entry(key.clone()).or_default().clone()
        };
        let mut entry = slot.lock().await;
        let now = clock.now();
        if let Some((value, _)) = entry.as_ref().filter(|(_, expires)| now < *expires) {
            return Ok(value.clone());
        }
        let value = fetch().await?;
        *entry = Some((value.clone(), now.saturating_add(self.ttl)));
        Ok(value)
    }

    /// Drops `key`, so the next `get` looks it up again.
    pub(crate) fn invalidate(&self, key: &K) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use sprinters_core::time::ManualClock;

    use super::*;

    #[tokio::test]
    async fn entries_expire_and_concurrent_misses_share_one_fetch() {
        let clock = ManualClock::default();
        let cache: TtlCache<u8, usize> = TtlCache::new(Duration::from_secs(60));
        let calls = AtomicUsize::new(0);
        let fetch = || async {
            tokio::task::yield_now().await;
            Ok(calls.fetch_add(1, Ordering::SeqCst))
        };
        let (a, b) = tokio::join!(cache.get(&clock, &1, fetch), cache.get(&clock, &1, fetch));
        assert_eq!((a.unwrap(), b.unwrap()), (0, 0), "one fetch for both");
        clock.advance(Duration::from_secs(59));
        assert_eq!(cache.get(&clock, &1, fetch).await.unwrap(), 0);
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            cache.get(&clock, &1, fetch).await.unwrap(),
            1,
            "stale after the ttl"
        );
        cache.invalidate(&1);
        assert_eq!(cache.get(&clock, &1, fetch).await.unwrap(), 2);
        let failed = cache
            .get(&clock, &2, || async {
                Err(sprinters_core::Error::unavailable("down"))
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(
            cache.get(&clock, &2, fetch).await.unwrap(),
            3,
            "failures are not kept"
        );
    }
}
