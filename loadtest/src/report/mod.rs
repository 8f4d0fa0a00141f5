//! What a run measured, in one serializable [`RunReport`], and the forms it is written in:
//! the summary table (`table`), JSON (serde), the HdrHistogram percentile distribution
//! (`hgrm`), the latency plot (`svg`), and the progress line printed during the run
//! (`progress`).

pub mod hgrm;
pub mod progress;
pub mod svg;
pub mod table;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::accounting::{reconcile, DeliveryCounts, PairCounts, StreamOutcome, SubscriberOutcome};
use crate::engine::{ErrorLog, RunOutcome};
use crate::latency::{new_connect_histogram, new_latency_histogram, Percentiles};
use crate::plan::Timing;
use crate::sampler::{usage_between, Usage};
use crate::scenario::pymqttbench::PymqttbenchResult;

/// Anomalous (publisher, subscriber) pairs listed in the JSON report at most.
pub const MAX_LISTED_PAIRS: usize = 1000;

/// Phase lengths of the run.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct TimingReport {
    /// Connecting subscribers and publishers, seconds.
    pub setup_s: f64,
    /// Publishing before the measurement window, seconds.
    pub warmup_s: f64,
    /// The measurement window, seconds (the base of every rate).
    pub measured_s: f64,
    /// Waiting for the last deliveries, seconds.
    pub drain_s: f64,
    /// The drain ended at its timeout, with deliveries still missing.
    pub drain_timed_out: bool,
    /// Publishers ran out of time before sending their messages (pymqttbench).
    pub publishers_timed_out: bool,
}

/// Message figures of the measurement window.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct MessageReport {
    /// Messages published during the whole run, warm-up included.
    pub sent_total: u64,
    /// Messages published inside the window.
    pub sent: u64,
    /// Delivery figures of the window's messages.
    #[serde(flatten)]
    pub deliveries: DeliveryCounts,
    /// Lost messages in percent of expected ones.
    pub loss_percent: f64,
    /// Published messages per second.
    pub sent_per_s: f64,
    /// Deliveries of the window's messages per second.
    pub delivered_per_s: f64,
    /// Deliveries that arrived during the window (whenever sent), per second: the broker's
    /// delivery throughput, also when it is saturated and late.
    pub received_per_s: f64,
    /// (publisher, subscriber) pairs with something expected or received.
    pub pairs: usize,
    /// Pairs that lost at least one message.
    pub pairs_with_loss: usize,
    /// Payloads carried no tracking header: only counts, no latency, order or duplicates.
    pub untracked: bool,
}

/// Connection figures.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ConnectReport {
    /// Connections opened (CONNACK received).
    pub connections: u64,
    /// Client errors (failed connects, dropped connections).
    pub errors: u64,
    /// TCP connect → CONNACK times.
    pub latency: Percentiles,
    /// Subscribers whose connection ended before the run did.
    pub subscribers_dropped: u64,
}

/// The `conns` scenario's figures.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ConnsReport {
    /// Connections asked for.
    pub requested: usize,
    /// Connections open when the hold began.
    pub open: u64,
    /// Time to open them, seconds.
    pub connect_s: f64,
    /// Connections opened per second.
    pub connects_per_s: f64,
    /// Broker resident memory per open connection (hold end minus start, divided), bytes.
    pub broker_bytes_per_connection: Option<f64>,
}

/// One error message and how often it happened.
#[derive(Clone, Debug, Serialize)]
pub struct ErrorEntry {
    /// The message.
    pub message: String,
    /// Occurrences.
    pub count: u64,
    /// The first client it happened to.
    pub first_client: String,
}

/// Everything a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// Scenario name.
    pub scenario: &'static str,
    /// What the run did.
    pub description: String,
    /// The broker address as given.
    pub broker: String,
    /// Generator executors.
    pub generator_cores: usize,
    /// Phase lengths.
    pub timing: TimingReport,
    /// Message figures.
    pub messages: MessageReport,
    /// Publish→deliver latency of the window's tracked deliveries (none when untracked).
    pub latency: Option<Percentiles>,
    /// Connection figures.
    pub connect: ConnectReport,
    /// The broker's memory and CPU during the window (with --broker-pid).
    pub broker_usage: Option<Usage>,
    /// The generator's own memory and CPU during the window.
    pub generator_usage: Option<Usage>,
    /// `conns` figures.
    pub conns: Option<ConnsReport>,
    /// pymqttbench's own figures.
    pub pymqttbench: Option<PymqttbenchResult>,
    /// Client errors by message.
    pub errors: Vec<ErrorEntry>,
    /// Up to [`MAX_LISTED_PAIRS`] pairs that lost, duplicated or reordered messages.
    pub anomalous_pairs: Vec<PairCounts>,
}

/// The histograms behind a report, for the .hgrm and SVG outputs.
#[derive(Clone, Debug)]
pub struct Histograms {
    /// Publish→deliver latency (ns).
    pub latency: Histogram<u64>,
    /// Connect latency (ns).
    pub connect: Histogram<u64>,
}

fn seconds(from_ns: u64, to_ns: u64) -> f64 {
    to_ns.saturating_sub(from_ns) as f64 / 1e9
}

fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// Builds the report of a finished run.
pub fn build(outcome: &RunOutcome) -> (RunReport, Histograms) {
    let plan = &outcome.plan;
    let timeline = &outcome.timeline;
    let mut latency = new_latency_histogram();
    let mut connect = new_connect_histogram();
    let mut errors = ErrorLog::default();
    for executor in &outcome.executors {
        let _ = latency.add(&executor.latency);
        let _ = connect.add(&executor.connect);
        errors.merge(&executor.errors);
    }

    let mut streams: Vec<StreamOutcome> = plan
        .streams
        .iter()
        .map(|s| StreamOutcome {
            publisher: s.publisher,
            topic: s.topic.clone(),
            sent_in_window: 0,
            tracked: plan.publishers[s.publisher].payload.is_tracked(),
        })
        .collect();
    let mut sent_total = 0;
    for publisher in outcome.executors.iter().flat_map(|e| &e.publishers) {
        for sent in &publisher.streams {
            if let Some(stream) = streams.get_mut(sent.stream as usize) {
                stream.sent_in_window += sent.in_window;
            }
            sent_total += sent.total;
        }
    }
    let mut records: Vec<_> = outcome
        .executors
        .iter()
        .flat_map(|e| &e.subscribers)
        .collect();
    records.sort_by_key(|r| r.index);
    let subscribers: Vec<SubscriberOutcome<'_>> = records
        .iter()
        .filter_map(|r| {
            Some(SubscriberOutcome {
                filter: &plan.subscribers.get(r.index)?.filter,
                ledger: &r.ledger,
            })
        })
        .collect();
    let reconciliation = reconcile(&streams, &subscribers);
    let sent: u64 = streams.iter().map(|s| s.sent_in_window).sum();

    let window_end = timeline.window_end_ns.max(timeline.window_start_ns);
    let measured_s = match plan.timing {
        Timing::Hold { .. } => seconds(timeline.hold_start_ns, window_end),
        _ => seconds(timeline.window_start_ns, window_end),
    };
    let warmup_s = match plan.timing {
        Timing::Timed { warmup, .. } => warmup.as_secs_f64(),
        _ => 0.0,
    };
    let untracked = plan.publishers.iter().any(|p| !p.payload.is_tracked());
    let arrived: u64 = records.iter().map(|r| r.arrived_in_window).sum();
    let totals = reconciliation.totals;
    let messages = MessageReport {
        sent_total,
        sent,
        deliveries: totals,
        loss_percent: totals.loss_ratio() * 100.0,
        sent_per_s: per_second(sent, measured_s),
        delivered_per_s: per_second(totals.delivered, measured_s),
        received_per_s: per_second(arrived, measured_s),
        pairs: reconciliation.pairs.len(),
        pairs_with_loss: reconciliation
            .pairs
            .iter()
            .filter(|p| p.counts.lost > 0)
            .count(),
        untracked,
    };
    let usage_from = match plan.timing {
        Timing::Hold { .. } => timeline.start_ns,
        _ => timeline.window_start_ns,
    };
    let broker_usage = outcome
        .broker
        .as_deref()
        .and_then(|samples| usage_between(samples, usage_from, window_end));
    let generator_usage = usage_between(&outcome.generator, usage_from, window_end);
    let conns = plan.idle.map(|idle| {
        let connect_s = seconds(timeline.start_ns, timeline.hold_start_ns);
        ConnsReport {
            requested: idle.connections,
            open: timeline.idle_open,
            connect_s,
            connects_per_s: per_second(timeline.idle_open, connect_s),
            broker_bytes_per_connection: broker_usage.filter(|_| timeline.idle_open > 0).map(|u| {
                (u.end_rss_bytes as f64 - u.baseline_rss_bytes as f64) / timeline.idle_open as f64
            }),
        }
    });
    let report = RunReport {
        scenario: plan.scenario,
        description: plan.description.clone(),
        broker: plan.target.display.clone(),
        generator_cores: plan.cores,
        timing: TimingReport {
            setup_s: timeline.setup.as_secs_f64(),
            warmup_s,
            measured_s,
            drain_s: seconds(window_end, timeline.stop_ns),
            drain_timed_out: timeline.drain_timed_out,
            publishers_timed_out: timeline.publishers_timed_out,
        },
        messages,
        latency: (!latency.is_empty()).then(|| Percentiles::of(&latency)),
        connect: ConnectReport {
            connections: connect.len(),
            errors: errors.total,
            latency: Percentiles::of(&connect),
            subscribers_dropped: records.iter().filter(|r| r.dropped).count() as u64,
        },
        broker_usage,
        generator_usage,
        conns,
        pymqttbench: None,
        errors: errors
            .kinds
            .iter()
            .map(|kind| ErrorEntry {
                message: kind.message.clone(),
                count: kind.count,
                first_client: kind.first_client.clone(),
            })
            .collect(),
        anomalous_pairs: reconciliation
            .pairs
            .iter()
            .filter(|p| p.counts.is_anomalous())
            .take(MAX_LISTED_PAIRS)
            .copied()
            .collect(),
    };
    (report, Histograms { latency, connect })
}

/// The report as pretty-printed JSON.
pub fn to_json(report: &RunReport) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
