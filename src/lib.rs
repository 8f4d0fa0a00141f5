//! hydrant: a thread-per-core MQTT broker (crate documentation is written with the runtime).

pub mod config;
pub mod protocol;
pub mod topic;
