//! The aggregating core's view of the whole broker: the latest snapshot of every core, their
//! sum, the load averages, the figures only the whole broker has (maximum clients, memory,
//! uptime), and what `$SYS` and `/metrics` are rendered from.
//!
//! Every core sends a [`MetricsSnapshot`] once per snapshot period; [`MetricsAggregator::accept`]
//! takes each as it arrives, in any order. [`MetricsAggregator::complete_round`], on the
//! aggregating core's own timer, then sums the cores and samples the load averages. Counters
//! are totals, so a snapshot that arrives late or never only delays its core's figures.

use std::time::{Duration, Instant};

use super::histogram::{LatencyHistogram, LatencySet};
use super::load::LoadFigures;
use super::process::ProcessMemory;
use super::registry::{Gauge, Latency};
use super::slow_clients::TopSlowClients;
use super::snapshot::MetricsSnapshot;

/// The core that aggregates the others' snapshots, publishes `$SYS` and serves `/metrics`.
pub const AGGREGATOR_CORE: usize = 0;

/// What the aggregator knows of one core.
#[derive(Debug)]
struct CoreRecord {
    /// Its latest snapshot, with every latency sample it has sent since it started.
    latest: MetricsSnapshot,
    /// The load averages of its own counters.
    load: LoadFigures,
    /// Its event-loop lag samples received during the round under way.
    lag_this_round: LatencyHistogram,
    /// Its event-loop lag samples of the last completed round.
    lag_last_round: LatencyHistogram,
    /// Whether it sent a snapshot during the round under way.
    reported: bool,
}

impl CoreRecord {
    fn new(core: usize, slow_clients_top: usize) -> Self {
        CoreRecord {
            latest: MetricsSnapshot::empty(core, slow_clients_top),
            load: LoadFigures::default(),
            lag_this_round: LatencyHistogram::new(),
            lag_last_round: LatencyHistogram::new(),
            reported: false,
        }
    }
}

/// The whole broker's metrics, kept on [`AGGREGATOR_CORE`].
#[derive(Debug)]
pub struct MetricsAggregator {
    started: Instant,
    slow_clients_top: usize,
    cores: Vec<CoreRecord>,
    /// The sum of the cores at the last completed round.
    total: MetricsSnapshot,
    /// Every core's latency samples received during the round under way.
    latencies_this_round: LatencySet,
    /// Every core's latency samples of the last completed round.
    latencies_last_round: LatencySet,
    load: LoadFigures,
    clients_maximum: u64,
    memory: ProcessMemory,
    heap_maximum: Option<u64>,
    last_round: Instant,
}

impl MetricsAggregator {
    /// An aggregator for `cores` cores of a broker that started at `started`, reporting at most
    /// `slow_clients_top` slow clients.
    #[must_use]
    pub fn new(cores: usize, slow_clients_top: usize, started: Instant) -> Self {
        MetricsAggregator {
            started,
            slow_clients_top,
            cores: (0..cores)
                .map(|core| CoreRecord::new(core, slow_clients_top))
                .collect(),
            total: MetricsSnapshot::empty(AGGREGATOR_CORE, slow_clients_top),
            latencies_this_round: LatencySet::default(),
            latencies_last_round: LatencySet::default(),
            load: LoadFigures::default(),
            clients_maximum: 0,
            memory: ProcessMemory::default(),
            heap_maximum: None,
            last_round: started,
        }
    }

    /// Takes a core's snapshot: it replaces that core's previous one, and its latency samples
    /// are added to the core's totals and to the round under way. A snapshot of a core beyond
    /// the count given to [`MetricsAggregator::new`] makes room for it.
    pub fn accept(&mut self, snapshot: MetricsSnapshot) {
        let core = snapshot.core;
        while self.cores.len() <= core {
            let next = self.cores.len();
            self.cores
                .push(CoreRecord::new(next, self.slow_clients_top));
        }
        let record = &mut self.cores[core];
        record.reported = true;
        let previous = std::mem::replace(&mut record.latest, snapshot);
        let arrived = &record.latest.latencies;
        self.latencies_this_round.merge(arrived);
        record
            .lag_this_round
            .merge(arrived.get(Latency::EventLoopLag));
        record.latest.latencies.merge(&previous.latencies);
    }

    /// Closes a round at `now`: sums the cores' latest snapshots, samples the load averages,
    /// updates the maximum number of clients and the memory figures (`memory`, typically
    /// [`ProcessMemory::read`]), and makes this round's latency samples the ones `$SYS`
    /// reports.
    pub fn complete_round(&mut self, now: Instant, memory: ProcessMemory) {
        let elapsed = now.saturating_duration_since(self.last_round);
        self.last_round = now;
        let mut total = MetricsSnapshot::empty(AGGREGATOR_CORE, self.slow_clients_top);
        for record in &mut self.cores {
            total.merge(&record.latest);
            record.load.sample(&record.latest, elapsed);
            std::mem::swap(&mut record.lag_last_round, &mut record.lag_this_round);
            record.lag_this_round.reset();
            record.reported = false;
        }
        self.load.sample(&total, elapsed);
        self.clients_maximum = self
            .clients_maximum
            .max(total.gauge(Gauge::ClientsConnected));
        self.total = total;
        std::mem::swap(
            &mut self.latencies_last_round,
            &mut self.latencies_this_round,
        );
        self.latencies_this_round.reset();
        if let Some(heap) = memory.heap_bytes {
            self.heap_maximum = Some(self.heap_maximum.unwrap_or(0).max(heap));
        }
        self.memory = memory;
    }

    /// Whether every core sent a snapshot since the last completed round: the round can be
    /// closed without waiting longer.
    #[must_use]
    pub fn all_reported(&self) -> bool {
        self.cores.iter().all(|record| record.reported)
    }

    /// How long the broker had run at the last completed round.
    #[must_use]
    pub fn uptime(&self) -> Duration {
        self.last_round.saturating_duration_since(self.started)
    }

    /// How many cores report.
    #[must_use]
    pub fn core_count(&self) -> usize {
        self.cores.len()
    }

    /// The whole broker at the last completed round: the cores' snapshots merged (latency
    /// histograms included: every sample since start).
    #[must_use]
    pub fn total(&self) -> &MetricsSnapshot {
        &self.total
    }

    /// The latest snapshot of every core, in core order, each with every latency sample the
    /// core sent since it started.
    pub fn cores(&self) -> impl Iterator<Item = &MetricsSnapshot> {
        self.cores.iter().map(|record| &record.latest)
    }

    /// The broker's load averages.
    #[must_use]
    pub fn load(&self) -> &LoadFigures {
        &self.load
    }

    /// The load averages of one core's counters.
    #[must_use]
    pub fn core_load(&self, core: usize) -> Option<&LoadFigures> {
        self.cores.get(core).map(|record| &record.load)
    }

    /// The most clients connected at once, as seen at the rounds (short-lived peaks between
    /// two rounds are missed, as with Mosquitto).
    #[must_use]
    pub fn clients_maximum(&self) -> u64 {
        self.clients_maximum
    }

    /// The process's memory at the last completed round.
    #[must_use]
    pub fn memory(&self) -> ProcessMemory {
        self.memory
    }

    /// The largest heap figure seen at a round.
    #[must_use]
    pub fn heap_maximum(&self) -> Option<u64> {
        self.heap_maximum
    }

    /// The whole broker's latency samples of the last completed round.
    #[must_use]
    pub fn last_round_latency(&self, kind: Latency) -> &LatencyHistogram {
        self.latencies_last_round.get(kind)
    }

    /// One core's event-loop lag samples of the last completed round.
    #[must_use]
    pub fn core_lag_last_round(&self, core: usize) -> Option<&LatencyHistogram> {
        self.cores.get(core).map(|record| &record.lag_last_round)
    }

    /// The clients lagging most, over all cores, at the last completed round.
    #[must_use]
    pub fn slow_clients(&self) -> &TopSlowClients {
        &self.total.slow_clients
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::metrics::load::{LoadFigure, LoadWindow};
    use crate::metrics::registry::Counter;
    use crate::metrics::slow_clients::SlowClient;

    fn snapshot(core: usize, received: u64, connected: u64, lag: Duration) -> MetricsSnapshot {
        let mut snapshot = MetricsSnapshot::empty(core, 3);
        snapshot.counters[Counter::PublishReceived.index()] = received;
        snapshot.gauges[Gauge::ClientsConnected.index()] = connected;
        snapshot.gauges[Gauge::RetainedMessages.index()] = 4;
        snapshot
            .latencies
            .get_mut(Latency::EventLoopLag)
            .record(lag);
        snapshot
    }

    #[test]
    fn a_round_sums_the_latest_snapshot_of_each_core() {
        let start = Instant::now();
        let mut aggregator = MetricsAggregator::new(2, 3, start);
        aggregator.accept(snapshot(0, 10, 1, Duration::from_micros(5)));
        assert!(!aggregator.all_reported(), "core 1 has not reported");
        aggregator.accept(snapshot(1, 20, 2, Duration::from_micros(7)));
        aggregator.accept(snapshot(1, 25, 3, Duration::from_micros(9)));
        assert!(aggregator.all_reported());
        aggregator.complete_round(start + Duration::from_secs(10), ProcessMemory::default());
        assert!(!aggregator.all_reported(), "a new round starts");

        let total = aggregator.total();
        assert_eq!(total.counter(Counter::PublishReceived), 35);
        assert_eq!(total.gauge(Gauge::ClientsConnected), 4);
        assert_eq!(total.gauge(Gauge::RetainedMessages), 4, "one replica");
        assert_eq!(total.latency(Latency::EventLoopLag).count(), 3);
        assert_eq!(aggregator.uptime(), Duration::from_secs(10));
        assert_eq!(aggregator.clients_maximum(), 4);
        let cores: Vec<u64> = aggregator
            .cores()
            .map(|core| core.latency(Latency::EventLoopLag).count())
            .collect();
        assert_eq!(cores, [1, 2], "each core keeps every sample it sent");
    }

    #[test]
    fn round_latencies_cover_only_the_last_round() {
        let start = Instant::now();
        let mut aggregator = MetricsAggregator::new(2, 3, start);
        aggregator.accept(snapshot(0, 0, 0, Duration::from_millis(1)));
        aggregator.accept(snapshot(1, 0, 0, Duration::from_millis(3)));
        aggregator.complete_round(start + Duration::from_secs(10), ProcessMemory::default());
        assert_eq!(
            aggregator.last_round_latency(Latency::EventLoopLag).count(),
            2
        );
        assert_eq!(aggregator.core_lag_last_round(1).unwrap().count(), 1);

        aggregator.accept(snapshot(0, 0, 0, Duration::from_millis(2)));
        aggregator.complete_round(start + Duration::from_secs(20), ProcessMemory::default());
        let round = aggregator.last_round_latency(Latency::EventLoopLag);
        assert_eq!(round.count(), 1);
        assert_eq!(round.sum(), Duration::from_millis(2));
        assert_eq!(aggregator.core_lag_last_round(1).unwrap().count(), 0);
        assert_eq!(
            aggregator.total().latency(Latency::EventLoopLag).count(),
            3,
            "the totals keep everything"
        );
    }

    #[test]
    fn the_maximum_and_heap_peak_survive_a_fall() {
        let start = Instant::now();
        let mut aggregator = MetricsAggregator::new(1, 3, start);
        aggregator.accept(snapshot(0, 0, 9, Duration::ZERO));
        let big = ProcessMemory {
            resident_bytes: Some(4000),
            heap_bytes: Some(3000),
        };
        aggregator.complete_round(start + Duration::from_secs(10), big);
        aggregator.accept(snapshot(0, 0, 2, Duration::ZERO));
        let small = ProcessMemory {
            resident_bytes: Some(2000),
            heap_bytes: Some(1000),
        };
        aggregator.complete_round(start + Duration::from_secs(20), small);
        assert_eq!(aggregator.total().gauge(Gauge::ClientsConnected), 2);
        assert_eq!(aggregator.clients_maximum(), 9);
        assert_eq!(aggregator.memory(), small);
        assert_eq!(aggregator.heap_maximum(), Some(3000));
    }

    #[test]
    fn load_averages_follow_the_counters() {
        let start = Instant::now();
        let mut aggregator = MetricsAggregator::new(2, 3, start);
        for round in 1..=360u64 {
            aggregator.accept(snapshot(0, round * 100, 0, Duration::ZERO));
            aggregator.accept(snapshot(1, round * 50, 0, Duration::ZERO));
            aggregator.complete_round(
                start + Duration::from_secs(10 * round),
                ProcessMemory::default(),
            );
        }
        let broker = aggregator
            .load()
            .get(LoadFigure::PublishReceived)
            .get(LoadWindow::FiveMinutes);
        assert!((broker - 900.0).abs() < 1.0, "{broker}");
        let core_one = aggregator
            .core_load(1)
            .unwrap()
            .get(LoadFigure::PublishReceived)
            .get(LoadWindow::OneMinute);
        assert!((core_one - 300.0).abs() < 1.0, "{core_one}");
    }

    #[test]
    fn unknown_cores_are_added_and_slow_clients_merged() {
        let start = Instant::now();
        let mut aggregator = MetricsAggregator::new(1, 3, start);
        let mut late = snapshot(2, 1, 1, Duration::ZERO);
        late.slow_clients.offer(SlowClient {
            client_id: Arc::from("laggard"),
            core: 2,
            queued_messages: 100,
            queued_bytes: 1000,
            oldest_queued: Duration::from_secs(3),
            dropped: 7,
        });
        aggregator.accept(late);
        aggregator.complete_round(start + Duration::from_secs(10), ProcessMemory::default());
        assert_eq!(aggregator.core_count(), 3);
        assert_eq!(aggregator.total().counter(Counter::PublishReceived), 1);
        let slow: Vec<&str> = aggregator
            .slow_clients()
            .iter()
            .map(|c| &*c.client_id)
            .collect();
        assert_eq!(slow, ["laggard"]);
    }
}
