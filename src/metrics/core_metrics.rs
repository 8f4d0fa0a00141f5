//! The metrics one core records as it works: plain `Cell` counters and `RefCell`
//! histograms that only that core touches (no atomics, no locks on the message path), turned
//! into a [`MetricsSnapshot`] value once per snapshot period.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use super::histogram::LatencySet;
use super::registry::{Counter, DropReason, Gauge, Latency};
use super::slow_clients::TopSlowClients;
use super::snapshot::MetricsSnapshot;

/// One fan-out in this many, on each core, is timed for the publish-to-delivery histogram:
/// the clock is read once for it, and once more when each subscriber's copy is written.
pub const PUBLISH_LATENCY_SAMPLE_EVERY: u32 = 8;

/// What one core records: owned by the core's shard, updated by its tasks through `&self`.
/// Every update is a load and a store of a `Cell` (or, for a latency, a short `RefCell`
/// borrow and an array increment): nothing allocates.
#[derive(Debug)]
pub struct CoreMetrics {
    core: usize,
    counters: [Cell<u64>; Counter::COUNT],
    gauges: [Cell<u64>; Gauge::COUNT],
    drops: [Cell<u64>; DropReason::COUNT],
    /// Samples since the previous snapshot; never borrowed across an `.await`.
    latencies: RefCell<LatencySet>,
    /// The core's coarse clock, in ticks of its housekeeping: when a frame was queued, so
    /// that the age of a client's oldest queued message costs no clock read per message.
    clock: Cell<u32>,
    /// Time one fan-out in this many (0: none, when no snapshot is ever taken).
    sample_every: u32,
    /// Fan-outs left until the next timed one.
    sample_countdown: Cell<u32>,
}

impl CoreMetrics {
    /// The metrics of core `core`, all zero, timing no fan-out.
    #[must_use]
    pub fn new(core: usize) -> Self {
        CoreMetrics {
            core,
            counters: Default::default(),
            gauges: Default::default(),
            drops: Default::default(),
            latencies: RefCell::new(LatencySet::default()),
            clock: Cell::new(0),
            sample_every: 0,
            sample_countdown: Cell::new(0),
        }
    }

    /// These metrics, timing one fan-out in `every` (the first one included; 0 = none).
    #[must_use]
    pub fn with_latency_sampling(mut self, every: u32) -> Self {
        self.sample_every = every;
        self
    }

    /// The core these metrics describe.
    #[must_use]
    pub fn core(&self) -> usize {
        self.core
    }

    /// Adds `n` to a counter.
    pub fn add(&self, counter: Counter, n: u64) {
        let cell = &self.counters[counter.index()];
        cell.set(cell.get().wrapping_add(n));
    }

    /// Adds one to a counter.
    pub fn increment(&self, counter: Counter) {
        self.add(counter, 1);
    }

    /// The current value of a counter.
    #[must_use]
    pub fn counter(&self, counter: Counter) -> u64 {
        self.counters[counter.index()].get()
    }

    /// Sets a gauge (typically just before [`CoreMetrics::snapshot`], from the core's state).
    pub fn set(&self, gauge: Gauge, value: u64) {
        self.gauges[gauge.index()].set(value);
    }

    /// Raises or lowers a gauge kept up to date as things happen.
    pub fn adjust(&self, gauge: Gauge, delta: i64) {
        let cell = &self.gauges[gauge.index()];
        cell.set(cell.get().saturating_add_signed(delta));
    }

    /// The current value of a gauge.
    #[must_use]
    pub fn gauge(&self, gauge: Gauge) -> u64 {
        self.gauges[gauge.index()].get()
    }

    /// Counts `n` messages dropped for `reason`.
    pub fn dropped(&self, reason: DropReason, n: u64) {
        let cell = &self.drops[reason.index()];
        cell.set(cell.get().wrapping_add(n));
    }

    /// Messages dropped so far for `reason`.
    #[must_use]
    pub fn drop_count(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()].get()
    }

    /// Records one duration of a kind.
    pub fn record(&self, kind: Latency, duration: Duration) {
        self.latencies.borrow_mut().get_mut(kind).record(duration);
    }

    /// Records `count` occurrences of one duration (one clock reading for a whole fan-out).
    pub fn record_n(&self, kind: Latency, duration: Duration, count: u64) {
        self.latencies
            .borrow_mut()
            .get_mut(kind)
            .record_n(duration, count);
    }

    /// Called once per fan-out: `Some(now)` for the one in [`PUBLISH_LATENCY_SAMPLE_EVERY`]
    /// that is timed (its subscribers' copies carry that instant to their writes), `None`
    /// for the others, without reading the clock.
    pub fn latency_sample(&self) -> Option<Instant> {
        if self.sample_every == 0 {
            return None;
        }
        let left = self.sample_countdown.get();
        if left > 0 {
            self.sample_countdown.set(left - 1);
            return None;
        }
        self.sample_countdown.set(self.sample_every - 1);
        Some(Instant::now())
    }

    /// Advances the coarse clock (the shard's housekeeping calls it every tick).
    pub fn set_clock(&self, ticks: u32) {
        self.clock.set(ticks);
    }

    /// The coarse clock, in ticks.
    #[must_use]
    pub fn clock(&self) -> u32 {
        self.clock.get()
    }

    /// The value to send the aggregating core: every counter, gauge and drop count as they
    /// are now, the latency samples since the previous snapshot (which this resets), and the
    /// slow clients the caller gathered. Allocates the next period's histograms (about
    /// 120 KiB), once per period, off the message path.
    pub fn snapshot(&self, slow_clients: TopSlowClients) -> MetricsSnapshot {
        let latencies = std::mem::take(&mut *self.latencies.borrow_mut());
        MetricsSnapshot {
            core: self.core,
            counters: std::array::from_fn(|i| self.counters[i].get()),
            gauges: std::array::from_fn(|i| self.gauges[i].get()),
            drops: std::array::from_fn(|i| self.drops[i].get()),
            latencies,
            slow_clients,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_copies_values_and_takes_the_interval_samples() {
        let metrics = CoreMetrics::new(3);
        metrics.increment(Counter::Connects);
        metrics.add(Counter::BytesReceived, 1500);
        metrics.set(Gauge::ClientsConnected, 7);
        metrics.adjust(Gauge::Subscriptions, 4);
        metrics.adjust(Gauge::Subscriptions, -1);
        metrics.adjust(Gauge::QueuedMessages, -1);
        metrics.dropped(DropReason::MaxQueuedBytes, 2);
        metrics.record(Latency::AuthCheck, Duration::from_millis(2));
        metrics.record_n(Latency::PublishDelivery, Duration::from_micros(30), 100);

        let first = metrics.snapshot(TopSlowClients::new(1));
        assert_eq!(first.core, 3);
        assert_eq!(first.counter(Counter::Connects), 1);
        assert_eq!(first.counter(Counter::BytesReceived), 1500);
        assert_eq!(first.gauge(Gauge::ClientsConnected), 7);
        assert_eq!(first.gauge(Gauge::Subscriptions), 3);
        assert_eq!(first.gauge(Gauge::QueuedMessages), 0, "saturates at zero");
        assert_eq!(first.dropped(DropReason::MaxQueuedBytes), 2);
        assert_eq!(first.latency(Latency::AuthCheck).count(), 1);
        assert_eq!(first.latency(Latency::PublishDelivery).count(), 100);

        metrics.increment(Counter::Connects);
        let second = metrics.snapshot(TopSlowClients::new(1));
        assert_eq!(second.counter(Counter::Connects), 2, "counters are totals");
        assert_eq!(second.gauge(Gauge::ClientsConnected), 7, "gauges stay set");
        assert_eq!(
            second.latency(Latency::AuthCheck).count(),
            0,
            "histograms restart each snapshot"
        );
        assert_eq!(metrics.counter(Counter::Connects), 2);
        assert_eq!(metrics.gauge(Gauge::ClientsConnected), 7);
    }

    #[test]
    fn one_fan_out_in_n_is_timed_starting_with_the_first() {
        let off = CoreMetrics::new(0);
        assert!((0..20).all(|_| off.latency_sample().is_none()));
        let metrics = CoreMetrics::new(0).with_latency_sampling(4);
        let timed: Vec<bool> = (0..9).map(|_| metrics.latency_sample().is_some()).collect();
        assert_eq!(
            timed,
            [true, false, false, false, true, false, false, false, true]
        );
    }

    #[test]
    fn the_coarse_clock_is_what_was_set() {
        let metrics = CoreMetrics::new(0);
        assert_eq!(metrics.clock(), 0);
        metrics.set_clock(42);
        assert_eq!(metrics.clock(), 42);
        metrics.dropped(DropReason::Expired, 3);
        assert_eq!(metrics.drop_count(DropReason::Expired), 3);
    }
}
