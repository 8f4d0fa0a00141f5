//! The metrics of one core at one moment, as a plain value: what a core sends the aggregating
//! core over the mesh, and (merged) what the whole broker reports.

use super::histogram::{LatencyHistogram, LatencySet};
use super::registry::{Counter, DropReason, Gauge, GaugeMerge, Latency};
use super::slow_clients::TopSlowClients;

/// Every counter, gauge, drop count, latency histogram and slow client of one core (or, after
/// [`MetricsSnapshot::merge`], of several). Counters are totals since the core started, so a
/// snapshot that is lost on the way loses nothing but its latency samples.
#[derive(Clone, Debug)]
pub struct MetricsSnapshot {
    /// The core it describes (for a merged snapshot: the first one's).
    pub core: usize,
    /// Values of every [`Counter`], by [`Counter::index`].
    pub counters: [u64; Counter::COUNT],
    /// Values of every [`Gauge`], by [`Gauge::index`].
    pub gauges: [u64; Gauge::COUNT],
    /// Messages dropped so far, by [`DropReason::index`].
    pub drops: [u64; DropReason::COUNT],
    /// Latency histograms. From a core: the samples since its previous snapshot. Kept by the
    /// aggregator: everything since the core started.
    pub latencies: LatencySet,
    /// The core's clients whose outgoing queues lag most.
    pub slow_clients: TopSlowClients,
}

impl MetricsSnapshot {
    /// A snapshot of `core` with every value zero, keeping at most `slow_clients_top` slow
    /// clients.
    #[must_use]
    pub fn empty(core: usize, slow_clients_top: usize) -> Self {
        MetricsSnapshot {
            core,
            counters: [0; Counter::COUNT],
            gauges: [0; Gauge::COUNT],
            drops: [0; DropReason::COUNT],
            latencies: LatencySet::default(),
            slow_clients: TopSlowClients::new(slow_clients_top),
        }
    }

    /// The value of a counter.
    #[must_use]
    pub fn counter(&self, counter: Counter) -> u64 {
        self.counters[counter.index()]
    }

    /// The value of a gauge.
    #[must_use]
    pub fn gauge(&self, gauge: Gauge) -> u64 {
        self.gauges[gauge.index()]
    }

    /// Messages dropped for one reason.
    #[must_use]
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// Messages dropped for any reason (Mosquitto's `publish/messages/dropped`).
    #[must_use]
    pub fn dropped_total(&self) -> u64 {
        self.drops
            .iter()
            .fold(0, |total, &count| total.saturating_add(count))
    }

    /// Clients known to the broker, connected or not (Mosquitto's `clients/total`).
    #[must_use]
    pub fn clients_total(&self) -> u64 {
        self.gauge(Gauge::ClientsConnected)
            .saturating_add(self.gauge(Gauge::ClientsDisconnected))
    }

    /// The latency histogram of one kind.
    #[must_use]
    pub fn latency(&self, kind: Latency) -> &LatencyHistogram {
        self.latencies.get(kind)
    }

    /// Adds another core's snapshot to this one: counters, summed gauges and drops add up,
    /// replicated gauges take the larger value, histograms add up, and the slow clients are
    /// merged into this snapshot's top list.
    pub fn merge(&mut self, other: &MetricsSnapshot) {
        for (mine, theirs) in self.counters.iter_mut().zip(other.counters) {
            *mine = mine.saturating_add(theirs);
        }
        for gauge in Gauge::ALL {
            let mine = &mut self.gauges[gauge.index()];
            let theirs = other.gauges[gauge.index()];
            *mine = match gauge.merge() {
                GaugeMerge::Sum => mine.saturating_add(theirs),
                GaugeMerge::Replicated => (*mine).max(theirs),
            };
        }
        for (mine, theirs) in self.drops.iter_mut().zip(other.drops) {
            *mine = mine.saturating_add(theirs);
        }
        self.latencies.merge(&other.latencies);
        self.slow_clients.merge(&other.slow_clients);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::metrics::slow_clients::SlowClient;

    fn core_snapshot(core: usize, scale: u64) -> MetricsSnapshot {
        let mut snapshot = MetricsSnapshot::empty(core, 2);
        for counter in Counter::ALL {
            snapshot.counters[counter.index()] = scale * (counter.index() as u64 + 1);
        }
        for gauge in Gauge::ALL {
            snapshot.gauges[gauge.index()] = scale * 10;
        }
        snapshot.drops[DropReason::ConnectionQueueFull.index()] = scale;
        snapshot.drops[DropReason::Expired.index()] = 2 * scale;
        snapshot
            .latencies
            .get_mut(Latency::EventLoopLag)
            .record(Duration::from_micros(scale));
        snapshot.slow_clients.offer(SlowClient {
            client_id: Arc::from(format!("client-{core}")),
            core,
            queued_messages: scale,
            queued_bytes: scale,
            oldest_queued: Duration::from_millis(scale),
            dropped: 0,
        });
        snapshot
    }

    #[test]
    fn merge_sums_counters_gauges_and_drops() {
        let mut total = core_snapshot(0, 1);
        total.merge(&core_snapshot(1, 3));
        assert_eq!(total.counter(Counter::SocketsAccepted), 4);
        assert_eq!(total.counter(Counter::PublishBytesSent), 4 * 11);
        assert_eq!(total.gauge(Gauge::ClientsConnected), 40);
        assert_eq!(total.gauge(Gauge::QueuedBytes), 40);
        assert_eq!(total.dropped(DropReason::ConnectionQueueFull), 4);
        assert_eq!(total.dropped(DropReason::Expired), 8);
        assert_eq!(total.dropped_total(), 12);
        assert_eq!(total.clients_total(), 80);
    }

    #[test]
    fn merge_takes_one_replica_of_the_retained_store() {
        let mut total = core_snapshot(0, 1);
        total.merge(&core_snapshot(1, 3));
        assert_eq!(total.gauge(Gauge::RetainedMessages), 30);
        assert_eq!(total.gauge(Gauge::RetainedBytes), 30);
    }

    #[test]
    fn merge_adds_histograms_and_ranks_slow_clients() {
        let mut total = core_snapshot(0, 1);
        total.merge(&core_snapshot(1, 3));
        total.merge(&core_snapshot(2, 2));
        let lag = total.latency(Latency::EventLoopLag);
        assert_eq!(lag.count(), 3);
        assert_eq!(lag.sum(), Duration::from_micros(6));
        let ids: Vec<&str> = total.slow_clients.iter().map(|c| &*c.client_id).collect();
        assert_eq!(ids, ["client-1", "client-2"]);
    }

    #[test]
    fn snapshots_can_cross_cores() {
        fn assert_send<T: Send + 'static>() {}
        assert_send::<MetricsSnapshot>();
    }

    #[test]
    fn merge_saturates_instead_of_overflowing() {
        let mut total = MetricsSnapshot::empty(0, 0);
        total.counters[0] = u64::MAX - 1;
        let mut other = MetricsSnapshot::empty(1, 0);
        other.counters[0] = 5;
        total.merge(&other);
        assert_eq!(total.counters[0], u64::MAX);
    }
}
