//! Latency figures: durations recorded in an HDR histogram and summed up as the
//! percentiles every report prints (`superhero bench`, `simulate --json`).

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Percentiles of a latency, in milliseconds; all zero when nothing was recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    #[serde(default)]
    pub p99_9_ms: f64,
    #[serde(default)]
    pub p99_99_ms: f64,
    pub max_ms: f64,
    /// How many latencies the percentiles come from.
    #[serde(default)]
    pub count: u64,
}

/// Records durations from 1 µs to an hour with 3 significant figures; longer ones
/// count as an hour.
pub struct LatencyRecorder {
    micros: Histogram<u64>,
}

const MAX_MICROS: u64 = 3_600_000_000;

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self {
            micros: Histogram::new_with_bounds(1, MAX_MICROS, 3)
                .expect("1 µs to an hour at 3 figures is a valid histogram"),
        }
    }
}

impl LatencyRecorder {
    /// A recorder with nothing recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one latency.
    pub fn record(&mut self, latency: Duration) {
        self.record_n(latency, 1);
    }

    /// Adds the same latency `count` times (the messages of one batch).
    pub fn record_n(&mut self, latency: Duration, count: u64) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(MAX_MICROS);
        // Within the histogram's bounds, so a count can only saturate, not fail.
        let _ = self.micros.record_n(micros.clamp(1, MAX_MICROS), count);
    }

    /// Adds everything `other` recorded.
    pub fn merge(&mut self, other: &LatencyRecorder) {
        // Both share the bounds of `default`, so adding cannot fail.
        let _ = self.micros.add(&other.micros);
    }

    /// How many durations were recorded.
    pub fn len(&self) -> u64 {
        self.micros.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The percentiles of what was recorded (zeros when nothing was).
    pub fn summary(&self) -> Latency {
        if self.is_empty() {
            return Latency::default();
        }
        let ms = |micros: u64| micros as f64 / 1_000.0;
        Latency {
            p50_ms: ms(self.micros.value_at_quantile(0.50)),
            p95_ms: ms(self.micros.value_at_quantile(0.95)),
            p99_ms: ms(self.micros.value_at_quantile(0.99)),
            p99_9_ms: ms(self.micros.value_at_quantile(0.999)),
            p99_99_ms: ms(self.micros.value_at_quantile(0.9999)),
            max_ms: ms(self.micros.max()),
            count: self.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_what_was_recorded() {
        let mut r = LatencyRecorder::new();
        assert_eq!(r.summary(), Latency::default());
        for ms in 1..=100 {
            r.record(Duration::from_millis(ms));
        }
        let s = r.summary();
        assert_eq!(r.len(), 100);
        // 3 significant figures: within 0.1% of the exact value.
        assert!((s.p50_ms - 50.0).abs() < 0.1, "{s:?}");
        assert!((s.p95_ms - 95.0).abs() < 0.1, "{s:?}");
        assert!((s.p99_ms - 99.0).abs() < 0.1, "{s:?}");
        assert!((s.max_ms - 100.0).abs() < 0.1, "{s:?}");
        assert_eq!(s.count, 100);
    }

    #[test]
    fn the_far_tail_and_merged_recorders() {
        let mut r = LatencyRecorder::new();
        r.record_n(Duration::from_millis(1), 99_980);
        r.record_n(Duration::from_millis(50), 15);
        let mut other = LatencyRecorder::new();
        other.record_n(Duration::from_millis(900), 5);
        r.merge(&other);
        let s = r.summary();
        assert_eq!(s.count, 100_000);
        assert!((s.p99_ms - 1.0).abs() < 0.01, "{s:?}");
        // 99.9%: still the 1 ms bulk; 99.99%: past the 50 ms ones into the 900s.
        assert!((s.p99_9_ms - 1.0).abs() < 0.01, "{s:?}");
        assert!((s.p99_99_ms - 50.0).abs() < 0.1, "{s:?}");
        assert!((s.max_ms - 900.0).abs() < 1.0, "{s:?}");
    }

    #[test]
    fn extremes_are_clamped_not_lost() {
        let mut r = LatencyRecorder::new();
        r.record(Duration::ZERO);
        r.record(Duration::from_secs(10_000));
        assert_eq!(r.len(), 2);
        assert!((r.summary().max_ms - 3_600_000.0).abs() < 3_600.0);
    }
}
