//! [`SyncLatency`]: how long group commit's write + `fdatasync` take, as a
//! histogram cheap enough to update on every sync (atomics, no lock).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the histogram's buckets, in microseconds.
const BOUNDS_MICROS: [u64; 13] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000,
];

/// The counters behind [`SyncLatency`].
#[derive(Debug, Default)]
pub(crate) struct SyncTimer {
    // One more than the bounds: the last counts everything slower.
    buckets: [AtomicU64; BOUNDS_MICROS.len() + 1],
    sum_micros: AtomicU64,
}

impl SyncTimer {
    pub(crate) fn record(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_MICROS
            .iter()
            .position(|&b| micros <= b)
            .unwrap_or(BOUNDS_MICROS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> SyncLatency {
        SyncLatency {
            counts: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum: Duration::from_micros(self.sum_micros.load(Ordering::Relaxed)),
        }
    }
}

/// A snapshot of the store's sync latency histogram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncLatency {
    counts: Vec<u64>,
    sum: Duration,
}

impl SyncLatency {
    /// `(upper bound, syncs no slower)` per bucket, cumulative as
    /// Prometheus wants them; the last bound is `None` (+Inf).
    pub fn buckets(&self) -> Vec<(Option<Duration>, u64)> {
        let mut total = 0;
        self.counts
            .iter()
            .enumerate()
            .map(|(i, n)| {
                total += n;
                (
                    BOUNDS_MICROS.get(i).map(|&b| Duration::from_micros(b)),
                    total,
                )
            })
            .collect()
    }

    /// How many syncs.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Their total time.
    pub fn sum(&self) -> Duration {
        self.sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncs_fall_into_cumulative_buckets() {
        let timer = SyncTimer::default();
        timer.record(Duration::from_micros(80));
        timer.record(Duration::from_micros(900));
        timer.record(Duration::from_secs(3));
        let snapshot = timer.snapshot();
        assert_eq!(snapshot.count(), 3);
        assert_eq!(snapshot.sum(), Duration::from_micros(3_000_980));
        let buckets = snapshot.buckets();
        assert_eq!(buckets[0], (Some(Duration::from_micros(100)), 1));
        assert_eq!(buckets[3], (Some(Duration::from_millis(1)), 2));
        assert_eq!(buckets[12], (Some(Duration::from_secs(1)), 2));
        assert_eq!(buckets[13], (None, 3), "+Inf counts every sync");
    }
}
