//! The application message as it travels from a publisher to every subscriber.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::protocol::{
    DeliveryProperties, EncodedPublish, MessageProperties, ProtocolVersion, PublishTopic, QoS,
    SubscriptionId,
};
use crate::topic::{TopicFilter, TopicName};

/// The properties of a message that has none (every MQTT 3.1/3.1.1 publish).
static NO_PROPERTIES: MessageProperties = MessageProperties {
    payload_format: None,
    message_expiry_interval: None,
    content_type: None,
    response_topic: None,
    correlation_data: None,
    user_properties: Vec::new(),
};

/// An application message on its way to subscribers. Immutable and cheap to clone: the topic
/// and payload are reference-counted `Bytes` received once from the publisher's socket and
/// shared by every subscriber on every core, and so are the MQTT 5 extras, when there are any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Where it was published.
    pub topic: TopicName,
    /// The payload, shared, never copied per subscriber.
    pub payload: Bytes,
    /// The QoS it was published with (each subscriber receives min(this, granted)).
    pub qos: QoS,
    /// The publisher's retain flag.
    pub retain: bool,
    /// What an MQTT 5 publish carries beyond topic and payload; `None` for a message without
    /// properties (every MQTT 3.1/3.1.1 publish), which then costs one pointer.
    pub extras: Option<Arc<MessageExtras>>,
}

/// The MQTT 5 part of a message: its properties, forwarded unaltered to MQTT 5 subscribers
/// (and left out for MQTT 3.1/3.1.1 ones), its deadline, and what belongs to one delivery: the
/// subscription identifiers it matched and the shared subscription group it came through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageExtras {
    /// The publisher's properties (its message expiry interval as received).
    pub properties: MessageProperties,
    /// When the message expires, from its message expiry interval; `None` never.
    pub expires_at: Option<Instant>,
    /// The identifiers of the subscriptions a delivery matched (empty in the message as
    /// published; set in the copy made for one subscriber).
    pub subscription_ids: Vec<SubscriptionId>,
    /// Where a shared subscription member's copy came from (`None` in the message as
    /// published and in copies for ordinary subscriptions), so that the copy can go to another
    /// member if the member's session ends before delivering it. Never encoded.
    pub shared_group: Option<SharedOrigin>,
}

/// What a shared subscription member's copy of a message remembers: its group, and the QoS and
/// RETAIN flag the message was published with (the copy carries the member's own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedOrigin {
    /// The group's whole `$share/...` filter.
    pub group: TopicFilter,
    /// The QoS it was published with.
    pub qos: QoS,
    /// The publisher's RETAIN flag.
    pub retain: bool,
}

impl MessageExtras {
    /// The extras of a message received at `received` with `properties`; `None` when there
    /// is nothing to carry.
    pub fn new(properties: MessageProperties, received: Instant) -> Option<Arc<Self>> {
        if properties == NO_PROPERTIES {
            return None;
        }
        // An interval of 0 sets no deadline, as with Mosquitto.
        let expires_at = properties
            .message_expiry_interval
            .filter(|seconds| *seconds > 0)
            .and_then(|seconds| received.checked_add(Duration::from_secs(u64::from(seconds))));
        Some(Arc::new(Self {
            properties,
            expires_at,
            subscription_ids: Vec::new(),
            shared_group: None,
        }))
    }
}

impl Message {
    /// Bytes this message accounts for in a subscriber's queue (`max_queued_bytes`).
    pub fn queued_size(&self) -> usize {
        self.topic.as_bytes().len() + self.payload.len()
    }

    /// Whether its message expiry interval has passed: it must not be delivered any more
    /// (reads the clock only for a message that has a deadline).
    pub fn is_expired(&self) -> bool {
        self.deadline()
            .is_some_and(|deadline| Instant::now() >= deadline)
    }

    /// When the message expires, if it does.
    fn deadline(&self) -> Option<Instant> {
        self.extras.as_ref().and_then(|extras| extras.expires_at)
    }

    /// This message as delivered through subscriptions with these identifiers (MQTT 5): a
    /// copy whose extras carry them, or the message itself when there are none.
    pub fn with_subscription_ids(&self, ids: &[SubscriptionId]) -> Message {
        if ids.is_empty() {
            return self.clone();
        }
        self.with_extras(|extras| extras.subscription_ids = ids.to_vec())
    }

    /// This message (as published) as a member of the shared subscription group `filter`
    /// receives it: a copy that remembers the group, the QoS and the RETAIN flag (see
    /// [`MessageExtras::shared_group`]).
    pub fn through_shared_group(&self, filter: &TopicFilter) -> Message {
        let origin = SharedOrigin {
            group: filter.clone(),
            qos: self.qos,
            retain: self.retain,
        };
        self.with_extras(|extras| extras.shared_group = Some(origin))
    }

    /// The shared subscription group this copy was chosen through, if any.
    pub fn shared_group(&self) -> Option<&TopicFilter> {
        let origin = self.extras.as_ref()?.shared_group.as_ref()?;
        Some(&origin.group)
    }

    /// This message without what one delivery added to it (subscription identifiers; for a
    /// shared subscription member's copy, its own QoS and RETAIN flag too): what another
    /// subscriber may be given.
    pub fn undelivered(&self) -> Message {
        let Some(extras) = &self.extras else {
            return self.clone();
        };
        let (qos, retain) = match &extras.shared_group {
            Some(origin) => (origin.qos, origin.retain),
            None if extras.subscription_ids.is_empty() => return self.clone(),
            None => (self.qos, self.retain),
        };
        let extras =
            (extras.properties != NO_PROPERTIES || extras.expires_at.is_some()).then(|| {
                Arc::new(MessageExtras {
                    properties: extras.properties.clone(),
                    expires_at: extras.expires_at,
                    subscription_ids: Vec::new(),
                    shared_group: None,
                })
            });
        Message {
            extras,
            qos,
            retain,
            ..self.clone()
        }
    }

    /// A copy whose extras (created empty if there were none) `change` alters.
    fn with_extras(&self, change: impl FnOnce(&mut MessageExtras)) -> Message {
        let mut extras = match &self.extras {
            Some(extras) => MessageExtras::clone(extras),
            None => MessageExtras {
                properties: MessageProperties::default(),
                expires_at: None,
                subscription_ids: Vec::new(),
                shared_group: None,
            },
        };
        change(&mut extras);
        Message {
            extras: Some(Arc::new(extras)),
            ..self.clone()
        }
    }

    /// This message with its expiry interval starting at `now` (a delayed will: its interval
    /// runs from its publication [MQTT-3.1.3.2.4]).
    pub fn published_at(self, now: Instant) -> Message {
        let extras = match self.extras {
            Some(extras) if extras.expires_at.is_some() => {
                MessageExtras::new(extras.properties.clone(), now)
            }
            other => other,
        };
        Message { extras, ..self }
    }

    /// Whether `other` is this very message (the same shared topic and payload buffers), as
    /// opposed to an equal-looking one published separately.
    pub fn is_same_as(&self, other: &Message) -> bool {
        let same_bytes = |x: &Bytes, y: &Bytes| x.as_ptr() == y.as_ptr() && x.len() == y.len();
        same_bytes(self.topic.as_bytes(), other.topic.as_bytes())
            && same_bytes(&self.payload, &other.payload)
    }

    /// The PUBLISH carrying this message to a client speaking `protocol`, with this QoS and
    /// RETAIN flag (a packet id placeholder when QoS > 0). An MQTT 5 one carries the
    /// properties, with the expiry interval lowered to what remains [MQTT-3.3.2-6], and the
    /// subscription identifiers.
    pub fn encode(&self, protocol: ProtocolVersion, qos: QoS, retain: bool) -> EncodedPublish {
        match protocol {
            ProtocolVersion::V5 => {
                let (properties, subscription_ids) = match &self.extras {
                    Some(extras) => (&extras.properties, &extras.subscription_ids[..]),
                    None => (&NO_PROPERTIES, &[][..]),
                };
                let message_expiry_interval = match self.deadline() {
                    Some(deadline) => Some(remaining_seconds(deadline, Instant::now())),
                    None => properties.message_expiry_interval,
                };
                EncodedPublish::new_v5(
                    &PublishTopic::Name(self.topic.clone()),
                    &self.payload,
                    qos,
                    retain,
                    DeliveryProperties {
                        message: properties,
                        message_expiry_interval,
                        subscription_ids,
                    },
                )
            }
            ProtocolVersion::V3_1 | ProtocolVersion::V3_1_1 => {
                EncodedPublish::new(&self.topic, &self.payload, qos, retain)
            }
        }
    }
}

/// Whole seconds left until `deadline`, rounded up and at least 1 (a message sent at all is
/// still alive).
fn remaining_seconds(deadline: Instant, now: Instant) -> u32 {
    let left = deadline.saturating_duration_since(now);
    let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    u32::try_from(seconds).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_without_properties_has_no_extras() {
        assert!(MessageExtras::new(MessageProperties::default(), Instant::now()).is_none());
    }

    #[test]
    fn expiry_interval_sets_a_deadline_and_zero_sets_none() {
        let now = Instant::now();
        let with = |seconds| MessageProperties {
            message_expiry_interval: Some(seconds),
            ..MessageProperties::default()
        };
        let extras = MessageExtras::new(with(10), now).expect("extras");
        assert_eq!(extras.expires_at, Some(now + Duration::from_secs(10)));
        let extras = MessageExtras::new(with(0), now).expect("extras");
        assert_eq!(extras.expires_at, None);
    }

    #[test]
    fn remaining_seconds_round_up() {
        let now = Instant::now();
        assert_eq!(
            remaining_seconds(now + Duration::from_millis(9_100), now),
            10
        );
        assert_eq!(remaining_seconds(now + Duration::from_secs(9), now), 9);
        assert_eq!(remaining_seconds(now, now), 1);
    }

    #[test]
    fn a_delivered_copy_forgets_its_delivery_and_keeps_the_publishers_properties() {
        let plain = Message {
            topic: TopicName::try_from("jobs/a").expect("valid topic"),
            payload: Bytes::from_static(b"job"),
            qos: QoS::AtLeastOnce,
            retain: false,
            extras: None,
        };
        let group = TopicFilter::try_from("$share/g/jobs/#").expect("valid filter");
        let id = SubscriptionId::new(7).expect("valid id");

        let published = Message {
            qos: QoS::ExactlyOnce,
            retain: true,
            ..plain.clone()
        };
        // As a member granted QoS 1 without Retain As Published gets it.
        let copy = Message {
            qos: QoS::AtLeastOnce,
            retain: false,
            ..published
                .with_subscription_ids(&[id])
                .through_shared_group(&group)
        };
        assert_eq!(copy.shared_group(), Some(&group));
        assert!(copy.is_same_as(&plain), "the payload is shared, not copied");
        assert_eq!(
            copy.undelivered(),
            published,
            "as published, and no extras at all"
        );
        assert_eq!(plain.shared_group(), None);
        assert_eq!(plain.with_subscription_ids(&[id]).undelivered(), plain);

        let typed = Message {
            extras: MessageExtras::new(
                MessageProperties {
                    content_type: Some("text/plain".try_into().expect("valid string")),
                    ..MessageProperties::default()
                },
                Instant::now(),
            ),
            ..plain
        };
        let back = typed.through_shared_group(&group).undelivered();
        assert_eq!(back, typed);
        assert_eq!(back.shared_group(), None);
    }
}
