//! The Prometheus text exposition format (version 0.0.4) of the aggregated metrics: counters
//! and gauges per core (label `core`), a few broker-wide gauges, one histogram per latency
//! kind and core (cumulative `_bucket{le=...}`, `_sum`, `_count`), and the top slow clients
//! (label `client_id`, at most `slow_clients_top` of them, so cardinality stays bounded).

use std::fmt::Write;

use super::aggregate::MetricsAggregator;
use super::histogram::{LatencyHistogram, LATENCY_BUCKETS};
use super::registry::{Counter, DropReason, Gauge, GaugeMerge, Latency};
use super::slow_clients::SlowClient;
use super::snapshot::MetricsSnapshot;
use super::BROKER_VERSION;

/// The `Content-Type` of a response in this format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The type of a metric family, as its `# TYPE` line says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Cumulative buckets, a sum and a count.
    Histogram,
}

impl MetricKind {
    const fn keyword(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// Writes an exposition: each family's `# HELP` and `# TYPE` lines, then its samples. The
/// caller writes a family's samples right after it (the format wants them together) and
/// passes metric and label names that are valid (letters, digits and `_`); label values and
/// help texts are escaped here.
#[derive(Debug, Default)]
pub struct ExpositionWriter {
    out: String,
}

impl ExpositionWriter {
    /// An empty exposition.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a family: its help text and type.
    pub fn family(&mut self, name: &str, kind: MetricKind, help: &str) {
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        escape_help(help, &mut self.out);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind.keyword());
        self.out.push('\n');
    }

    /// One sample with an integer value.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.sample_start(name, labels, None);
        // Writing to a String cannot fail.
        let _ = writeln!(self.out, "{value}");
    }

    /// One sample with a floating-point value.
    pub fn sample_float(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.sample_start(name, labels, None);
        push_float(value, &mut self.out);
        self.out.push('\n');
    }

    /// The samples of one histogram (its family already started): a cumulative bucket per
    /// bound of [`LATENCY_BUCKETS`] and `+Inf`, then `_sum` (seconds) and `_count`.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], histogram: &LatencyHistogram) {
        let bucket = format!("{name}_bucket");
        let mut bound_text = String::new();
        for bound in LATENCY_BUCKETS {
            bound_text.clear();
            push_float(bound.as_secs_f64(), &mut bound_text);
            self.sample_start(&bucket, labels, Some(&bound_text));
            let _ = writeln!(self.out, "{}", histogram.count_at_most(bound));
        }
        self.sample_start(&bucket, labels, Some("+Inf"));
        let _ = writeln!(self.out, "{}", histogram.count());
        self.sample_float(
            &format!("{name}_sum"),
            labels,
            histogram.sum().as_secs_f64(),
        );
        self.sample(&format!("{name}_count"), labels, histogram.count());
    }

    /// The text written so far.
    #[must_use]
    pub fn finish(self) -> String {
        self.out
    }

    /// Writes `name{labels,le="..."} ` up to the value.
    fn sample_start(&mut self, name: &str, labels: &[(&str, &str)], le: Option<&str>) {
        self.out.push_str(name);
        let extra = le.map(|bound| ("le", bound));
        let mut all = labels.iter().copied().chain(extra).peekable();
        if all.peek().is_some() {
            self.out.push('{');
            for (position, (label, value)) in all.enumerate() {
                if position > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label);
                self.out.push_str("=\"");
                escape_label_value(value, &mut self.out);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
    }
}

/// Appends a label value with `\`, `"` and line feeds escaped, as the format requires.
pub fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
}

/// Appends a help text with `\` and line feeds escaped.
fn escape_help(help: &str, out: &mut String) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
}

/// Appends a float as the format spells it (`+Inf`, `-Inf`, `NaN`, or a plain decimal).
fn push_float(value: f64, out: &mut String) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{value}");
    }
}

/// The whole exposition of the broker's metrics as of the aggregator's last round.
#[must_use]
pub fn render(aggregator: &MetricsAggregator) -> String {
    let mut writer = ExpositionWriter::new();
    let cores: Vec<(String, &MetricsSnapshot)> = aggregator
        .cores()
        .map(|snapshot| (snapshot.core.to_string(), snapshot))
        .collect();

    writer.family(
        "hydrant_build_info",
        MetricKind::Gauge,
        "The running hydrant's version (always 1).",
    );
    writer.sample("hydrant_build_info", &[("version", BROKER_VERSION)], 1);
    writer.family(
        "hydrant_uptime_seconds",
        MetricKind::Gauge,
        "Seconds since the broker started.",
    );
    writer.sample_float(
        "hydrant_uptime_seconds",
        &[],
        aggregator.uptime().as_secs_f64(),
    );
    writer.family(
        "hydrant_cores",
        MetricKind::Gauge,
        "Cores (shards) running.",
    );
    writer.sample("hydrant_cores", &[], cores.len() as u64);

    for counter in Counter::ALL {
        writer.family(counter.name(), MetricKind::Counter, counter.help());
        for (core, snapshot) in &cores {
            writer.sample(counter.name(), &[("core", core)], snapshot.counter(counter));
        }
    }

    let dropped = "hydrant_publish_messages_dropped_total";
    writer.family(
        dropped,
        MetricKind::Counter,
        "PUBLISH messages not delivered to a subscriber, by reason.",
    );
    for (core, snapshot) in &cores {
        for reason in DropReason::ALL {
            let labels = [("core", core.as_str()), ("reason", reason.label())];
            writer.sample(dropped, &labels, snapshot.dropped(reason));
        }
    }

    for gauge in Gauge::ALL {
        writer.family(gauge.name(), MetricKind::Gauge, gauge.help());
        match gauge.merge() {
            GaugeMerge::Sum => {
                for (core, snapshot) in &cores {
                    writer.sample(gauge.name(), &[("core", core)], snapshot.gauge(gauge));
                }
            }
            GaugeMerge::Replicated => {
                writer.sample(gauge.name(), &[], aggregator.total().gauge(gauge));
            }
        }
    }

    writer.family(
        "hydrant_clients_maximum",
        MetricKind::Gauge,
        "Most clients connected at once, as seen every snapshot period.",
    );
    writer.sample("hydrant_clients_maximum", &[], aggregator.clients_maximum());

    let memory = aggregator.memory();
    if let Some(resident) = memory.resident_bytes {
        writer.family(
            "process_resident_memory_bytes",
            MetricKind::Gauge,
            "Resident memory size in bytes.",
        );
        writer.sample("process_resident_memory_bytes", &[], resident);
    }
    if let Some(heap) = memory.heap_bytes {
        writer.family(
            "hydrant_heap_bytes",
            MetricKind::Gauge,
            "Resident anonymous memory (heap and stacks) in bytes.",
        );
        writer.sample("hydrant_heap_bytes", &[], heap);
    }
    if let Some(peak) = aggregator.heap_maximum() {
        writer.family(
            "hydrant_heap_maximum_bytes",
            MetricKind::Gauge,
            "Largest hydrant_heap_bytes seen, in bytes.",
        );
        writer.sample("hydrant_heap_maximum_bytes", &[], peak);
    }

    for kind in Latency::ALL {
        writer.family(kind.name(), MetricKind::Histogram, kind.help());
        for (core, snapshot) in &cores {
            writer.histogram(kind.name(), &[("core", core)], snapshot.latency(kind));
        }
    }

    render_slow_clients(&mut writer, aggregator);
    writer.finish()
}

/// The slow-client gauges, one series per client of the top list.
fn render_slow_clients(writer: &mut ExpositionWriter, aggregator: &MetricsAggregator) {
    type Figure = fn(&SlowClient) -> f64;
    const FAMILIES: [(&str, &str, Figure); 4] = [
        (
            "hydrant_slow_client_queued_messages",
            "Messages waiting in the outgoing queue of one of the clients lagging most.",
            |client| client.queued_messages as f64,
        ),
        (
            "hydrant_slow_client_queued_bytes",
            "Bytes waiting in the outgoing queue of one of the clients lagging most.",
            |client| client.queued_bytes as f64,
        ),
        (
            "hydrant_slow_client_oldest_queued_seconds",
            "Age of the oldest message waiting for one of the clients lagging most.",
            |client| client.oldest_queued.as_secs_f64(),
        ),
        (
            "hydrant_slow_client_dropped_messages",
            "Messages dropped for one of the clients lagging most since it connected.",
            |client| client.dropped as f64,
        ),
    ];
    let clients: Vec<(&SlowClient, String)> = aggregator
        .slow_clients()
        .iter()
        .map(|client| (client, client.core.to_string()))
        .collect();
    for (name, help, figure) in FAMILIES {
        writer.family(name, MetricKind::Gauge, help);
        for (client, core) in &clients {
            let labels = [("client_id", &*client.client_id), ("core", core.as_str())];
            writer.sample_float(name, &labels, figure(client));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::metrics::process::ProcessMemory;

    #[test]
    fn counters_and_gauges_have_help_type_and_labels() {
        let mut writer = ExpositionWriter::new();
        writer.family("x_total", MetricKind::Counter, "Things.");
        writer.sample("x_total", &[("core", "0")], 5);
        writer.sample("x_total", &[("core", "1"), ("reason", "a")], 7);
        writer.family("y", MetricKind::Gauge, "Level.");
        writer.sample("y", &[], 3);
        writer.sample_float("y", &[], 0.25);
        assert_eq!(
            writer.finish(),
            "# HELP x_total Things.\n# TYPE x_total counter\n\
             x_total{core=\"0\"} 5\nx_total{core=\"1\",reason=\"a\"} 7\n\
             # HELP y Level.\n# TYPE y gauge\ny 3\ny 0.25\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut writer = ExpositionWriter::new();
        writer.family("z", MetricKind::Gauge, "A \\ path\nand more \"quoted\".");
        writer.sample("z", &[("client_id", "a\"b\\c\nd}e,f=g")], 1);
        assert_eq!(
            writer.finish(),
            "# HELP z A \\\\ path\\nand more \"quoted\".\n# TYPE z gauge\n\
             z{client_id=\"a\\\"b\\\\c\\nd}e,f=g\"} 1\n"
        );
    }

    #[test]
    fn special_floats_use_the_format_spelling() {
        let mut writer = ExpositionWriter::new();
        writer.sample_float("f", &[], f64::INFINITY);
        writer.sample_float("f", &[], f64::NEG_INFINITY);
        writer.sample_float("f", &[], f64::NAN);
        writer.sample_float("f", &[], 0.0000025);
        assert_eq!(writer.finish(), "f +Inf\nf -Inf\nf NaN\nf 0.0000025\n");
    }

    #[test]
    fn histograms_have_cumulative_buckets_sum_and_count() {
        let mut histogram = LatencyHistogram::new();
        histogram.record(Duration::from_micros(1));
        histogram.record(Duration::from_micros(30));
        histogram.record(Duration::from_secs(30));
        let mut writer = ExpositionWriter::new();
        writer.family("h_seconds", MetricKind::Histogram, "Times.");
        writer.histogram("h_seconds", &[("core", "2")], &histogram);
        let text = writer.finish();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# HELP h_seconds Times.");
        assert_eq!(lines[1], "# TYPE h_seconds histogram");
        assert_eq!(lines[2], "h_seconds_bucket{core=\"2\",le=\"0.000001\"} 1");
        assert!(lines.contains(&"h_seconds_bucket{core=\"2\",le=\"0.000025\"} 1"));
        assert!(lines.contains(&"h_seconds_bucket{core=\"2\",le=\"0.00005\"} 2"));
        assert!(lines.contains(&"h_seconds_bucket{core=\"2\",le=\"10\"} 2"));
        assert!(lines.contains(&"h_seconds_bucket{core=\"2\",le=\"+Inf\"} 3"));
        assert!(lines.contains(&"h_seconds_sum{core=\"2\"} 30.000031"));
        assert_eq!(lines.last(), Some(&"h_seconds_count{core=\"2\"} 3"));
        assert_eq!(lines.len(), 2 + LATENCY_BUCKETS.len() + 3);
    }

    fn sample_aggregator() -> MetricsAggregator {
        let start = Instant::now();
        let mut aggregator = MetricsAggregator::new(2, 2, start);
        for core in 0..2 {
            let mut snapshot = MetricsSnapshot::empty(core, 2);
            snapshot.counters[Counter::PublishReceived.index()] = 10 + core as u64;
            snapshot.gauges[Gauge::ClientsConnected.index()] = 3;
            snapshot.gauges[Gauge::RetainedMessages.index()] = 8;
            snapshot.drops[DropReason::Expired.index()] = 2;
            snapshot
                .latencies
                .get_mut(Latency::PublishDelivery)
                .record(Duration::from_micros(40));
            if core == 1 {
                snapshot.slow_clients.offer(SlowClient {
                    client_id: Arc::from("slow \"one\""),
                    core,
                    queued_messages: 12,
                    queued_bytes: 1200,
                    oldest_queued: Duration::from_millis(1500),
                    dropped: 4,
                });
            }
            aggregator.accept(snapshot);
        }
        let memory = ProcessMemory {
            resident_bytes: Some(1 << 20),
            heap_bytes: Some(1 << 19),
        };
        aggregator.complete_round(start + Duration::from_secs(42), memory);
        aggregator
    }

    #[test]
    fn the_broker_exposition_has_every_family() {
        let text = render(&sample_aggregator());
        let lines: Vec<&str> = text.lines().collect();
        let build_info = format!("hydrant_build_info{{version=\"{BROKER_VERSION}\"}} 1");
        assert!(lines.contains(&build_info.as_str()));
        for line in [
            "hydrant_uptime_seconds 42",
            "hydrant_cores 2",
            "hydrant_publish_messages_received_total{core=\"0\"} 10",
            "hydrant_publish_messages_received_total{core=\"1\"} 11",
            "hydrant_publish_messages_dropped_total{core=\"1\",reason=\"expired\"} 2",
            "hydrant_clients_connected{core=\"1\"} 3",
            "hydrant_retained_messages 8",
            "hydrant_clients_maximum 6",
            "process_resident_memory_bytes 1048576",
            "hydrant_heap_bytes 524288",
            "hydrant_publish_delivery_latency_seconds_count{core=\"0\"} 1",
            "hydrant_slow_client_queued_messages{client_id=\"slow \\\"one\\\"\",core=\"1\"} 12",
            "hydrant_slow_client_oldest_queued_seconds{client_id=\"slow \\\"one\\\"\",core=\"1\"} 1.5",
        ] {
            assert!(lines.contains(&line), "missing {line:?} in\n{text}");
        }
        for counter in Counter::ALL {
            assert!(lines.contains(&&*format!("# TYPE {} counter", counter.name())));
        }
        for kind in Latency::ALL {
            assert!(lines.contains(&&*format!("# TYPE {} histogram", kind.name())));
        }
    }

    #[test]
    fn every_family_is_declared_once_and_samples_follow_it() {
        let text = render(&sample_aggregator());
        let mut declared: Vec<&str> = Vec::new();
        let mut current = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(!declared.contains(&name), "{name} declared twice");
                declared.push(name);
                current = name;
            } else if !line.starts_with('#') {
                let sample = line.split(['{', ' ']).next().unwrap();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| sample.strip_suffix(suffix))
                    .filter(|family| *family == current)
                    .unwrap_or(sample);
                assert_eq!(family, current, "sample {line:?} outside its family");
            }
        }
    }
}
