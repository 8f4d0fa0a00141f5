//! What a run does, whatever scenario or file asked for it: the clients, the topics they use,
//! their payloads and the run's timeline. Scenarios build a [`Plan`]; the engine executes it.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use hydrant::protocol::QoS;
use hydrant::topic::{TopicFilter, TopicName};
use thiserror::Error;

use crate::client::ConnectOptions;
use crate::payload::HEADER_LEN;
use crate::transport::TransportError;

/// Largest payload the generator produces (the MQTT limit is 256 MiB; brokers are smaller).
pub const MAX_PAYLOAD: usize = 64 * 1024 * 1024;

/// Largest number of client connections one run may open.
pub const MAX_CLIENTS: usize = 200_000;

/// Why a plan cannot be run.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlanError {
    /// A parameter is out of range or contradicts another one.
    #[error("impossible parameters: {0}")]
    Impossible(String),
    /// The transport options cannot be used (unreadable certificate, bad server name).
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// Shorthand for an [`PlanError::Impossible`] with a formatted message.
pub fn impossible(message: impl Into<String>) -> PlanError {
    PlanError::Impossible(message.into())
}

/// Where and how clients connect.
#[derive(Clone, Debug)]
pub struct Target {
    /// Broker address (resolved).
    pub addr: SocketAddr,
    /// The address as the user wrote it, for reports.
    pub display: String,
    /// Credentials and timeouts of every connection.
    pub connect: ConnectOptions,
    /// Prefix of every client id of this run.
    pub client_id_prefix: String,
}

/// One long-lived subscriber.
#[derive(Clone, Debug)]
pub struct SubscriberPlan {
    /// Its single subscription.
    pub filter: TopicFilter,
    /// Requested QoS.
    pub qos: QoS,
}

/// How a publisher uses connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishMode {
    /// One connection for the whole run; at most `window` QoS 1/2 messages unacknowledged.
    Persistent {
        /// In-flight window for QoS 1 and 2.
        window: u16,
    },
    /// A new connection per message: CONNECT, PUBLISH (and its handshake), DISCONNECT.
    Churn,
}

/// What a publisher's payloads look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadSpec {
    /// Tracking header then filler, `size` bytes in all.
    Filler {
        /// Total payload size.
        size: usize,
    },
    /// Tracking header then a Gerrit-event JSON document, a random size in `min..=max`.
    GerritJson {
        /// Smallest payload.
        min: usize,
        /// Largest payload.
        max: usize,
    },
    /// `size` bytes without a tracking header (pymqttbench's original payloads): deliveries
    /// are only counted.
    Untracked {
        /// Total payload size (below the header size).
        size: usize,
    },
}

impl PayloadSpec {
    /// Whether the payloads carry the tracking header.
    pub fn is_tracked(&self) -> bool {
        !matches!(self, PayloadSpec::Untracked { .. })
    }
}

/// One publisher.
#[derive(Clone, Debug)]
pub struct PublisherPlan {
    /// The streams (indices into [`Plan::streams`]) it publishes; one is picked at random per
    /// message when there are several.
    pub streams: Vec<u32>,
    /// QoS of its PUBLISH packets.
    pub qos: QoS,
    /// Its payloads.
    pub payload: PayloadSpec,
    /// Connection use.
    pub mode: PublishMode,
    /// Messages per second; `None` = as fast as the window and the socket allow.
    pub rate: Option<f64>,
    /// Stop after this many messages; `None` = until the measurement window ends.
    pub limit: Option<u64>,
    /// For pymqttbench: how the original tool would name this worker's results.
    pub label: Option<String>,
}

/// A stream: the messages of one publisher on one topic, numbered from 0.
#[derive(Clone, Debug)]
pub struct Stream {
    /// The publisher.
    pub publisher: usize,
    /// The topic.
    pub topic: TopicName,
    /// Subscribers whose filter matches the topic (each expects every message).
    pub fanout: u64,
}

/// Connections that only connect and stay idle.
#[derive(Clone, Copy, Debug)]
pub struct IdlePlan {
    /// How many.
    pub connections: usize,
    /// Connections opened per second, all executors together; `None` = as fast as possible.
    pub connect_rate: Option<f64>,
}

/// When the run measures and when it ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Timing {
    /// Publish for `warmup + duration`; only messages sent after the warm-up count.
    Timed {
        /// Excluded start of the run.
        warmup: Duration,
        /// Measured part.
        duration: Duration,
    },
    /// Publish until every publisher reached its message limit, at most `timeout`.
    UntilPublished {
        /// Longest the publishers may take.
        timeout: Duration,
    },
    /// Open the idle connections, then hold them for `duration`.
    Hold {
        /// How long all connections are held once open.
        duration: Duration,
    },
}

/// The complete description of a run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Scenario name, for reports.
    pub scenario: &'static str,
    /// One line saying what the run does, for reports.
    pub description: String,
    /// The broker and connection settings.
    pub target: Target,
    /// Long-lived subscribers.
    pub subscribers: Vec<SubscriberPlan>,
    /// Publishers.
    pub publishers: Vec<PublisherPlan>,
    /// Every stream of every publisher.
    pub streams: Vec<Stream>,
    /// Idle connections.
    pub idle: Option<IdlePlan>,
    /// Timeline.
    pub timing: Timing,
    /// Longest wait, after publishing stops, for the last deliveries.
    pub drain_timeout: Duration,
    /// Subscriber and publisher connections opened per second during set-up; `None` = as fast
    /// as possible.
    pub setup_connect_rate: Option<f64>,
    /// For pymqttbench: deliveries after which a subscriber's clock stops.
    pub subscriber_target: Option<u64>,
    /// Generator executors (threads).
    pub cores: usize,
    /// Seed of the run's random choices.
    pub seed: u64,
}

impl Plan {
    /// Adds a stream for `publisher` on `topic` and returns its id.
    pub fn add_stream(&mut self, publisher: usize, topic: TopicName) -> Result<u32, PlanError> {
        let id = u32::try_from(self.streams.len())
            .map_err(|_| impossible("too many (publisher, topic) streams"))?;
        self.streams.push(Stream {
            publisher,
            topic,
            fanout: 0,
        });
        Ok(id)
    }

    /// Computes every stream's fanout and checks the plan can run.
    pub fn finish(mut self) -> Result<Plan, PlanError> {
        for stream in &mut self.streams {
            stream.fanout = self
                .subscribers
                .iter()
                .filter(|s| s.filter.matches(&stream.topic))
                .count() as u64;
        }
        self.validate()?;
        Ok(self)
    }

    /// Every client connection the run opens at once.
    pub fn connection_count(&self) -> usize {
        let persistent = self
            .publishers
            .iter()
            .filter(|p| matches!(p.mode, PublishMode::Persistent { .. }))
            .count();
        let churn = self.publishers.len() - persistent;
        self.subscribers.len() + persistent + churn + self.idle.map_or(0, |i| i.connections)
    }

    fn validate(&self) -> Result<(), PlanError> {
        if self.cores == 0 || self.cores > 64 {
            return Err(impossible("--cores must be between 1 and 64"));
        }
        let connections = self.connection_count();
        if connections == 0 {
            return Err(impossible("the run has no clients"));
        }
        if connections > MAX_CLIENTS {
            return Err(impossible(format!(
                "{connections} connections requested; at most {MAX_CLIENTS} are supported"
            )));
        }
        if !self.publishers.is_empty() && self.subscribers.is_empty() {
            return Err(impossible(
                "publishers without subscribers measure nothing: add subscribers",
            ));
        }
        for publisher in &self.publishers {
            check_payload(&publisher.payload)?;
            if let Some(rate) = publisher.rate {
                if !(rate.is_finite() && rate > 0.0) {
                    return Err(impossible(
                        "--rate must be a positive number (0 = unlimited)",
                    ));
                }
            }
            if publisher.limit == Some(0) {
                return Err(impossible("a publisher must send at least one message"));
            }
            if let PublishMode::Persistent { window: 0 } = publisher.mode {
                return Err(impossible("--window must be at least 1"));
            }
            if publisher.streams.is_empty() {
                return Err(impossible("a publisher has no topic"));
            }
        }
        let duration = match self.timing {
            Timing::Timed { duration, .. }
            | Timing::Hold { duration }
            | Timing::UntilPublished { timeout: duration } => duration,
        };
        if duration.is_zero() {
            return Err(impossible("the duration must be above 0"));
        }
        if self.target.connect.timeout.is_zero() {
            return Err(impossible("--connect-timeout must be above 0"));
        }
        if let Some(rate) = self.setup_connect_rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(impossible("--connect-rate must be a positive number"));
            }
        }
        if let Some(idle) = self.idle {
            if let Some(rate) = idle.connect_rate {
                if !(rate.is_finite() && rate > 0.0) {
                    return Err(impossible("--connect-rate must be a positive number"));
                }
            }
        }
        Ok(())
    }

    /// The password as CONNECT carries it.
    pub fn password_bytes(password: Option<&str>) -> Option<Bytes> {
        password.map(|p| Bytes::copy_from_slice(p.as_bytes()))
    }
}

fn check_payload(payload: &PayloadSpec) -> Result<(), PlanError> {
    match *payload {
        PayloadSpec::Filler { size } => check_tracked_size("--size", size),
        PayloadSpec::GerritJson { min, max } => {
            check_tracked_size("--min-size", min)?;
            check_tracked_size("--max-size", max)?;
            if min > max {
                return Err(impossible(format!(
                    "--min-size ({min}) is above --max-size ({max})"
                )));
            }
            Ok(())
        }
        PayloadSpec::Untracked { size } => {
            if size >= HEADER_LEN {
                return Err(impossible(
                    "an untracked payload must be shorter than the header",
                ));
            }
            Ok(())
        }
    }
}

fn check_tracked_size(flag: &str, size: usize) -> Result<(), PlanError> {
    if size < HEADER_LEN {
        return Err(impossible(format!(
            "{flag} {size} is too small: every payload starts with a {HEADER_LEN}-byte tracking \
             header (send time, stream, sequence number), so the smallest is {HEADER_LEN}"
        )));
    }
    if size > MAX_PAYLOAD {
        return Err(impossible(format!(
            "{flag} {size} is too large: at most {MAX_PAYLOAD} bytes"
        )));
    }
    Ok(())
}
