//! `[limits]`: the bounds that keep one client, or all of them, from exhausting the broker.

/// Default `max_packet_size`: 1 MiB.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 1_048_576;
/// Default `max_inflight_messages` per client.
pub const DEFAULT_MAX_INFLIGHT_MESSAGES: usize = 20;
/// Default `max_queued_messages` per client.
pub const DEFAULT_MAX_QUEUED_MESSAGES: usize = 1_000;
/// Default `max_queued_bytes` per client: 8 MiB.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 8_388_608;
/// Default `max_queued_bytes_total`, all clients of all cores together: 512 MiB, a quarter of
/// the reference deployment's 2 GB.
pub const DEFAULT_MAX_QUEUED_BYTES_TOTAL: usize = 536_870_912;
/// Default `min_keepalive`: clients may ask for no keep-alive at all.
pub const DEFAULT_MIN_KEEPALIVE: u16 = 0;
/// Default `max_keepalive`: the largest keep-alive MQTT can express.
pub const DEFAULT_MAX_KEEPALIVE: u16 = u16::MAX;
/// Default `max_subscriptions` per client.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 1_000;
/// Default `max_retained_messages`, all topics together.
pub const DEFAULT_MAX_RETAINED_MESSAGES: usize = 100_000;
/// Default `max_retained_bytes`, all topics together: 256 MiB.
pub const DEFAULT_MAX_RETAINED_BYTES: usize = 268_435_456;
/// Default `max_topic_alias` per MQTT 5 client (Mosquitto's default).
pub const DEFAULT_MAX_TOPIC_ALIAS: usize = 10;
/// Default `max_topic_alias_out`: aliases hydrant uses towards one MQTT 5 client, at most.
pub const DEFAULT_MAX_TOPIC_ALIAS_OUT: usize = 10;

/// Smallest allowed `max_packet_size`: a PINGREQ, the shortest packet, is 2 bytes.
pub const MIN_PACKET_SIZE: usize = 2;
/// Largest allowed `max_packet_size`: the largest packet MQTT can encode, a 1-byte packet
/// type, a 4-byte remaining length and 268,435,455 bytes after them.
pub const MAX_MQTT_PACKET_SIZE: usize = 268_435_460;
/// Largest allowed `max_inflight_messages`: one per packet identifier.
pub const MAX_INFLIGHT_MESSAGES: usize = 65_535;
/// Largest allowed `max_topic_alias`: the largest topic alias MQTT 5 can express.
pub const MAX_TOPIC_ALIAS: usize = 65_535;
/// Largest allowed `max_topic_alias_out`: the table is searched linearly for every PUBLISH
/// written, so it stays small.
pub const MAX_TOPIC_ALIAS_OUT: usize = 1_024;

/// Bounds on packets, per-client queues, keep-alives and the retained store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest packet accepted, fixed header included, checked before the body is read (bytes).
    pub max_packet_size: usize,
    /// QoS 1/2 messages sent to one client and not yet acknowledged.
    pub max_inflight_messages: usize,
    /// Messages queued for one client beyond its inflight window; past it QoS 0 is dropped.
    pub max_queued_messages: usize,
    /// Bytes (topic + payload) queued for one client; 0 = only the message count applies.
    pub max_queued_bytes: usize,
    /// Bytes (topic + payload) queued for all clients together, split evenly between the
    /// cores (see `queue_budget`); 0 = no broker-wide bound.
    pub max_queued_bytes_total: usize,
    /// Smallest keep-alive a client may ask for (seconds); 0 lets clients ask for none.
    pub min_keepalive: u16,
    /// Largest keep-alive a client may ask for (seconds).
    pub max_keepalive: u16,
    /// Subscriptions one client may hold; further filters are refused in the SUBACK.
    pub max_subscriptions: usize,
    /// Retained messages stored, all topics together; past it new retained topics are not stored.
    pub max_retained_messages: usize,
    /// Bytes (topic + payload) of all retained messages together.
    pub max_retained_bytes: usize,
    /// Topic aliases an MQTT 5 client may define towards the broker (its Topic Alias Maximum);
    /// 0 = none.
    pub max_topic_alias: usize,
    /// Topic aliases hydrant uses in the PUBLISHes it sends one MQTT 5 client, at most (and at
    /// most the client's own Topic Alias Maximum); 0 = never send aliases.
    pub max_topic_alias_out: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
            max_inflight_messages: DEFAULT_MAX_INFLIGHT_MESSAGES,
            max_queued_messages: DEFAULT_MAX_QUEUED_MESSAGES,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            max_queued_bytes_total: DEFAULT_MAX_QUEUED_BYTES_TOTAL,
            min_keepalive: DEFAULT_MIN_KEEPALIVE,
            max_keepalive: DEFAULT_MAX_KEEPALIVE,
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            max_retained_messages: DEFAULT_MAX_RETAINED_MESSAGES,
            max_retained_bytes: DEFAULT_MAX_RETAINED_BYTES,
            max_topic_alias: DEFAULT_MAX_TOPIC_ALIAS,
            max_topic_alias_out: DEFAULT_MAX_TOPIC_ALIAS_OUT,
        }
    }
}

impl Limits {
    /// One core's share of `max_queued_bytes_total` when `cores` cores run (0 = no bound; a
    /// bound never rounds down to "no bound").
    #[must_use]
    pub fn queued_bytes_per_core(&self, cores: usize) -> usize {
        if self.max_queued_bytes_total == 0 {
            return 0;
        }
        (self.max_queued_bytes_total / cores.max(1)).max(1)
    }
}
