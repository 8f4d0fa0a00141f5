//! Observability: what each core counts and measures, how the counts of all cores become the
//! `$SYS` tree and the Prometheus `/metrics` text, and the HTTP listener that serves them.
//!
//! # How the figures travel
//!
//! 1. **Recording, per core, on the message path.** Each shard owns a [`CoreMetrics`]:
//!    [`Counter`]s are `Cell<u64>` additions, [`Gauge`]s are set from the core's own state,
//!    drops are counted by [`DropReason`], and durations go into per-core HdrHistograms by
//!    [`Latency`] kind (no allocation, no lock, no atomic). [`run_lag_probe`] measures how
//!    late the core's timers fire (event-loop lag).
//! 2. **Snapshots, once per period.** Every `sys_interval` ([`MetricsConfig::snapshot_period`])
//!    each core sets its gauges, gathers its [`TopSlowClients`], and calls
//!    [`CoreMetrics::snapshot`]: a plain [`MetricsSnapshot`] value (counters are totals since
//!    start; histograms hold the samples since the previous snapshot). Other cores send it to
//!    [`AGGREGATOR_CORE`] as a cross-core message; that core hands its own over directly.
//! 3. **Aggregation, on one core.** [`MetricsAggregator::accept`] takes each snapshot as it
//!    arrives; on its own timer the aggregating core calls
//!    [`MetricsAggregator::complete_round`], which sums the cores ([`MetricsSnapshot::merge`]),
//!    samples the 1/5/15-minute load averages ([`LoadAverage`]) and reads the process memory.
//! 4. **Publication.** [`sys_values`] turns the aggregator into `$SYS` `(topic, payload)`
//!    pairs with Mosquitto's names, and [`SysChangeFilter`] keeps those that changed, to be
//!    published as retained messages. [`prometheus::render`] writes the exposition text that
//!    [`serve_http`] returns on `GET /metrics`.
//!
//! The shards run all of this (the snapshot, aggregation, `$SYS` and HTTP tasks, the lag
//! probe) in `shard/observe.rs`; connections record what they read and write, the router what
//! it drops and when a timed fan-out was taken up.

mod aggregate;
mod config;
mod core_metrics;
mod histogram;
pub mod http;
mod lag_probe;
mod load;
mod process;
pub mod prometheus;
mod registry;
mod slow_clients;
mod snapshot;
mod sys_topics;

pub use aggregate::{MetricsAggregator, AGGREGATOR_CORE};
pub use config::{
    MetricsConfig, MetricsConfigError, DEFAULT_HTTP_MAX_CONNECTIONS, DEFAULT_LAG_PROBE_INTERVAL_MS,
    DEFAULT_SYS_INTERVAL, MAX_HTTP_MAX_CONNECTIONS, MAX_LAG_PROBE_INTERVAL_MS,
    MAX_SLOW_CLIENTS_TOP, MAX_SYS_INTERVAL,
};
pub use core_metrics::{CoreMetrics, PUBLISH_LATENCY_SAMPLE_EVERY};
pub use histogram::{
    LatencyHistogram, LatencySet, LATENCY_BUCKETS, LATENCY_HIGHEST_NS, LATENCY_LOWEST_NS,
    LATENCY_SIGNIFICANT_DIGITS,
};
pub use http::{bind_http_listener, serve_http, HttpAuth, HttpError, HttpSettings};
pub use lag_probe::{lateness, run_lag_probe, DEFAULT_LAG_PROBE_INTERVAL, LAG_PROBE_WARMUP_TICKS};
pub use load::{LoadAverage, LoadFigure, LoadFigures, LoadWindow};
pub use process::ProcessMemory;
pub use registry::{Counter, DropReason, Gauge, GaugeMerge, Latency};
pub use slow_clients::{
    DropTransition, DropWatch, SlowClient, TopSlowClients, DEFAULT_SLOW_CLIENTS_TOP,
};
pub use snapshot::MetricsSnapshot;
pub use sys_topics::{sys_values, SysChangeFilter, SysValue, HYDRANT_SYS_ROOT, SYS_ROOT};

/// The version `$SYS/broker/version` and `hydrant_build_info` report.
pub const BROKER_VERSION: &str = env!("CARGO_PKG_VERSION");
