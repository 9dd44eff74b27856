//! Time as a port: a [`Clock`] the engine reads and sleeps on, so that tests
//! drive time with a [`ManualClock`] instead of waiting for it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// A point in time, in milliseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The epoch itself.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// Later than any real time; fits a signed 64-bit database column.
    pub const MAX: Timestamp = Timestamp(i64::MAX as u64);

    /// From milliseconds since the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// From a [`SystemTime`]; times before the epoch clamp to it.
    pub fn from_system_time(t: SystemTime) -> Self {
        let millis = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
        Self(u64::try_from(millis).unwrap_or(u64::MAX))
    }

    /// As a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }

    /// This time plus `d`, saturating.
    pub fn saturating_add(self, d: Duration) -> Self {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(ms))
    }

    /// This time minus `d`, saturating at the epoch.
    pub fn saturating_sub(self, d: Duration) -> Self {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self(self.0.saturating_sub(ms))
    }

    /// How long after `earlier` this is (zero if it is not after).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with milliseconds, e.g. `2026-11-26T12:00:00.000Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            humantime::format_rfc3339_millis(self.to_system_time())
        )
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The engine's source of time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
    /// A future that completes once `duration` has passed on this clock.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

/// Wall-clock time and tokio timers: the clock of a real deployment.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A clock that moves only when told to; sleepers wake when it passes their
/// deadline. Cloning shares the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<Mutex<ManualState>>,
}

#[derive(Debug)]
struct ManualState {
    now: Timestamp,
    next_id: u64,
    sleepers: BTreeMap<(Timestamp, u64), oneshot::Sender<()>>,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            inner: Arc::new(Mutex::new(ManualState {
                now: start,
                next_id: 0,
                sleepers: BTreeMap::new(),
            })),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ManualState> {
        // A poisoned lock only means a test panicked while holding it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves time forward by `d` and wakes every sleeper whose deadline passed.
    pub fn advance(&self, d: Duration) {
        let woken = {
            let mut s = self.state();
            s.now = s.now.saturating_add(d);
            let first_not_due = (s.now.saturating_add(Duration::from_millis(1)), 0);
            let later = s.sleepers.split_off(&first_not_due);
            std::mem::replace(&mut s.sleepers, later)
        };
        for (_, tx) in woken {
            let _ = tx.send(());
        }
    }

    /// How many sleepers are waiting on this clock.
    pub fn sleepers(&self) -> usize {
        self.state().sleepers.len()
    }
}

impl Default for ManualClock {
    /// Starts at 2026-01-01T00:00:00Z, an arbitrary but fixed point.
    fn default() -> Self {
        Self::new(Timestamp::from_millis(1_767_225_600_000))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        self.state().now
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        let (tx, rx) = oneshot::channel();
        {
            let mut s = self.state();
            let deadline = s.now.saturating_add(duration);
            if deadline <= s.now {
                return Box::pin(async {});
            }
            let id = s.next_id;
            s.next_id += 1;
            s.sleepers.insert((deadline, id), tx);
        }
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_displays_rfc3339() {
        let t = Timestamp::from_millis(1_767_225_600_123);
        assert_eq!(t.to_string(), "2026-01-01T00:00:00.123Z");
        assert_eq!(
            t.saturating_sub(Duration::from_secs(1)).as_millis(),
            1_767_225_599_123
        );
        assert_eq!(
            t.since(t.saturating_add(Duration::from_secs(5))),
            Duration::ZERO
        );
    }

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_only_when_advanced_past_deadline() {
        let clock = ManualClock::default();
        let start = clock.now();
        let short = tokio::spawn(clock.sleep(Duration::from_secs(10)));
        let long = tokio::spawn(clock.sleep(Duration::from_secs(60)));
        assert_eq!(clock.sleepers(), 2);

        clock.advance(Duration::from_secs(9));
        assert_eq!(clock.sleepers(), 2, "nothing is due after 9 s");
        clock.advance(Duration::from_secs(1));
        short.await.unwrap();
        assert_eq!(clock.sleepers(), 1);
        assert!(!long.is_finished());
        clock.advance(Duration::from_secs(50));
        long.await.unwrap();
        assert_eq!(clock.now().since(start), Duration::from_secs(60));
    }
}
