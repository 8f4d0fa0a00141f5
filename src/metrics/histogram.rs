//! Latency histograms: an HdrHistogram of nanoseconds with a fixed range and precision, so
//! its memory is bounded and known in advance, recording never allocates, and the
//! histograms of several cores or intervals add up exactly.

use std::time::Duration;

use hdrhistogram::Histogram;

use super::registry::Latency;

/// Smallest value told apart from zero: 1 ns.
pub const LATENCY_LOWEST_NS: u64 = 1;
/// Largest value kept as it is: 60 s. Longer ones count as 60 s (their exact total still goes
/// into the sum).
pub const LATENCY_HIGHEST_NS: u64 = 60_000_000_000;
/// Significant decimal digits kept: 2, so a value is known to within 1%. Each histogram then
/// holds 3,840 counts (30 KiB) whatever is recorded.
pub const LATENCY_SIGNIFICANT_DIGITS: u8 = 2;

/// The upper bounds of the Prometheus buckets (`le`), from 1 µs to 10 s in 1-2.5-5 steps.
pub const LATENCY_BUCKETS: [Duration; 22] = [
    Duration::from_micros(1),
    Duration::from_nanos(2_500),
    Duration::from_micros(5),
    Duration::from_micros(10),
    Duration::from_micros(25),
    Duration::from_micros(50),
    Duration::from_micros(100),
    Duration::from_micros(250),
    Duration::from_micros(500),
    Duration::from_millis(1),
    Duration::from_micros(2_500),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_millis(2_500),
    Duration::from_secs(5),
    Duration::from_secs(10),
];

/// The distribution of one kind of duration on one core (or, merged, on several), with the
/// exact count and sum Prometheus wants beside the buckets.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    histogram: Histogram<u64>,
    /// Exact total of what was recorded, in nanoseconds (values beyond the range included).
    sum_ns: u64,
}

impl LatencyHistogram {
    /// An empty histogram over [`LATENCY_LOWEST_NS`]..=[`LATENCY_HIGHEST_NS`].
    #[must_use]
    pub fn new() -> Self {
        // The bounds are constants that satisfy HdrHistogram's rules (lowest >= 1, highest >=
        // 2 * lowest, digits <= 5); the unit test `new_histograms_have_the_documented_range`
        // builds one, so this cannot fail at run time.
        let histogram = Histogram::new_with_bounds(
            LATENCY_LOWEST_NS,
            LATENCY_HIGHEST_NS,
            LATENCY_SIGNIFICANT_DIGITS,
        )
        .expect("the latency histogram bounds are valid constants");
        LatencyHistogram {
            histogram,
            sum_ns: 0,
        }
    }

    /// Records one duration. Never allocates.
    pub fn record(&mut self, duration: Duration) {
        self.record_n(duration, 1);
    }

    /// Records `count` occurrences of one duration (a fan-out to `count` subscribers measured
    /// once). Never allocates.
    pub fn record_n(&mut self, duration: Duration, count: u64) {
        if count == 0 {
            return;
        }
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.histogram.saturating_record_n(nanos, count);
        self.sum_ns = self.sum_ns.saturating_add(nanos.saturating_mul(count));
    }

    /// Adds another histogram's samples to this one.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        // Both histograms were made by `new` with the same bounds, so every value of `other`
        // fits in `self`: `add` fails only when the other's values exceed this one's range.
        if self.histogram.add(&other.histogram).is_ok() {
            self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
        }
    }

    /// Forgets every sample, keeping the memory.
    pub fn reset(&mut self) {
        self.histogram.reset();
        self.sum_ns = 0;
    }

    /// How many samples were recorded.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The exact total of the samples.
    #[must_use]
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_ns)
    }

    /// The value at quantile `quantile` (0.0 to 1.0), to the histogram's precision; zero when
    /// empty.
    #[must_use]
    pub fn quantile(&self, quantile: f64) -> Duration {
        if self.histogram.is_empty() {
            return Duration::ZERO;
        }
        let nanos = self.histogram.value_at_quantile(quantile.clamp(0.0, 1.0));
        Duration::from_nanos(self.histogram.highest_equivalent(nanos))
    }

    /// The largest sample, to the histogram's precision (at most [`LATENCY_HIGHEST_NS`]); zero
    /// when empty.
    #[must_use]
    pub fn max(&self) -> Duration {
        if self.histogram.is_empty() {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.histogram.max())
    }

    /// How many samples are at most `bound`, to the histogram's precision (a Prometheus
    /// bucket; samples in the same 1% step as `bound` count as below it).
    #[must_use]
    pub fn count_at_most(&self, bound: Duration) -> u64 {
        let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        self.histogram.count_between(0, nanos)
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram::new()
    }
}

/// One histogram per [`Latency`] kind: what a core records, and what a snapshot carries.
#[derive(Clone, Debug, Default)]
pub struct LatencySet {
    histograms: [LatencyHistogram; Latency::COUNT],
}

impl LatencySet {
    /// The histogram of one kind.
    #[must_use]
    pub fn get(&self, kind: Latency) -> &LatencyHistogram {
        &self.histograms[kind.index()]
    }

    /// The histogram of one kind, to record into.
    pub fn get_mut(&mut self, kind: Latency) -> &mut LatencyHistogram {
        &mut self.histograms[kind.index()]
    }

    /// Adds every histogram of `other` to the matching one here.
    pub fn merge(&mut self, other: &LatencySet) {
        for (mine, theirs) in self.histograms.iter_mut().zip(&other.histograms) {
            mine.merge(theirs);
        }
    }

    /// Forgets every sample of every kind, keeping the memory.
    pub fn reset(&mut self) {
        for histogram in &mut self.histograms {
            histogram.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_histograms_have_the_documented_range() {
        let mut histogram = LatencyHistogram::new();
        histogram.record(Duration::from_nanos(LATENCY_LOWEST_NS));
        histogram.record(Duration::from_nanos(LATENCY_HIGHEST_NS));
        assert_eq!(histogram.count(), 2);
        let highest = histogram.max().as_nanos() as u64;
        assert!(
            (LATENCY_HIGHEST_NS..=LATENCY_HIGHEST_NS / 100 * 101).contains(&highest),
            "{highest}"
        );
    }

    #[test]
    fn memory_is_bounded_and_small() {
        let histogram = Histogram::<u64>::new_with_bounds(
            LATENCY_LOWEST_NS,
            LATENCY_HIGHEST_NS,
            LATENCY_SIGNIFICANT_DIGITS,
        )
        .unwrap();
        assert_eq!(histogram.distinct_values(), 3840);
    }

    #[test]
    fn values_beyond_the_range_saturate_but_keep_their_sum() {
        let mut histogram = LatencyHistogram::new();
        histogram.record(Duration::from_secs(3600));
        histogram.record(Duration::ZERO);
        assert_eq!(histogram.count(), 2);
        assert!(histogram.max() <= Duration::from_nanos(LATENCY_HIGHEST_NS / 100 * 101));
        assert_eq!(histogram.sum(), Duration::from_secs(3600));
        assert_eq!(histogram.count_at_most(Duration::from_micros(1)), 1);
    }

    #[test]
    fn quantiles_are_within_one_percent() {
        let mut histogram = LatencyHistogram::new();
        for micros in 1..=1000 {
            histogram.record(Duration::from_micros(micros));
        }
        let median = histogram.quantile(0.5).as_nanos() as f64;
        assert!((median - 500_000.0).abs() / 500_000.0 < 0.01, "{median}");
        let p99 = histogram.quantile(0.99).as_nanos() as f64;
        assert!((p99 - 990_000.0).abs() / 990_000.0 < 0.01, "{p99}");
        assert_eq!(histogram.sum(), Duration::from_micros(500_500));
    }

    #[test]
    fn empty_histograms_report_zero() {
        let histogram = LatencyHistogram::new();
        assert_eq!(histogram.count(), 0);
        assert_eq!(histogram.quantile(0.99), Duration::ZERO);
        assert_eq!(histogram.max(), Duration::ZERO);
        assert_eq!(histogram.sum(), Duration::ZERO);
    }

    #[test]
    fn record_n_weighs_one_measurement() {
        let mut histogram = LatencyHistogram::new();
        histogram.record_n(Duration::from_micros(10), 1000);
        histogram.record_n(Duration::from_micros(10), 0);
        assert_eq!(histogram.count(), 1000);
        assert_eq!(histogram.sum(), Duration::from_millis(10));
    }

    #[test]
    fn merging_adds_counts_sums_and_keeps_the_max() {
        let mut first = LatencyHistogram::new();
        let mut second = LatencyHistogram::new();
        first.record(Duration::from_micros(10));
        second.record(Duration::from_millis(20));
        second.record(Duration::from_millis(20));
        first.merge(&second);
        assert_eq!(first.count(), 3);
        assert_eq!(first.sum(), Duration::from_micros(40_010));
        assert!(first.max() >= Duration::from_millis(20));
        assert_eq!(first.count_at_most(Duration::from_micros(10)), 1);
        assert_eq!(first.count_at_most(Duration::from_millis(25)), 3);
        assert_eq!(second.count(), 2, "the source is unchanged");
    }

    #[test]
    fn buckets_are_cumulative_and_increasing() {
        assert!(LATENCY_BUCKETS.windows(2).all(|pair| pair[0] < pair[1]));
        let mut histogram = LatencyHistogram::new();
        for nanos in [500, 1_000, 3_000, 40_000_000, 20_000_000_000] {
            histogram.record(Duration::from_nanos(nanos));
        }
        let counts: Vec<u64> = LATENCY_BUCKETS
            .iter()
            .map(|bound| histogram.count_at_most(*bound))
            .collect();
        assert!(counts.windows(2).all(|pair| pair[0] <= pair[1]));
        assert_eq!(counts[0], 2, "500 ns and 1 µs are at most 1 µs");
        assert_eq!(counts[LATENCY_BUCKETS.len() - 1], 4, "20 s is beyond 10 s");
    }

    #[test]
    fn reset_forgets_everything() {
        let mut set = LatencySet::default();
        set.get_mut(Latency::AuthCheck)
            .record(Duration::from_millis(3));
        let mut other = LatencySet::default();
        other.merge(&set);
        assert_eq!(other.get(Latency::AuthCheck).count(), 1);
        assert_eq!(other.get(Latency::EventLoopLag).count(), 0);
        other.reset();
        assert_eq!(other.get(Latency::AuthCheck).count(), 0);
        assert_eq!(other.get(Latency::AuthCheck).sum(), Duration::ZERO);
    }
}
