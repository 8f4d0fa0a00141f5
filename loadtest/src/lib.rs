//! hydrant-loadtest: a load generator for MQTT brokers, built on hydrant's own codec so that it
//! can saturate a broker from the same 2-core machine.
//!
//! A run goes: the command line (`cli`, or a TOML file through `cli::file`) names a scenario;
//! the scenario (`scenario`) turns its options into a [`plan::Plan`] — subscribers with their
//! filters, publishers with their streams, payloads and pace, and the timeline; the engine
//! (`engine`) runs the plan on glommio executors, one task per client (`client` speaks MQTT
//! with hydrant's codec over the run's `transport`: TCP, TLS, WebSocket or WebSocket over
//! TLS), each payload carrying a tracking header (`payload`); subscribers
//! account every delivery per stream (`accounting`) and record latencies (`latency`); the
//! broker and the generator are sampled from /proc (`sampler`); and the report (`report`) is
//! printed as a table and written as JSON, .hgrm and SVG on request. `app` ties these together;
//! `bounded` holds the bounded joins that keep every helper thread from holding a run's end.

pub mod accounting;
pub mod app;
pub mod bounded;
pub mod cli;
pub mod client;
pub mod engine;
pub mod latency;
pub mod payload;
pub mod plan;
pub mod report;
pub mod rng;
pub mod sampler;
pub mod scenario;
pub mod transport;
