//! The record vocabulary: every change to a core's durable state, and the encoding of a
//! record's body (the frame around it, with its length and checksum, is in `frame.rs`).
//!
//! Records describe *changes*, replayed in order at start-up; a snapshot is the same records
//! describing the live state (one `RetainedSet` per retained topic, one `SessionCreated` per
//! session followed by its subscriptions, queued messages, and so on).
//!
//! The vocabulary is the persistence layer's own: topics, filters, payloads and MQTT 5
//! properties are opaque bytes (the broker validates them again when it rebuilds its state),
//! times are wall-clock ([`SystemTime`]: a deadline must mean the same after a restart, which a
//! monotonic `Instant` cannot), and a queued message carries a `message_id` chosen by the
//! broker so that later records (sent, dropped) name it without ambiguity.
//!
//! Body encoding: integers little-endian, byte strings as a `u32` length then the bytes, an
//! optional time as a presence byte then milliseconds since the Unix epoch. Decoding reads from
//! a slice, never panics, rejects trailing bytes, and copies what it keeps (a recovered record
//! must not pin the buffer of the whole file it was read from).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::protocol::{PacketId, QoS};

/// One change to the durable state of a core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A retained message was stored for its topic (replacing any earlier one). Written by
    /// the topic's owner core.
    RetainedSet(RetainedMessage),
    /// The retained message of a topic was removed (empty retained publish, or expiry).
    RetainedCleared {
        /// The topic name.
        topic: Bytes,
    },
    /// A session was created for a client id, replacing any earlier session of that id (a new
    /// session, or a clean start).
    SessionCreated {
        /// The client id.
        client_id: Arc<str>,
        /// Seconds the session outlives its connection (MQTT 5 Session Expiry Interval).
        expiry_interval: u32,
    },
    /// A session's expiry interval or connection status changed: a client resumed it, went
    /// away, or changed the interval on DISCONNECT (MQTT 5).
    SessionExpiry {
        /// The client id.
        client_id: Arc<str>,
        /// Seconds the session outlives its connection.
        expiry_interval: u32,
        /// When its client went away, or `None` while one is connected; the session expires at
        /// this time plus `expiry_interval`.
        offline_since: Option<SystemTime>,
    },
    /// A session ended (expired, taken over with a clean start, or ended with its connection);
    /// everything it held is gone.
    SessionEnded {
        /// The client id.
        client_id: Arc<str>,
    },
    /// A session subscribed (or replaced the options of an existing subscription).
    SubscriptionAdded {
        /// The client id.
        client_id: Arc<str>,
        /// The topic filter, as granted (shared-subscription prefix included).
        filter: Bytes,
        /// The subscription options byte of SUBSCRIBE (granted QoS, no local, retain as
        /// published, retain handling), as on the wire.
        options: u8,
        /// The MQTT 5 subscription identifier (1..=268,435,455), if any.
        subscription_id: Option<u32>,
    },
    /// A session unsubscribed from a filter.
    SubscriptionRemoved {
        /// The client id.
        client_id: Arc<str>,
        /// The topic filter.
        filter: Bytes,
    },
    /// A QoS 1/2 message was given to a session: queued, or sent at once when `packet_id` is
    /// set.
    MessageQueued(QueuedMessage),
    /// A queued message left the queue for the inflight window with a packet id.
    MessageSent {
        /// The client id.
        client_id: Arc<str>,
        /// The message, as named by its [`QueuedMessage::message_id`].
        message_id: u64,
        /// The packet id it was sent with.
        packet_id: PacketId,
    },
    /// A queued message was dropped without being sent (it expired, or could never be sent).
    MessageDropped {
        /// The client id.
        client_id: Arc<str>,
        /// The message, as named by its [`QueuedMessage::message_id`].
        message_id: u64,
    },
    /// The client acknowledged a message the broker sent it.
    MessageAcknowledged {
        /// The client id.
        client_id: Arc<str>,
        /// The packet id acknowledged.
        packet_id: PacketId,
        /// Which acknowledgement: PUBACK and PUBCOMP end the exchange, PUBREC moves a QoS 2
        /// message to "PUBREL sent" (its payload may be forgotten, the id stays until PUBCOMP).
        /// A snapshot records an id awaiting PUBCOMP as a PUBREC for an id with no message.
        ack: Acknowledgement,
    },
    /// A QoS 2 PUBLISH from the client was received and delivered (PUBREC sent): its packet
    /// id is remembered until PUBREL, so that a re-sent PUBLISH is not delivered twice.
    Qos2Received {
        /// The client id.
        client_id: Arc<str>,
        /// The publisher's packet id.
        packet_id: PacketId,
    },
    /// The client released a QoS 2 packet id (PUBREL): it is forgotten.
    Qos2Released {
        /// The client id.
        client_id: Arc<str>,
        /// The publisher's packet id.
        packet_id: PacketId,
    },
    /// A session's will was stored (a connection with a will, or a will waiting for its delay
    /// after the connection ended).
    WillStored(StoredWill),
    /// A session's will was cleared (published, cancelled by a normal DISCONNECT, or dropped by
    /// a resumed session).
    WillCleared {
        /// The client id.
        client_id: Arc<str>,
    },
}

/// A retained message as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetainedMessage {
    /// The topic name.
    pub topic: Bytes,
    /// The payload (never empty: an empty retained publish is a `RetainedCleared`).
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: QoS,
    /// The MQTT 5 PUBLISH properties, encoded as on the wire (empty for none).
    pub properties: Bytes,
    /// When it expires (from its Message Expiry Interval), or `None` for never.
    pub expires_at: Option<SystemTime>,
}

/// A message given to a session, with everything needed to send it after a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedMessage {
    /// The client id of the session.
    pub client_id: Arc<str>,
    /// The broker's name for this message within the session: unique among the session's
    /// messages, also across restarts (after recovery the broker continues above the largest
    /// it saw).
    pub message_id: u64,
    /// The packet id, when the message was sent at once; `None` while it waits in the queue.
    pub packet_id: Option<PacketId>,
    /// The QoS it is delivered with (1 or 2).
    pub qos: QoS,
    /// The DUP flag it was last sent with.
    pub dup: bool,
    /// The retain flag it is delivered with.
    pub retain: bool,
    /// The topic name.
    pub topic: Bytes,
    /// The payload.
    pub payload: Bytes,
    /// The MQTT 5 properties of this delivery, encoded as on the wire (empty for none).
    pub properties: Bytes,
    /// When it expires, or `None` for never.
    pub expires_at: Option<SystemTime>,
}

/// A will message kept for a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredWill {
    /// The client id of the session.
    pub client_id: Arc<str>,
    /// The will topic.
    pub topic: Bytes,
    /// The will payload.
    pub payload: Bytes,
    /// The will QoS.
    pub qos: QoS,
    /// The will retain flag.
    pub retain: bool,
    /// The MQTT 5 will properties, encoded as on the wire (empty for none).
    pub properties: Bytes,
    /// The Will Delay Interval in seconds (0 for none).
    pub delay: u32,
    /// When the will is due: set once its connection ended, `None` while it is connected.
    pub publish_at: Option<SystemTime>,
}

/// The acknowledgement a client sent for a message the broker delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Acknowledgement {
    /// PUBACK: a QoS 1 message is done.
    Puback,
    /// PUBREC: a QoS 2 message was received; the broker sends PUBREL and waits for PUBCOMP.
    Pubrec,
    /// PUBCOMP: a QoS 2 exchange is done.
    Pubcomp,
}

/// Why a record body could not be decoded. The frame's checksum was valid, so this means a
/// writer with a different idea of the format, never a torn write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body ends before a field does.
    #[error("record body is truncated")]
    Truncated,
    /// Bytes remain after the last field.
    #[error("record body has {0} trailing bytes")]
    TrailingBytes(usize),
    /// The record type is not one this version knows.
    #[error("unknown record type {0}")]
    UnknownType(u8),
    /// A QoS outside 0..=2 (or 0 where 1..=2 is required).
    #[error("invalid QoS {0}")]
    InvalidQos(u8),
    /// A flags byte with bits this version does not define.
    #[error("invalid flags byte {0:#04x}")]
    InvalidFlags(u8),
    /// A packet id of 0.
    #[error("packet id 0")]
    ZeroPacketId,
    /// A client id that is not UTF-8.
    #[error("client id is not UTF-8")]
    InvalidUtf8,
    /// A presence byte other than 0 or 1.
    #[error("invalid presence byte {0}")]
    InvalidPresence(u8),
    /// A time too far in the future to represent.
    #[error("time out of range")]
    InvalidTime,
    /// An acknowledgement code this version does not define.
    #[error("invalid acknowledgement {0}")]
    InvalidAcknowledgement(u8),
}

/// The type byte of each record in a frame. Values are part of the file format: never reuse
/// or renumber one.
pub(crate) mod record_type {
    pub const RETAINED_SET: u8 = 1;
    pub const RETAINED_CLEARED: u8 = 2;
    pub const SESSION_CREATED: u8 = 3;
    pub const SESSION_EXPIRY: u8 = 4;
    pub const SESSION_ENDED: u8 = 5;
    pub const SUBSCRIPTION_ADDED: u8 = 6;
    pub const SUBSCRIPTION_REMOVED: u8 = 7;
    pub const MESSAGE_QUEUED: u8 = 8;
    pub const MESSAGE_SENT: u8 = 9;
    pub const MESSAGE_DROPPED: u8 = 10;
    pub const MESSAGE_ACKNOWLEDGED: u8 = 11;
    pub const QOS2_RECEIVED: u8 = 12;
    pub const QOS2_RELEASED: u8 = 13;
    pub const WILL_STORED: u8 = 14;
    pub const WILL_CLEARED: u8 = 15;

    /// Whether `value` is the type of a [`super::Record`].
    pub fn is_record(value: u8) -> bool {
        (RETAINED_SET..=WILL_CLEARED).contains(&value)
    }
}

/// Which kind of record a [`Record`] is, without its contents: for counters and the disk
/// bound's policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// [`Record::RetainedSet`] or [`Record::RetainedCleared`].
    Retained,
    /// A session, subscription or will record.
    Session,
    /// [`Record::MessageQueued`]: the only kind the disk bound refuses.
    QueuedMessage,
    /// Sent, dropped, acknowledged, QoS 2 received or released: progress of messages already
    /// recorded.
    Delivery,
}

/// Bit layout of the flags byte of a queued message or a will.
const FLAG_QOS_MASK: u8 = 0b0000_0011;
const FLAG_DUP: u8 = 0b0000_0100;
const FLAG_RETAIN: u8 = 0b0000_1000;

impl Record {
    /// The type byte written in this record's frame.
    pub(crate) fn type_byte(&self) -> u8 {
        use record_type::*;
        match self {
            Record::RetainedSet(_) => RETAINED_SET,
            Record::RetainedCleared { .. } => RETAINED_CLEARED,
            Record::SessionCreated { .. } => SESSION_CREATED,
            Record::SessionExpiry { .. } => SESSION_EXPIRY,
            Record::SessionEnded { .. } => SESSION_ENDED,
            Record::SubscriptionAdded { .. } => SUBSCRIPTION_ADDED,
            Record::SubscriptionRemoved { .. } => SUBSCRIPTION_REMOVED,
            Record::MessageQueued(_) => MESSAGE_QUEUED,
            Record::MessageSent { .. } => MESSAGE_SENT,
            Record::MessageDropped { .. } => MESSAGE_DROPPED,
            Record::MessageAcknowledged { .. } => MESSAGE_ACKNOWLEDGED,
            Record::Qos2Received { .. } => QOS2_RECEIVED,
            Record::Qos2Released { .. } => QOS2_RELEASED,
            Record::WillStored(_) => WILL_STORED,
            Record::WillCleared { .. } => WILL_CLEARED,
        }
    }

    /// Which kind of record this is.
    pub fn kind(&self) -> RecordKind {
        match self {
            Record::RetainedSet(_) | Record::RetainedCleared { .. } => RecordKind::Retained,
            Record::SessionCreated { .. }
            | Record::SessionExpiry { .. }
            | Record::SessionEnded { .. }
            | Record::SubscriptionAdded { .. }
            | Record::SubscriptionRemoved { .. }
            | Record::WillStored(_)
            | Record::WillCleared { .. } => RecordKind::Session,
            Record::MessageQueued(_) => RecordKind::QueuedMessage,
            Record::MessageSent { .. }
            | Record::MessageDropped { .. }
            | Record::MessageAcknowledged { .. }
            | Record::Qos2Received { .. }
            | Record::Qos2Released { .. } => RecordKind::Delivery,
        }
    }

    /// Appends this record's body (without type, length or checksum) to `out`.
    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) {
        match self {
            Record::RetainedSet(message) => {
                put_bytes(out, &message.topic);
                put_bytes(out, &message.payload);
                out.push(message.qos as u8);
                put_bytes(out, &message.properties);
                put_time(out, message.expires_at);
            }
            Record::RetainedCleared { topic } => put_bytes(out, topic),
            Record::SessionCreated {
                client_id,
                expiry_interval,
            } => {
                put_bytes(out, client_id.as_bytes());
                put_u32(out, *expiry_interval);
            }
            Record::SessionExpiry {
                client_id,
                expiry_interval,
                offline_since,
            } => {
                put_bytes(out, client_id.as_bytes());
                put_u32(out, *expiry_interval);
                put_time(out, *offline_since);
            }
            Record::SessionEnded { client_id } | Record::WillCleared { client_id } => {
                put_bytes(out, client_id.as_bytes());
            }
            Record::SubscriptionAdded {
                client_id,
                filter,
                options,
                subscription_id,
            } => {
                put_bytes(out, client_id.as_bytes());
                put_bytes(out, filter);
                out.push(*options);
                match subscription_id {
                    None => out.push(0),
                    Some(id) => {
                        out.push(1);
                        put_u32(out, *id);
                    }
                }
            }
            Record::SubscriptionRemoved { client_id, filter } => {
                put_bytes(out, client_id.as_bytes());
                put_bytes(out, filter);
            }
            Record::MessageQueued(message) => {
                put_bytes(out, message.client_id.as_bytes());
                put_u64(out, message.message_id);
                put_u16(out, message.packet_id.map_or(0, PacketId::get));
                out.push(flags(message.qos, message.dup, message.retain));
                put_bytes(out, &message.topic);
                put_bytes(out, &message.payload);
                put_bytes(out, &message.properties);
                put_time(out, message.expires_at);
            }
            Record::MessageSent {
                client_id,
                message_id,
                packet_id,
            } => {
                put_bytes(out, client_id.as_bytes());
                put_u64(out, *message_id);
                put_u16(out, packet_id.get());
            }
            Record::MessageDropped {
                client_id,
                message_id,
            } => {
                put_bytes(out, client_id.as_bytes());
                put_u64(out, *message_id);
            }
            Record::MessageAcknowledged {
                client_id,
                packet_id,
                ack,
            } => {
                put_bytes(out, client_id.as_bytes());
                put_u16(out, packet_id.get());
                out.push(match ack {
                    Acknowledgement::Puback => 0,
                    Acknowledgement::Pubrec => 1,
                    Acknowledgement::Pubcomp => 2,
                });
            }
            Record::Qos2Received {
                client_id,
                packet_id,
            }
            | Record::Qos2Released {
                client_id,
                packet_id,
            } => {
                put_bytes(out, client_id.as_bytes());
                put_u16(out, packet_id.get());
            }
            Record::WillStored(will) => {
                put_bytes(out, will.client_id.as_bytes());
                put_bytes(out, &will.topic);
                put_bytes(out, &will.payload);
                out.push(flags(will.qos, false, will.retain));
                put_bytes(out, &will.properties);
                put_u32(out, will.delay);
                put_time(out, will.publish_at);
            }
        }
    }

    /// Decodes the body of a record of type `record_type`.
    pub(crate) fn decode_body(record_type: u8, body: &[u8]) -> Result<Record, DecodeError> {
        use record_type::*;
        let mut reader = Reader { rest: body };
        let record = match record_type {
            RETAINED_SET => Record::RetainedSet(RetainedMessage {
                topic: reader.bytes()?,
                payload: reader.bytes()?,
                qos: reader.qos()?,
                properties: reader.bytes()?,
                expires_at: reader.time()?,
            }),
            RETAINED_CLEARED => Record::RetainedCleared {
                topic: reader.bytes()?,
            },
            SESSION_CREATED => Record::SessionCreated {
                client_id: reader.client_id()?,
                expiry_interval: reader.u32()?,
            },
            SESSION_EXPIRY => Record::SessionExpiry {
                client_id: reader.client_id()?,
                expiry_interval: reader.u32()?,
                offline_since: reader.time()?,
            },
            SESSION_ENDED => Record::SessionEnded {
                client_id: reader.client_id()?,
            },
            SUBSCRIPTION_ADDED => Record::SubscriptionAdded {
                client_id: reader.client_id()?,
                filter: reader.bytes()?,
                options: reader.u8()?,
                subscription_id: match reader.presence()? {
                    false => None,
                    true => Some(reader.u32()?),
                },
            },
            SUBSCRIPTION_REMOVED => Record::SubscriptionRemoved {
                client_id: reader.client_id()?,
                filter: reader.bytes()?,
            },
            MESSAGE_QUEUED => {
                let client_id = reader.client_id()?;
                let message_id = reader.u64()?;
                let packet_id = PacketId::new(reader.u16()?);
                let (qos, dup, retain) = reader.flags()?;
                Record::MessageQueued(QueuedMessage {
                    client_id,
                    message_id,
                    packet_id,
                    qos,
                    dup,
                    retain,
                    topic: reader.bytes()?,
                    payload: reader.bytes()?,
                    properties: reader.bytes()?,
                    expires_at: reader.time()?,
                })
            }
            MESSAGE_SENT => Record::MessageSent {
                client_id: reader.client_id()?,
                message_id: reader.u64()?,
                packet_id: reader.packet_id()?,
            },
            MESSAGE_DROPPED => Record::MessageDropped {
                client_id: reader.client_id()?,
                message_id: reader.u64()?,
            },
            MESSAGE_ACKNOWLEDGED => Record::MessageAcknowledged {
                client_id: reader.client_id()?,
                packet_id: reader.packet_id()?,
                ack: match reader.u8()? {
                    0 => Acknowledgement::Puback,
                    1 => Acknowledgement::Pubrec,
                    2 => Acknowledgement::Pubcomp,
                    other => return Err(DecodeError::InvalidAcknowledgement(other)),
                },
            },
            QOS2_RECEIVED => Record::Qos2Received {
                client_id: reader.client_id()?,
                packet_id: reader.packet_id()?,
            },
            QOS2_RELEASED => Record::Qos2Released {
                client_id: reader.client_id()?,
                packet_id: reader.packet_id()?,
            },
            WILL_STORED => {
                let client_id = reader.client_id()?;
                let topic = reader.bytes()?;
                let payload = reader.bytes()?;
                let (qos, dup, retain) = reader.flags()?;
                if dup {
                    return Err(DecodeError::InvalidFlags(FLAG_DUP));
                }
                Record::WillStored(StoredWill {
                    client_id,
                    topic,
                    payload,
                    qos,
                    retain,
                    properties: reader.bytes()?,
                    delay: reader.u32()?,
                    publish_at: reader.time()?,
                })
            }
            WILL_CLEARED => Record::WillCleared {
                client_id: reader.client_id()?,
            },
            other => return Err(DecodeError::UnknownType(other)),
        };
        reader.finish()?;
        Ok(record)
    }
}

fn flags(qos: QoS, dup: bool, retain: bool) -> u8 {
    let mut flags = qos as u8;
    if dup {
        flags |= FLAG_DUP;
    }
    if retain {
        flags |= FLAG_RETAIN;
    }
    flags
}

fn put_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// A byte string: `u32` length, then the bytes. Lengths above `u32::MAX` cannot occur: a
/// frame is refused long before (see `frame::MAX_FRAME_LEN`), so the length is clamped only
/// to keep this function total.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    put_u32(out, len);
    out.extend_from_slice(bytes);
}

/// An optional wall-clock time: presence byte, then milliseconds since the Unix epoch (a time
/// before the epoch is written as the epoch).
fn put_time(out: &mut Vec<u8>, time: Option<SystemTime>) {
    match time {
        None => out.push(0),
        Some(time) => {
            out.push(1);
            let millis = time.duration_since(UNIX_EPOCH).map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
            put_u64(out, millis);
        }
    }
}

/// Reads fields from a record body; every read checks the remaining length.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < len {
            return Err(DecodeError::Truncated);
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_le_bytes)
    }

    fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let len = usize::try_from(self.u32()?).map_err(|_| DecodeError::Truncated)?;
        self.take(len).map(Bytes::copy_from_slice)
    }

    fn client_id(&mut self) -> Result<Arc<str>, DecodeError> {
        let len = usize::try_from(self.u32()?).map_err(|_| DecodeError::Truncated)?;
        let raw = self.take(len)?;
        std::str::from_utf8(raw)
            .map(Arc::from)
            .map_err(|_| DecodeError::InvalidUtf8)
    }

    fn qos(&mut self) -> Result<QoS, DecodeError> {
        let value = self.u8()?;
        QoS::from_u8(value).ok_or(DecodeError::InvalidQos(value))
    }

    fn packet_id(&mut self) -> Result<PacketId, DecodeError> {
        PacketId::new(self.u16()?).ok_or(DecodeError::ZeroPacketId)
    }

    fn presence(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(DecodeError::InvalidPresence(other)),
        }
    }

    /// The flags byte of a queued message or will: (QoS, DUP, RETAIN).
    fn flags(&mut self) -> Result<(QoS, bool, bool), DecodeError> {
        let value = self.u8()?;
        if value & !(FLAG_QOS_MASK | FLAG_DUP | FLAG_RETAIN) != 0 {
            return Err(DecodeError::InvalidFlags(value));
        }
        let qos = QoS::from_u8(value & FLAG_QOS_MASK)
            .ok_or(DecodeError::InvalidQos(value & FLAG_QOS_MASK))?;
        Ok((qos, value & FLAG_DUP != 0, value & FLAG_RETAIN != 0))
    }

    fn time(&mut self) -> Result<Option<SystemTime>, DecodeError> {
        if !self.presence()? {
            return Ok(None);
        }
        let millis = self.u64()?;
        UNIX_EPOCH
            .checked_add(Duration::from_millis(millis))
            .map(Some)
            .ok_or(DecodeError::InvalidTime)
    }

    fn finish(self) -> Result<(), DecodeError> {
        match self.rest.len() {
            0 => Ok(()),
            trailing => Err(DecodeError::TrailingBytes(trailing)),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn id(value: u16) -> PacketId {
        PacketId::new(value).unwrap_or(PacketId::MIN)
    }

    fn at(millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(millis)
    }

    /// One record of every kind, with optional fields both set and unset.
    pub(crate) fn every_kind() -> Vec<Record> {
        let client: Arc<str> = Arc::from("client-é");
        vec![
            Record::RetainedSet(RetainedMessage {
                topic: Bytes::from_static(b"sensors/1/temp"),
                payload: Bytes::from_static(b"21.5"),
                qos: QoS::AtLeastOnce,
                properties: Bytes::from_static(&[0x01, 0x01]),
                expires_at: Some(at(1_700_000_000_123)),
            }),
            Record::RetainedSet(RetainedMessage {
                topic: Bytes::from_static(b"a"),
                payload: Bytes::from(vec![0u8; 1000]),
                qos: QoS::AtMostOnce,
                properties: Bytes::new(),
                expires_at: None,
            }),
            Record::RetainedCleared {
                topic: Bytes::from_static(b"sensors/1/temp"),
            },
            Record::SessionCreated {
                client_id: client.clone(),
                expiry_interval: u32::MAX,
            },
            Record::SessionExpiry {
                client_id: client.clone(),
                expiry_interval: 3600,
                offline_since: Some(at(1_700_000_001_000)),
            },
            Record::SessionExpiry {
                client_id: client.clone(),
                expiry_interval: 60,
                offline_since: None,
            },
            Record::SessionEnded {
                client_id: client.clone(),
            },
            Record::SubscriptionAdded {
                client_id: client.clone(),
                filter: Bytes::from_static(b"$share/g/sensors/+/temp"),
                options: 0b0010_1110,
                subscription_id: Some(268_435_455),
            },
            Record::SubscriptionAdded {
                client_id: client.clone(),
                filter: Bytes::from_static(b"#"),
                options: 1,
                subscription_id: None,
            },
            Record::SubscriptionRemoved {
                client_id: client.clone(),
                filter: Bytes::from_static(b"#"),
            },
            Record::MessageQueued(QueuedMessage {
                client_id: client.clone(),
                message_id: 42,
                packet_id: None,
                qos: QoS::ExactlyOnce,
                dup: false,
                retain: true,
                topic: Bytes::from_static(b"t/q"),
                payload: Bytes::from_static(b"payload"),
                properties: Bytes::from_static(&[0x0B, 0x05]),
                expires_at: Some(at(1_800_000_000_000)),
            }),
            Record::MessageQueued(QueuedMessage {
                client_id: client.clone(),
                message_id: u64::MAX,
                packet_id: Some(id(65535)),
                qos: QoS::AtLeastOnce,
                dup: true,
                retain: false,
                topic: Bytes::from_static(b"t/q"),
                payload: Bytes::new(),
                properties: Bytes::new(),
                expires_at: None,
            }),
            Record::MessageSent {
                client_id: client.clone(),
                message_id: 42,
                packet_id: id(7),
            },
            Record::MessageDropped {
                client_id: client.clone(),
                message_id: 43,
            },
            Record::MessageAcknowledged {
                client_id: client.clone(),
                packet_id: id(7),
                ack: Acknowledgement::Puback,
            },
            Record::MessageAcknowledged {
                client_id: client.clone(),
                packet_id: id(8),
                ack: Acknowledgement::Pubrec,
            },
            Record::MessageAcknowledged {
                client_id: client.clone(),
                packet_id: id(8),
                ack: Acknowledgement::Pubcomp,
            },
            Record::Qos2Received {
                client_id: client.clone(),
                packet_id: id(1),
            },
            Record::Qos2Released {
                client_id: client.clone(),
                packet_id: id(1),
            },
            Record::WillStored(StoredWill {
                client_id: client.clone(),
                topic: Bytes::from_static(b"clients/gone"),
                payload: Bytes::from_static(b"bye"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: Bytes::from_static(&[0x18, 0, 0, 0, 5]),
                delay: 5,
                publish_at: Some(at(1_700_000_005_000)),
            }),
            Record::WillStored(StoredWill {
                client_id: Arc::from(""),
                topic: Bytes::from_static(b"w"),
                payload: Bytes::new(),
                qos: QoS::AtMostOnce,
                retain: false,
                properties: Bytes::new(),
                delay: 0,
                publish_at: None,
            }),
            Record::WillCleared { client_id: client },
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        let records = every_kind();
        let mut types: Vec<u8> = records.iter().map(Record::type_byte).collect();
        types.dedup();
        assert_eq!(types.len(), 15, "the sample covers every record type");
        for record in records {
            let mut body = Vec::new();
            record.encode_body(&mut body);
            assert_eq!(
                Record::decode_body(record.type_byte(), &body),
                Ok(record.clone())
            );
        }
    }

    #[test]
    fn every_strict_prefix_of_a_body_is_refused() {
        for record in every_kind() {
            let mut body = Vec::new();
            record.encode_body(&mut body);
            for len in 0..body.len() {
                assert!(
                    Record::decode_body(record.type_byte(), &body[..len]).is_err(),
                    "{record:?} cut at {len}"
                );
            }
            body.push(0);
            assert_eq!(
                Record::decode_body(record.type_byte(), &body),
                Err(DecodeError::TrailingBytes(1))
            );
        }
    }

    #[test]
    fn random_and_mutated_bodies_never_panic() {
        let mut rng = crate::persist::testing::Rng(0x0123_4567_89AB_CDEF);
        for _ in 0..20_000 {
            let record_type = rng.below(20) as u8;
            let len = rng.below(64) as usize;
            let body: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let _ = Record::decode_body(record_type, &body);
        }
        for record in every_kind() {
            let mut body = Vec::new();
            record.encode_body(&mut body);
            for _ in 0..500 {
                let mut mutated = body.clone();
                let at = rng.below(mutated.len() as u64) as usize;
                mutated[at] = rng.next() as u8;
                let _ = Record::decode_body(record.type_byte(), &mutated);
            }
        }
    }

    #[test]
    fn invalid_fields_are_refused() {
        assert_eq!(
            Record::decode_body(0, &[]),
            Err(DecodeError::UnknownType(0))
        );
        assert_eq!(
            Record::decode_body(200, &[]),
            Err(DecodeError::UnknownType(200))
        );
        let sent = [1, 0, 0, 0, b'c', 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            Record::decode_body(record_type::MESSAGE_SENT, &sent),
            Err(DecodeError::ZeroPacketId)
        );
        let bad_utf8 = [1, 0, 0, 0, 0xFF];
        assert_eq!(
            Record::decode_body(record_type::SESSION_ENDED, &bad_utf8),
            Err(DecodeError::InvalidUtf8)
        );
        let huge_length = [0xFF, 0xFF, 0xFF, 0xFF, b'a'];
        assert_eq!(
            Record::decode_body(record_type::RETAINED_CLEARED, &huge_length),
            Err(DecodeError::Truncated)
        );
    }
}
