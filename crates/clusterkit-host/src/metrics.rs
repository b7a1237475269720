//! Health-check latency as histograms: what the event stream cannot tell
//! (a healthy check emits no event). The engine thread records each reply
//! with relaxed atomics, no lock, no allocation; exporters read snapshots
//! from any thread ([`Host::check_latency`](crate::Host::check_latency)).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The upper bounds of the latency buckets, in microseconds: 100 µs to 5 s,
/// around the budgets (`looks_alive` ~50 ms, `is_alive` a few hundred).
pub const CHECK_LATENCY_BUCKETS_US: [u64; 15] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000,
];

/// Which health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// `looks_alive`, cheap and frequent.
    LooksAlive,
    /// `is_alive`, thorough and rarer.
    IsAlive,
}

impl CheckKind {
    /// Both kinds.
    pub const ALL: [CheckKind; 2] = [CheckKind::LooksAlive, CheckKind::IsAlive];

    /// The entry point's name.
    pub const fn name(self) -> &'static str {
        match self {
            CheckKind::LooksAlive => "looks_alive",
            CheckKind::IsAlive => "is_alive",
        }
    }
}

/// One histogram: a counter per bucket (not cumulative; the last is
/// past every bound), the count and the sum.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; CHECK_LATENCY_BUCKETS_US.len() + 1],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    fn record(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let bucket = CHECK_LATENCY_BUCKETS_US.partition_point(|&bound| bound < us);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> LatencySnapshot {
        let mut cumulative = 0;
        let mut buckets = [(0, 0); CHECK_LATENCY_BUCKETS_US.len()];
        for (i, bound) in CHECK_LATENCY_BUCKETS_US.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            buckets[i] = (*bound, cumulative);
        }
        let past_all = self.buckets[CHECK_LATENCY_BUCKETS_US.len()].load(Ordering::Relaxed);
        LatencySnapshot {
            buckets,
            // Read apart from the buckets, the count may run ahead of them by
            // a check or two; the cumulative total is never below a bucket.
            count: cumulative + past_all,
            sum: Duration::from_micros(self.sum_us.load(Ordering::Relaxed)),
        }
    }
}

/// A health-check latency histogram at one moment, as Prometheus wants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencySnapshot {
    /// (upper bound in µs, checks at or below it): cumulative, one per
    /// [`CHECK_LATENCY_BUCKETS_US`].
    pub buckets: [(u64, u64); CHECK_LATENCY_BUCKETS_US.len()],
    /// Every check (the `+Inf` bucket).
    pub count: u64,
    /// The latencies added up.
    pub sum: Duration,
}

/// The latencies of every health check reply, host → monitor → resource →
/// host, by kind.
#[derive(Debug, Default)]
pub(crate) struct CheckLatency {
    looks_alive: Histogram,
    is_alive: Histogram,
}

impl CheckLatency {
    pub(crate) fn record(&self, kind: CheckKind, latency: Duration) {
        self.of(kind).record(latency);
    }

    pub(crate) fn snapshot(&self, kind: CheckKind) -> LatencySnapshot {
        self.of(kind).snapshot()
    }

    fn of(&self, kind: CheckKind) -> &Histogram {
        match kind {
            CheckKind::LooksAlive => &self.looks_alive,
            CheckKind::IsAlive => &self.is_alive,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_the_first_bucket_that_holds_them() {
        let h = CheckLatency::default();
        for us in [50, 100, 101, 7_000, 9_000_000] {
            h.record(CheckKind::IsAlive, Duration::from_micros(us));
        }
        let s = h.snapshot(CheckKind::IsAlive);
        assert_eq!(s.buckets[0], (100, 2)); // 50 and 100: bounds are inclusive
        assert_eq!(s.buckets[1], (250, 3));
        assert_eq!(s.buckets[5], (5_000, 3));
        assert_eq!(s.buckets[6], (10_000, 4));
        assert_eq!(s.buckets[14], (5_000_000, 4));
        assert_eq!(s.count, 5); // 9 s: only in +Inf
        assert_eq!(s.sum, Duration::from_micros(9_007_251));
        assert_eq!(h.snapshot(CheckKind::LooksAlive).count, 0);
    }
}
