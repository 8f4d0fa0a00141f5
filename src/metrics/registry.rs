//! The catalogue of hydrant's metrics: every counter, gauge, drop reason and latency a core
//! keeps, with the name and help text Prometheus shows and the rule that combines the cores'
//! values. Adding a metric means adding a variant here; every table below follows from it.

/// A count that only grows, kept by each core; the broker's value is the sum over cores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counter {
    /// TCP connections accepted (Mosquitto's `load/sockets`).
    SocketsAccepted,
    /// CONNECT packets accepted: handshakes completed (Mosquitto's `load/connections`).
    Connects,
    /// Disconnected persistent sessions removed on expiry (`clients/expired`).
    ClientsExpired,
    /// MQTT packets of any type received from clients (`messages/received`).
    MessagesReceived,
    /// MQTT packets of any type sent to clients (`messages/sent`).
    MessagesSent,
    /// PUBLISH packets received from clients (`publish/messages/received`).
    PublishReceived,
    /// PUBLISH packets sent to clients (`publish/messages/sent`).
    PublishSent,
    /// Bytes read from client sockets (`bytes/received`).
    BytesReceived,
    /// Bytes written to client sockets (`bytes/sent`).
    BytesSent,
    /// Payload bytes of the PUBLISH packets received (`publish/bytes/received`).
    PublishBytesReceived,
    /// Payload bytes of the PUBLISH packets sent (`publish/bytes/sent`).
    PublishBytesSent,
    /// PUBLISH packets (and wills) the listener's ACL did not let their client publish.
    PublishDenied,
    /// Messages of a shared subscription member that left (its session ended, or it left
    /// before they arrived) handed to another member of the group
    /// (`shared_subscriptions/redelivered`).
    SharedRedelivered,
}

impl Counter {
    /// Every counter, in the order snapshots store them.
    pub const ALL: [Counter; 13] = [
        Counter::SocketsAccepted,
        Counter::Connects,
        Counter::ClientsExpired,
        Counter::MessagesReceived,
        Counter::MessagesSent,
        Counter::PublishReceived,
        Counter::PublishSent,
        Counter::BytesReceived,
        Counter::BytesSent,
        Counter::PublishBytesReceived,
        Counter::PublishBytesSent,
        Counter::PublishDenied,
        Counter::SharedRedelivered,
    ];
    /// How many counters there are.
    pub const COUNT: usize = Self::ALL.len();

    /// Where the counter sits in a snapshot's table.
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The Prometheus metric name (with the `_total` suffix counters carry).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Counter::SocketsAccepted => "hydrant_sockets_accepted_total",
            Counter::Connects => "hydrant_connects_total",
            Counter::ClientsExpired => "hydrant_clients_expired_total",
            Counter::MessagesReceived => "hydrant_messages_received_total",
            Counter::MessagesSent => "hydrant_messages_sent_total",
            Counter::PublishReceived => "hydrant_publish_messages_received_total",
            Counter::PublishSent => "hydrant_publish_messages_sent_total",
            Counter::BytesReceived => "hydrant_bytes_received_total",
            Counter::BytesSent => "hydrant_bytes_sent_total",
            Counter::PublishBytesReceived => "hydrant_publish_bytes_received_total",
            Counter::PublishBytesSent => "hydrant_publish_bytes_sent_total",
            Counter::PublishDenied => "hydrant_publish_messages_denied_total",
            Counter::SharedRedelivered => "hydrant_shared_messages_redelivered_total",
        }
    }

    /// The Prometheus help text.
    #[must_use]
    pub const fn help(self) -> &'static str {
        match self {
            Counter::SocketsAccepted => "TCP connections accepted.",
            Counter::Connects => "CONNECT packets accepted (completed handshakes).",
            Counter::ClientsExpired => "Disconnected persistent sessions removed on expiry.",
            Counter::MessagesReceived => "MQTT packets of any type received from clients.",
            Counter::MessagesSent => "MQTT packets of any type sent to clients.",
            Counter::PublishReceived => "PUBLISH packets received from clients.",
            Counter::PublishSent => "PUBLISH packets sent to clients.",
            Counter::BytesReceived => "Bytes read from client connections.",
            Counter::BytesSent => "Bytes written to client connections.",
            Counter::PublishBytesReceived => "Payload bytes of the PUBLISH packets received.",
            Counter::PublishBytesSent => "Payload bytes of the PUBLISH packets sent.",
            Counter::PublishDenied => "PUBLISH packets and wills the ACL did not let through.",
            Counter::SharedRedelivered => {
                "Messages of a shared subscription member that left, handed to another member of the group."
            }
        }
    }
}

/// How the cores' values of a gauge make the broker's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GaugeMerge {
    /// Each core counts its own share: the broker's value is the sum.
    Sum,
    /// Every core holds a replica of the same thing (the retained store): the broker's value
    /// is any core's, and the largest is taken while replicas catch up with each other.
    Replicated,
}

/// A value that goes up and down, read from a core's state when a snapshot is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Gauge {
    /// Clients with a live connection (`clients/connected`).
    ClientsConnected,
    /// Persistent sessions whose client is away (`clients/disconnected`).
    ClientsDisconnected,
    /// Subscriptions of the sessions held (`subscriptions/count`).
    Subscriptions,
    /// Shared subscriptions among them (`shared_subscriptions/count`).
    SharedSubscriptions,
    /// Retained messages (`retained messages/count`); every core holds a replica.
    RetainedMessages,
    /// Payload bytes of the retained messages; every core holds a replica.
    RetainedBytes,
    /// Messages queued for sessions, beyond their inflight windows.
    QueuedMessages,
    /// Payload bytes of those queued messages.
    QueuedBytes,
    /// QoS 1 and 2 messages sent and not yet acknowledged (`messages/inflight`).
    InflightMessages,
    /// Plain TCP connections whose socket waits in its core's parking lot: quiet clients,
    /// and connections before their CONNECT (`hydrant/clients/parked`; see
    /// `transport::parked`).
    ClientsParked,
}

impl Gauge {
    /// Every gauge, in the order snapshots store them.
    pub const ALL: [Gauge; 10] = [
        Gauge::ClientsConnected,
        Gauge::ClientsDisconnected,
        Gauge::Subscriptions,
        Gauge::SharedSubscriptions,
        Gauge::RetainedMessages,
        Gauge::RetainedBytes,
        Gauge::QueuedMessages,
        Gauge::QueuedBytes,
        Gauge::InflightMessages,
        Gauge::ClientsParked,
    ];
    /// How many gauges there are.
    pub const COUNT: usize = Self::ALL.len();

    /// Where the gauge sits in a snapshot's table.
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The Prometheus metric name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Gauge::ClientsConnected => "hydrant_clients_connected",
            Gauge::ClientsDisconnected => "hydrant_clients_disconnected",
            Gauge::Subscriptions => "hydrant_subscriptions",
            Gauge::SharedSubscriptions => "hydrant_shared_subscriptions",
            Gauge::RetainedMessages => "hydrant_retained_messages",
            Gauge::RetainedBytes => "hydrant_retained_bytes",
            Gauge::QueuedMessages => "hydrant_queued_messages",
            Gauge::QueuedBytes => "hydrant_queued_bytes",
            Gauge::InflightMessages => "hydrant_inflight_messages",
            Gauge::ClientsParked => "hydrant_clients_parked",
        }
    }

    /// The Prometheus help text.
    #[must_use]
    pub const fn help(self) -> &'static str {
        match self {
            Gauge::ClientsConnected => "Clients with a live connection.",
            Gauge::ClientsDisconnected => "Persistent sessions whose client is disconnected.",
            Gauge::Subscriptions => "Subscriptions of the sessions held.",
            Gauge::SharedSubscriptions => "Shared subscriptions of the sessions held.",
            Gauge::RetainedMessages => "Retained messages held.",
            Gauge::RetainedBytes => "Payload bytes of the retained messages held.",
            Gauge::QueuedMessages => "Messages queued for sessions beyond their inflight windows.",
            Gauge::QueuedBytes => "Payload bytes of the messages queued for sessions.",
            Gauge::InflightMessages => "QoS 1 and 2 messages sent and not yet acknowledged.",
            Gauge::ClientsParked => {
                "Plain TCP connections parked in their core's epoll set (quiet clients, and connections before their CONNECT)."
            }
        }
    }

    /// How the cores' values combine.
    #[must_use]
    pub const fn merge(self) -> GaugeMerge {
        match self {
            Gauge::RetainedMessages | Gauge::RetainedBytes => GaugeMerge::Replicated,
            _ => GaugeMerge::Sum,
        }
    }
}

/// Why a PUBLISH was not delivered to one subscriber (Mosquitto counts them all as one
/// `publish/messages/dropped`; hydrant also tells them apart). A publish is never dropped
/// between cores for want of room: its publisher waits for room on the channel instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A QoS 0 message found its connection's outgoing queue full (a slow consumer).
    ConnectionQueueFull,
    /// The session's queue already held `max_queued_messages` messages.
    MaxQueuedMessages,
    /// Queuing the message would have exceeded the session's `max_queued_bytes`.
    MaxQueuedBytes,
    /// The core's queues held their share of `max_queued_bytes_total`, and this client's queue
    /// held a write batch or more.
    MaxQueuedBytesTotal,
    /// The PUBLISH is larger than the client's Maximum Packet Size (MQTT 5).
    PacketTooLarge,
    /// The message's expiry interval passed while it waited in a queue (MQTT 5).
    Expired,
    /// A shared subscription's message found no member of its group to take it after the
    /// member chosen for it left (unsubscribed, or its session ended).
    SharedMemberLeft,
}

impl DropReason {
    /// Every reason, in the order snapshots store them.
    pub const ALL: [DropReason; 7] = [
        DropReason::ConnectionQueueFull,
        DropReason::MaxQueuedMessages,
        DropReason::MaxQueuedBytes,
        DropReason::MaxQueuedBytesTotal,
        DropReason::PacketTooLarge,
        DropReason::Expired,
        DropReason::SharedMemberLeft,
    ];
    /// How many reasons there are.
    pub const COUNT: usize = Self::ALL.len();

    /// Where the reason sits in a snapshot's table.
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The name used as the Prometheus `reason` label and the last `$SYS` topic level: the
    /// configuration key of the limit where there is one.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            DropReason::ConnectionQueueFull => "connection_queue_full",
            DropReason::MaxQueuedMessages => "max_queued_messages",
            DropReason::MaxQueuedBytes => "max_queued_bytes",
            DropReason::MaxQueuedBytesTotal => "max_queued_bytes_total",
            DropReason::PacketTooLarge => "packet_too_large",
            DropReason::Expired => "expired",
            DropReason::SharedMemberLeft => "shared_member_left",
        }
    }
}

/// A duration measured inside the broker, kept as a histogram per core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Latency {
    /// From reading a PUBLISH off its publisher's socket to writing it to a subscriber (the
    /// hop between cores included).
    PublishDelivery,
    /// How late a core's timer fires: the time its event loop was busy elsewhere.
    EventLoopLag,
    /// How long checking a client's credentials took.
    AuthCheck,
    /// How long forcing a core's persistence log to the disk took.
    PersistenceSync,
}

impl Latency {
    /// Every kind, in the order snapshots store them.
    pub const ALL: [Latency; 4] = [
        Latency::PublishDelivery,
        Latency::EventLoopLag,
        Latency::AuthCheck,
        Latency::PersistenceSync,
    ];
    /// How many kinds there are.
    pub const COUNT: usize = Self::ALL.len();

    /// Where the kind sits in a snapshot's table.
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The Prometheus histogram name (in seconds, as Prometheus wants durations).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Latency::PublishDelivery => "hydrant_publish_delivery_latency_seconds",
            Latency::EventLoopLag => "hydrant_event_loop_lag_seconds",
            Latency::AuthCheck => "hydrant_auth_check_duration_seconds",
            Latency::PersistenceSync => "hydrant_persistence_sync_duration_seconds",
        }
    }

    /// The Prometheus help text.
    #[must_use]
    pub const fn help(self) -> &'static str {
        match self {
            Latency::PublishDelivery => {
                "Time from reading a PUBLISH to writing it to a subscriber, inside the broker."
            }
            Latency::EventLoopLag => {
                "How late a core's timer fired (time its event loop was busy)."
            }
            Latency::AuthCheck => "Time taken to check a client's credentials.",
            Latency::PersistenceSync => "Time taken to force a core's persistence log to disk.",
        }
    }

    /// The `$SYS` topic level naming it (`$SYS/broker/hydrant/latency/<slug>_us/...`).
    #[must_use]
    pub const fn slug(self) -> &'static str {
        match self {
            Latency::PublishDelivery => "publish_delivery",
            Latency::EventLoopLag => "event_loop_lag",
            Latency::AuthCheck => "auth_check",
            Latency::PersistenceSync => "persistence_sync",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_follow_the_all_tables() {
        for (position, counter) in Counter::ALL.iter().enumerate() {
            assert_eq!(counter.index(), position);
        }
        for (position, gauge) in Gauge::ALL.iter().enumerate() {
            assert_eq!(gauge.index(), position);
        }
        for (position, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), position);
        }
        for (position, latency) in Latency::ALL.iter().enumerate() {
            assert_eq!(latency.index(), position);
        }
    }

    fn is_metric_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    }

    #[test]
    fn names_are_valid_unique_prometheus_names() {
        let mut names: Vec<&str> = Counter::ALL.iter().map(|c| c.name()).collect();
        names.extend(Gauge::ALL.iter().map(|g| g.name()));
        names.extend(Latency::ALL.iter().map(|l| l.name()));
        for name in &names {
            assert!(is_metric_name(name), "{name}");
            assert!(name.starts_with("hydrant_"), "{name}");
        }
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        assert!(Counter::ALL.iter().all(|c| c.name().ends_with("_total")));
        assert!(Latency::ALL.iter().all(|l| l.name().ends_with("_seconds")));
    }

    #[test]
    fn labels_and_slugs_are_single_topic_levels() {
        let words = DropReason::ALL
            .iter()
            .map(|r| r.label())
            .chain(Latency::ALL.iter().map(|l| l.slug()));
        for word in words {
            assert!(!word.is_empty());
            assert!(word.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
    }

    #[test]
    fn only_the_retained_store_is_replicated() {
        let replicated: Vec<Gauge> = Gauge::ALL
            .into_iter()
            .filter(|g| g.merge() == GaugeMerge::Replicated)
            .collect();
        assert_eq!(
            replicated,
            vec![Gauge::RetainedMessages, Gauge::RetainedBytes]
        );
    }
}
