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
    pub max_ms: f64,
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
        let micros = u64::try_from(latency.as_micros()).unwrap_or(MAX_MICROS);
        self.micros.saturating_record(micros.clamp(1, MAX_MICROS));
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
            max_ms: ms(self.micros.max()),
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
