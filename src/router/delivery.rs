//! Handing one message to one session on this core: the PUBLISH it is sent as (shared by every
//! subscriber with the same wire layout), the limits of its client, and its QoS flow. Every
//! message not handed over is counted by its reason ([`DropReason`]).

use std::time::Instant;

use crate::connection::Frame;
use crate::message::Message;
use crate::metrics::DropReason;
use crate::protocol::{EncodedPublish, ProtocolVersion, QoS};
use crate::session::QueueFull;
use crate::shard::{Shard, ShardState};
use crate::topic::TopicFilter;

use super::Target;

/// The encodings of one message made during one fan-out, one per wire layout: protocol
/// family (MQTT 3.1/3.1.1 or 5), delivered QoS and RETAIN flag. Deliveries carrying
/// subscription identifiers are encoded for their subscriber alone.
pub(super) struct EncodingCache<'a> {
    message: &'a Message,
    /// The message is sent because a subscription was just made (a retained message): RETAIN
    /// is set on every copy [MQTT-3.3.1-8].
    retained_on_subscribe: bool,
    /// Index: family, QoS, RETAIN.
    by_layout: [[[Option<EncodedPublish>; 2]; 3]; 2],
    /// For a timed fan-out: when the message entered this core (each subscriber's copy
    /// carries it to its write, for the publish-to-delivery latency).
    received: Option<Instant>,
}

impl<'a> EncodingCache<'a> {
    /// The (empty) cache of one fan-out of `message`.
    pub(super) fn new(message: &'a Message, retained_on_subscribe: bool) -> Self {
        Self {
            message,
            retained_on_subscribe,
            by_layout: Default::default(),
            received: None,
        }
    }

    /// This fan-out, timed from `received` when that is `Some`.
    pub(super) fn timed(mut self, received: Option<Instant>) -> Self {
        self.received = received;
        self
    }

    fn get(&mut self, protocol: ProtocolVersion, qos: QoS, retain: bool) -> &EncodedPublish {
        let message = self.message;
        let family = usize::from(protocol == ProtocolVersion::V5);
        self.by_layout[family][qos as usize][usize::from(retain)]
            .get_or_insert_with(|| message.encode(protocol, qos, retain))
    }

    /// The RETAIN flag of a delivery: set for a retained message sent on subscription, and
    /// on a live one only through a subscription with Retain As Published [MQTT-3.3.1-12,
    /// 3.3.1-13].
    fn retain(&self, target: &Target) -> bool {
        self.retained_on_subscribe || (target.retain_as_published && self.message.retain)
    }
}

impl Shard {
    /// Queues one message for one session: QoS 0 straight to its connection's queue (dropped
    /// and counted when full, never kept for an offline client), QoS 1/2 through its flow. A
    /// PUBLISH larger than the client accepts is dropped for it and counted. `own_message`
    /// says the session's own client published it (for the no-local subscriptions);
    /// `shared_group` names the shared subscription group the session was chosen in, which
    /// its QoS 1/2 copy remembers. Returns whether the session took the message (written, or
    /// queued in its flow).
    pub(super) fn deliver_to(
        &self,
        state: &mut ShardState,
        target: &Target,
        own_message: bool,
        shared_group: Option<&TopicFilter>,
        encodings: &mut EncodingCache<'_>,
    ) -> bool {
        let ShardState {
            sessions,
            scratch_actions: actions,
            ..
        } = state;
        let Some(slot) = sessions.get_mut(&target.key) else {
            return false;
        };
        let message = encodings.message;
        let received = encodings.received;
        if target.check_read
            && !slot
                .access
                .as_ref()
                .map_or(true, |access| access.can_read(&message.topic))
        {
            // The ACL denies this topic to this client; not a drop, never sent.
            return false;
        }
        let qos = message.qos.min(target.qos);
        let retain = encodings.retain(target);
        let ids = target.subscription_ids(&slot.state, &message.topic, own_message);
        let delivered = if qos == QoS::AtMostOnce {
            None
        } else {
            let copy = message.with_subscription_ids(&ids);
            let copy = match shared_group {
                Some(filter) => copy.through_shared_group(filter),
                None => copy,
            };
            Some(Message {
                qos,
                retain,
                ..copy
            })
        };
        // The PUBLISH for this client: the fan-out's shared one, or its own when it carries
        // subscription identifiers.
        let mut own_packet = None;
        let packet = match &slot.conn {
            Some(conn) => {
                let packet = if !ids.is_empty() && conn.protocol == ProtocolVersion::V5 {
                    let personal = match &delivered {
                        Some(delivered) => delivered.encode(conn.protocol, qos, retain),
                        None => {
                            message
                                .with_subscription_ids(&ids)
                                .encode(conn.protocol, qos, retain)
                        }
                    };
                    own_packet.insert(personal)
                } else {
                    encodings.get(conn.protocol, qos, retain)
                };
                if packet.len() > conn.max_packet_size() {
                    conn.record_too_large(packet.len());
                    self.metrics.dropped(DropReason::PacketTooLarge, 1);
                    return false;
                }
                Some(packet)
            }
            None => None,
        };
        let Some(delivered) = delivered else {
            if let (Some(conn), Some(packet)) = (&slot.conn, packet) {
                let frame = Frame::Publish {
                    packet: packet.clone(),
                    packet_id: None,
                    dup: false,
                };
                return match conn.send_droppable(frame, received) {
                    Ok(()) => true,
                    Err(reason) => {
                        self.metrics.dropped(reason, 1);
                        false
                    }
                };
            }
            return false;
        };
        actions.clear();
        let online = slot.conn.is_some();
        if let Err(full) = slot.state.outgoing.offer(delivered, online, actions) {
            let reason = match full {
                QueueFull::Messages => DropReason::MaxQueuedMessages,
                QueueFull::Bytes => DropReason::MaxQueuedBytes,
                QueueFull::Budget => DropReason::MaxQueuedBytesTotal,
            };
            self.metrics.dropped(reason, 1);
            match &slot.conn {
                Some(conn) => conn.record_flow_drop(),
                None => {
                    tracing::debug!(client_id = %slot.state.client_id, %full, "message for offline client dropped")
                }
            }
            return false;
        }
        if let Some(conn) = &slot.conn {
            // The offer may first release older queued messages: only the offered one
            // shares this fan-out's encoding (and its timing).
            let sent = conn.send_flow_actions_timed(
                &mut slot.state.outgoing,
                actions,
                packet.map(|packet| (message, packet)),
                received,
            );
            self.metrics
                .dropped(DropReason::PacketTooLarge, sent.dropped);
        }
        self.persist_flow(&mut slot.state);
        true
    }
}
