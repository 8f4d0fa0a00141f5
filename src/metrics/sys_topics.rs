//! The `$SYS` tree: the aggregated metrics as `(topic, payload)` pairs with Mosquitto's names
//! and payload formats where the concept is the same, hydrant's own figures under
//! `$SYS/broker/hydrant/`, and the filter that lets only changed values be published.
//!
//! The broker publishes each pair as a retained message every `sys_interval`, after
//! [`SysChangeFilter::changed`] removed those whose payload is the same as last time.

use ahash::AHashMap;

use super::aggregate::MetricsAggregator;
use super::histogram::LatencyHistogram;
use super::load::{LoadFigure, LoadFigures, LoadWindow};
use super::registry::{Counter, DropReason, Gauge, Latency};
use super::BROKER_VERSION;

/// The root of the broker's own topics.
pub const SYS_ROOT: &str = "$SYS/broker";
/// The root of the figures only hydrant has.
pub const HYDRANT_SYS_ROOT: &str = "$SYS/broker/hydrant";

/// One `$SYS` value to publish as a retained message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysValue {
    /// The full topic, e.g. `$SYS/broker/clients/connected`.
    pub topic: String,
    /// The payload as text, e.g. `12` or `3.50` or `40 seconds`.
    pub payload: String,
}

/// Collects the values in order.
struct SysWriter {
    values: Vec<SysValue>,
}

impl SysWriter {
    fn put(&mut self, topic: String, payload: String) {
        self.values.push(SysValue { topic, payload });
    }

    fn broker(&mut self, levels: &str, payload: impl ToString) {
        self.put(format!("{SYS_ROOT}/{levels}"), payload.to_string());
    }

    fn hydrant(&mut self, levels: &str, payload: impl ToString) {
        self.put(format!("{HYDRANT_SYS_ROOT}/{levels}"), payload.to_string());
    }

    /// The 1, 5 and 15-minute averages of one figure under `prefix`, as Mosquitto writes
    /// them (events per minute, two decimals).
    fn load(&mut self, prefix: &str, load: &LoadFigures, figure: LoadFigure) {
        for window in LoadWindow::ALL {
            self.put(
                format!(
                    "{prefix}/{}/{}",
                    figure.topic_levels(),
                    window.topic_level()
                ),
                format!("{:.2}", load.get(figure).get(window)),
            );
        }
    }

    /// Percentiles of a histogram in microseconds (one decimal), under `prefix`.
    fn latency(&mut self, prefix: &str, histogram: &LatencyHistogram, with_count: bool) {
        if with_count {
            self.put(format!("{prefix}/count"), histogram.count().to_string());
        }
        for (level, quantile) in [("p50", 0.5), ("p99", 0.99)] {
            self.put(
                format!("{prefix}/{level}"),
                micros(histogram.quantile(quantile)),
            );
        }
        self.put(format!("{prefix}/max"), micros(histogram.max()));
    }
}

/// A duration in microseconds with one decimal.
fn micros(duration: std::time::Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1e6)
}

/// Every `$SYS` value of the aggregator's last round, in a stable order.
///
/// Mosquitto's: `version` (`hydrant version X.Y.Z`), `uptime` (`N seconds`),
/// `clients/{connected,disconnected,maximum,total,expired}`, `messages/{received,sent,
/// inflight}`, `publish/messages/{received,sent,dropped}`, `publish/bytes/{received,sent}`,
/// `bytes/{received,sent}`, `retained messages/count`, `subscriptions/count`,
/// `shared_subscriptions/count`, `store/messages/{count,bytes}` (retained plus queued),
/// `heap/{current,maximum}` (where known) and `load/<figure>/{1min,5min,15min}`.
///
/// hydrant's, under `$SYS/broker/hydrant/`: `cores`, `clients/parked`, `memory/resident`,
/// `publish/dropped/<reason>`, `publish/denied`, `shared_subscriptions/redelivered`,
/// `latency/<kind>_us/{count,p50,p99,max}` (the last round's
/// samples, all cores), and per core `core/<n>/clients/connected`,
/// `core/<n>/load/publish/{received,sent}/<window>` and `core/<n>/event_loop_lag_us/{p50,p99,
/// max}`.
#[must_use]
pub fn sys_values(aggregator: &MetricsAggregator) -> Vec<SysValue> {
    let total = aggregator.total();
    let mut out = SysWriter { values: Vec::new() };

    out.broker("version", format!("hydrant version {BROKER_VERSION}"));
    out.broker(
        "uptime",
        format!("{} seconds", aggregator.uptime().as_secs()),
    );
    out.broker("clients/connected", total.gauge(Gauge::ClientsConnected));
    out.broker(
        "clients/disconnected",
        total.gauge(Gauge::ClientsDisconnected),
    );
    out.broker("clients/maximum", aggregator.clients_maximum());
    out.broker("clients/total", total.clients_total());
    out.broker("clients/expired", total.counter(Counter::ClientsExpired));
    out.broker(
        "messages/received",
        total.counter(Counter::MessagesReceived),
    );
    out.broker("messages/sent", total.counter(Counter::MessagesSent));
    out.broker("messages/inflight", total.gauge(Gauge::InflightMessages));
    out.broker(
        "publish/messages/received",
        total.counter(Counter::PublishReceived),
    );
    out.broker("publish/messages/sent", total.counter(Counter::PublishSent));
    out.broker("publish/messages/dropped", total.dropped_total());
    out.broker(
        "publish/bytes/received",
        total.counter(Counter::PublishBytesReceived),
    );
    out.broker(
        "publish/bytes/sent",
        total.counter(Counter::PublishBytesSent),
    );
    out.broker("bytes/received", total.counter(Counter::BytesReceived));
    out.broker("bytes/sent", total.counter(Counter::BytesSent));
    out.broker(
        "retained messages/count",
        total.gauge(Gauge::RetainedMessages),
    );
    out.broker("subscriptions/count", total.gauge(Gauge::Subscriptions));
    out.broker(
        "shared_subscriptions/count",
        total.gauge(Gauge::SharedSubscriptions),
    );
    out.broker(
        "store/messages/count",
        total
            .gauge(Gauge::RetainedMessages)
            .saturating_add(total.gauge(Gauge::QueuedMessages)),
    );
    out.broker(
        "store/messages/bytes",
        total
            .gauge(Gauge::RetainedBytes)
            .saturating_add(total.gauge(Gauge::QueuedBytes)),
    );
    let memory = aggregator.memory();
    if let Some(heap) = memory.heap_bytes {
        out.broker("heap/current", heap);
    }
    if let Some(peak) = aggregator.heap_maximum() {
        out.broker("heap/maximum", peak);
    }
    let load_prefix = format!("{SYS_ROOT}/load");
    for figure in LoadFigure::ALL {
        out.load(&load_prefix, aggregator.load(), figure);
    }

    out.hydrant("cores", aggregator.core_count());
    out.hydrant("clients/parked", total.gauge(Gauge::ClientsParked));
    if let Some(resident) = memory.resident_bytes {
        out.hydrant("memory/resident", resident);
    }
    for reason in DropReason::ALL {
        out.hydrant(
            &format!("publish/dropped/{}", reason.label()),
            total.dropped(reason),
        );
    }
    out.hydrant("publish/denied", total.counter(Counter::PublishDenied));
    out.hydrant(
        "shared_subscriptions/redelivered",
        total.counter(Counter::SharedRedelivered),
    );
    for kind in Latency::ALL {
        let prefix = format!("{HYDRANT_SYS_ROOT}/latency/{}_us", kind.slug());
        out.latency(&prefix, aggregator.last_round_latency(kind), true);
    }
    for snapshot in aggregator.cores() {
        let core = snapshot.core;
        let prefix = format!("{HYDRANT_SYS_ROOT}/core/{core}");
        out.put(
            format!("{prefix}/clients/connected"),
            snapshot.gauge(Gauge::ClientsConnected).to_string(),
        );
        if let Some(load) = aggregator.core_load(core) {
            let load_prefix = format!("{prefix}/load");
            out.load(&load_prefix, load, LoadFigure::PublishReceived);
            out.load(&load_prefix, load, LoadFigure::PublishSent);
        }
        if let Some(lag) = aggregator.core_lag_last_round(core) {
            out.latency(&format!("{prefix}/event_loop_lag_us"), lag, false);
        }
    }
    out.values
}

/// Remembers what was last published on each `$SYS` topic, so that each interval publishes
/// only the values that changed (as Mosquitto does).
#[derive(Debug, Default)]
pub struct SysChangeFilter {
    published: AHashMap<String, String>,
}

impl SysChangeFilter {
    /// A filter that has published nothing yet: the first call lets everything through.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The values whose topic is new or whose payload differs from the last one let through,
    /// in their order; remembers them as published.
    pub fn changed(&mut self, values: Vec<SysValue>) -> Vec<SysValue> {
        let mut changed = Vec::new();
        for value in values {
            match self.published.get_mut(&value.topic) {
                Some(last) if *last == value.payload => {}
                Some(last) => {
                    last.clone_from(&value.payload);
                    changed.push(value);
                }
                None => {
                    self.published
                        .insert(value.topic.clone(), value.payload.clone());
                    changed.push(value);
                }
            }
        }
        changed
    }

    /// Forgets everything, so that the next call publishes every value again (after the
    /// retained `$SYS` messages were lost, e.g. cleared by a client).
    pub fn forget(&mut self) {
        self.published.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::metrics::process::ProcessMemory;
    use crate::metrics::snapshot::MetricsSnapshot;

    fn aggregator() -> MetricsAggregator {
        let start = Instant::now();
        let mut aggregator = MetricsAggregator::new(2, 2, start);
        for core in 0..2u64 {
            let mut snapshot = MetricsSnapshot::empty(core as usize, 2);
            snapshot.counters[Counter::MessagesReceived.index()] = 600 * (core + 1);
            snapshot.counters[Counter::PublishReceived.index()] = 60;
            snapshot.counters[Counter::BytesSent.index()] = 1000;
            snapshot.gauges[Gauge::ClientsConnected.index()] = 2 + core;
            snapshot.gauges[Gauge::ClientsDisconnected.index()] = 1;
            snapshot.gauges[Gauge::RetainedMessages.index()] = 5;
            snapshot.gauges[Gauge::RetainedBytes.index()] = 50;
            snapshot.gauges[Gauge::QueuedMessages.index()] = 3;
            snapshot.gauges[Gauge::QueuedBytes.index()] = 30;
            snapshot.gauges[Gauge::Subscriptions.index()] = 4;
            snapshot.drops[DropReason::ConnectionQueueFull.index()] = 7;
            snapshot.drops[DropReason::PacketTooLarge.index()] = 1;
            snapshot
                .latencies
                .get_mut(Latency::EventLoopLag)
                .record(Duration::from_micros(250));
            aggregator.accept(snapshot);
        }
        let memory = ProcessMemory {
            resident_bytes: Some(9000),
            heap_bytes: Some(4000),
        };
        aggregator.complete_round(start + Duration::from_secs(60), memory);
        aggregator
    }

    fn payload<'a>(values: &'a [SysValue], topic: &str) -> &'a str {
        values
            .iter()
            .find(|value| value.topic == topic)
            .map(|value| value.payload.as_str())
            .unwrap_or_else(|| panic!("no {topic}"))
    }

    #[test]
    fn mosquitto_names_and_formats() {
        let values = sys_values(&aggregator());
        let expect = [
            ("$SYS/broker/uptime", "60 seconds"),
            ("$SYS/broker/clients/connected", "5"),
            ("$SYS/broker/clients/disconnected", "2"),
            ("$SYS/broker/clients/maximum", "5"),
            ("$SYS/broker/clients/total", "7"),
            ("$SYS/broker/clients/expired", "0"),
            ("$SYS/broker/messages/received", "1800"),
            ("$SYS/broker/messages/sent", "0"),
            ("$SYS/broker/publish/messages/received", "120"),
            ("$SYS/broker/publish/messages/dropped", "16"),
            ("$SYS/broker/bytes/sent", "2000"),
            ("$SYS/broker/retained messages/count", "5"),
            ("$SYS/broker/subscriptions/count", "8"),
            ("$SYS/broker/store/messages/count", "11"),
            ("$SYS/broker/store/messages/bytes", "110"),
            ("$SYS/broker/heap/current", "4000"),
            ("$SYS/broker/heap/maximum", "4000"),
            ("$SYS/broker/load/publish/received/1min", "75.85"),
            ("$SYS/broker/load/bytes/sent/15min", "128.99"),
            ("$SYS/broker/load/sockets/5min", "0.00"),
        ];
        for (topic, expected) in expect {
            assert_eq!(payload(&values, topic), expected, "{topic}");
        }
        assert_eq!(
            payload(&values, "$SYS/broker/version"),
            format!("hydrant version {BROKER_VERSION}")
        );
        for figure in LoadFigure::ALL {
            for window in LoadWindow::ALL {
                let topic = format!(
                    "$SYS/broker/load/{}/{}",
                    figure.topic_levels(),
                    window.topic_level()
                );
                payload(&values, &topic);
            }
        }
    }

    #[test]
    fn hydrant_figures_per_core_and_reason() {
        let values = sys_values(&aggregator());
        let expect = [
            ("$SYS/broker/hydrant/cores", "2"),
            ("$SYS/broker/hydrant/memory/resident", "9000"),
            (
                "$SYS/broker/hydrant/publish/dropped/connection_queue_full",
                "14",
            ),
            ("$SYS/broker/hydrant/publish/dropped/packet_too_large", "2"),
            ("$SYS/broker/hydrant/publish/dropped/expired", "0"),
            ("$SYS/broker/hydrant/latency/event_loop_lag_us/count", "2"),
            ("$SYS/broker/hydrant/latency/publish_delivery_us/count", "0"),
            ("$SYS/broker/hydrant/latency/publish_delivery_us/p99", "0.0"),
            ("$SYS/broker/hydrant/core/1/clients/connected", "3"),
            (
                "$SYS/broker/hydrant/core/0/load/publish/received/1min",
                "37.93",
            ),
        ];
        for (topic, expected) in expect {
            assert_eq!(payload(&values, topic), expected, "{topic}");
        }
        let lag = payload(&values, "$SYS/broker/hydrant/core/1/event_loop_lag_us/p99");
        let lag: f64 = lag.parse().unwrap();
        assert!((lag - 250.0).abs() <= 2.5, "{lag}");
    }

    #[test]
    fn topics_are_unique_valid_and_under_sys() {
        let values = sys_values(&aggregator());
        let mut topics: Vec<&str> = values.iter().map(|v| v.topic.as_str()).collect();
        for topic in &topics {
            assert!(topic.starts_with("$SYS/broker/"), "{topic}");
            assert!(!topic.contains(['+', '#', '\0']), "{topic}");
        }
        let count = topics.len();
        topics.sort_unstable();
        topics.dedup();
        assert_eq!(topics.len(), count);
    }

    #[test]
    fn only_changed_values_pass_the_filter() {
        let mut filter = SysChangeFilter::new();
        let value = |topic: &str, payload: &str| SysValue {
            topic: topic.to_owned(),
            payload: payload.to_owned(),
        };
        let first = filter.changed(vec![value("a", "1"), value("b", "2")]);
        assert_eq!(first.len(), 2);
        let second = filter.changed(vec![value("a", "1"), value("b", "3"), value("c", "0")]);
        assert_eq!(second, vec![value("b", "3"), value("c", "0")]);
        assert!(filter
            .changed(vec![value("a", "1"), value("b", "3")])
            .is_empty());
        filter.forget();
        assert_eq!(filter.changed(vec![value("a", "1")]).len(), 1);
    }

    #[test]
    fn a_quiet_broker_republishes_only_the_uptime() {
        let start = Instant::now();
        let mut aggregator = MetricsAggregator::new(1, 0, start);
        let mut filter = SysChangeFilter::new();
        aggregator.complete_round(start + Duration::from_secs(10), ProcessMemory::default());
        let first = filter.changed(sys_values(&aggregator));
        assert!(first.len() > 40);
        aggregator.complete_round(start + Duration::from_secs(20), ProcessMemory::default());
        let second = filter.changed(sys_values(&aggregator));
        let topics: Vec<&str> = second.iter().map(|v| v.topic.as_str()).collect();
        assert_eq!(topics, ["$SYS/broker/uptime"]);
    }
}
