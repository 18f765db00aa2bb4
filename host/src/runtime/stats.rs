//! Per-version call statistics: counts and a latency histogram, recorded on
//! every production call without a lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Buckets grow by this factor: percentiles are exact to within 10 %.
const GROWTH: f64 = 1.1;
/// Enough buckets to reach past a minute (1.1^200 µs is about 190 s).
const BUCKETS: usize = 200;

/// Calls, failures and call times of one component version.
pub struct CallStats {
    calls: AtomicU64,
    errors: AtomicU64,
    buckets: Box<[AtomicU64]>,
}

impl Default for CallStats {
    fn default() -> Self {
        Self {
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// What an operator sees of a version's calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatsSnapshot {
    /// Production calls so far.
    pub calls: u64,
    /// Calls that trapped, ran out of time or memory, or answered nonsense.
    pub errors: u64,
    /// Median call time in microseconds (instantiation included), if any call ran.
    pub p50_us: Option<u64>,
    /// 99th-percentile call time in microseconds.
    pub p99_us: Option<u64>,
}

fn bucket(elapsed: Duration) -> usize {
    let micros = elapsed.as_secs_f64() * 1e6;
    if micros <= 1.0 {
        return 0;
    }
    ((micros.ln() / GROWTH.ln()) as usize + 1).min(BUCKETS - 1)
}

/// The upper bound of bucket `index`, in microseconds.
fn upper_bound(index: usize) -> u64 {
    GROWTH.powi(index as i32).ceil() as u64
}

impl CallStats {
    /// Records one call; returns the calls and errors counted so far.
    pub fn record(&self, elapsed: Duration, failed: bool) -> (u64, u64) {
        self.buckets[bucket(elapsed)].fetch_add(1, Ordering::Relaxed);
        let errors =
            if failed { self.errors.fetch_add(1, Ordering::Relaxed) + 1 } else { self.errors.load(Ordering::Relaxed) };
        let calls = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        (calls, errors)
    }

    /// The counts and percentiles now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let counts: Vec<u64> = self.buckets.iter().map(|count| count.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        let percentile = |fraction: f64| {
            if total == 0 {
                return None;
            }
            let rank = ((total as f64) * fraction).ceil().max(1.0) as u64;
            let mut seen = 0;
            counts
                .iter()
                .position(|count| {
                    seen += count;
                    seen >= rank
                })
                .map(upper_bound)
        };
        StatsSnapshot {
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            p50_us: percentile(0.50),
            p99_us: percentile(0.99),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_within_ten_percent() {
        let stats = CallStats::default();
        for micros in 1..=1000u64 {
            stats.record(Duration::from_micros(micros), micros % 100 == 0);
        }
        let snapshot = stats.snapshot();
        assert_eq!((snapshot.calls, snapshot.errors), (1000, 10));
        let p50 = snapshot.p50_us.unwrap() as f64;
        let p99 = snapshot.p99_us.unwrap() as f64;
        assert!((500.0..=550.0).contains(&p50), "{p50}");
        assert!((990.0..=1090.0).contains(&p99), "{p99}");
        assert_eq!(CallStats::default().snapshot(), StatsSnapshot::default());
    }
}
