//! Latency histograms: how they are created (units, range, precision) and the percentile
//! summary every report prints.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Significant decimal digits every histogram keeps (0.1% value resolution).
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// Largest recordable publish→deliver latency: one hour, in nanoseconds. Larger values are
/// clamped to it (a message an hour late is lost for any practical purpose).
pub const MAX_LATENCY_NS: u64 = 3_600_000_000_000;

/// A histogram of publish→deliver latencies in nanoseconds.
pub fn new_latency_histogram() -> Histogram<u64> {
    // hdrhistogram refuses only a low bound of 0, a high bound below twice the low one, or
    // more than 5 significant digits; these constants are none of those.
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// A histogram of connection set-up times (TCP connect to CONNACK) in nanoseconds.
pub fn new_connect_histogram() -> Histogram<u64> {
    new_latency_histogram()
}

/// The percentiles a report shows, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Number of recorded values.
    pub count: u64,
    /// Smallest value.
    pub min_ms: f64,
    /// Mean value.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest value.
    pub max_ms: f64,
}

/// Nanoseconds to milliseconds.
pub fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

impl Percentiles {
    /// The summary of a nanosecond histogram (all zero when it is empty).
    pub fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        Self {
            count: histogram.len(),
            min_ms: ms(histogram.min()),
            mean_ms: histogram.mean() / 1e6,
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p90_ms: ms(histogram.value_at_quantile(0.90)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let mut histogram = new_latency_histogram();
        for micros in 1..=10_000u64 {
            histogram.record(micros * 1_000).unwrap();
        }
        let p = Percentiles::of(&histogram);
        assert_eq!(p.count, 10_000);
        let close = |a: f64, b: f64| (a - b).abs() / b < 0.002;
        assert!(close(p.p50_ms, 5.0), "{}", p.p50_ms);
        assert!(close(p.p90_ms, 9.0), "{}", p.p90_ms);
        assert!(close(p.p99_ms, 9.9), "{}", p.p99_ms);
        assert!(close(p.p999_ms, 9.99), "{}", p.p999_ms);
        assert!(close(p.max_ms, 10.0), "{}", p.max_ms);
        assert!(close(p.min_ms, 0.001), "{}", p.min_ms);
        assert!(close(p.mean_ms, 5.0005), "{}", p.mean_ms);
    }

    #[test]
    fn empty_histogram_gives_zeros_and_huge_values_are_clamped() {
        let mut histogram = new_latency_histogram();
        assert_eq!(Percentiles::of(&histogram), Percentiles::default());
        histogram.saturating_record(u64::MAX);
        assert!(histogram.max() >= MAX_LATENCY_NS);
        assert!(histogram.max() < MAX_LATENCY_NS + MAX_LATENCY_NS / 100);
    }
}
