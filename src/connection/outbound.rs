//! The bounded queue of packets waiting to be written to one client.
//!
//! Fan-out appends already-encoded frames here (a PUBLISH's header is encoded once per wire
//! layout and its payload is the publisher's `Bytes`), and the connection's task drains
//! everything gathered since its last write into a single buffer and a single write. Nothing here grows without bound: QoS 0 publishes past the limits are dropped and
//! counted, and a client that stops reading while it keeps sending is disconnected. An MQTT 5
//! client's topic aliases are decided here, as frames are written, in wire order
//! (`OutgoingAliases`).
//!
//! Each frame keeps the tick of its core's coarse clock at which it was queued (how far behind
//! a slow client is), and one timed publish at a time keeps when its message entered the core
//! (the publish-to-delivery latency, taken when the batch holding it is written).

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};

use super::outgoing_alias::OutgoingAliases;
use crate::pacing::{Pacing, QueuePace};
use crate::protocol::{EncodedPublish, PacketId, ReasonCode};
use crate::queue_budget::QueueBudget;

/// Largest batch the writer gathers into one write.
pub const MAX_WRITE_BATCH: usize = 64 * 1024;

/// Most frames an emptied queue's storage may hold for it to be given back: a connection that
/// only ever had a few packets at a time (an idle one: its CONNACK, a PINGRESP) keeps none,
/// while a busy one keeps its larger storage instead of growing it again for every batch.
const RELEASED_CAPACITY: usize = 16;

/// Frames beyond the droppable limit that acknowledgements and windowed publishes may add
/// before the client is judged not to be reading (65,535 packet ids plus slack).
const RELIABLE_FRAME_SLACK: usize = 65_535 + 1_024;

/// One packet waiting to be written.
#[derive(Debug)]
pub enum Frame {
    /// A PUBLISH shared with every subscriber of the same wire layout; the packet id and DUP
    /// flag are written into the copy that goes to the socket.
    Publish {
        /// The encoding shared by every subscriber with this layout.
        packet: EncodedPublish,
        /// This subscriber's packet id (QoS 1 and 2).
        packet_id: Option<PacketId>,
        /// Whether this is a re-delivery.
        dup: bool,
    },
    /// A packet of at most five bytes (acknowledgements with or without a reason code,
    /// PINGRESP), stored inline.
    Small {
        /// The encoded bytes.
        bytes: [u8; 5],
        /// How many of them are used.
        len: u8,
    },
    /// Any other encoded packet (SUBACK).
    Encoded(Bytes),
}

impl Frame {
    /// An acknowledgement of the form `type+flags, 2, id` (PUBACK, PUBREC, PUBREL, PUBCOMP,
    /// UNSUBACK).
    pub fn ack(first_byte: u8, id: PacketId) -> Self {
        let [hi, lo] = id.get().to_be_bytes();
        Frame::Small {
            bytes: [first_byte, 2, hi, lo, 0],
            len: 4,
        }
    }

    /// An MQTT 5 PUBACK, PUBREC, PUBREL or PUBCOMP with a reason code and no properties: the
    /// short form of [`Frame::ack`] for Success, else `type+flags, 3, id, reason`.
    pub fn ack_with_reason(first_byte: u8, id: PacketId, reason: ReasonCode) -> Self {
        if reason == ReasonCode::Success {
            return Self::ack(first_byte, id);
        }
        let [hi, lo] = id.get().to_be_bytes();
        Frame::Small {
            bytes: [first_byte, 3, hi, lo, reason.byte()],
            len: 5,
        }
    }

    /// PINGRESP.
    pub fn ping_response() -> Self {
        Frame::Small {
            bytes: [0xD0, 0, 0, 0, 0],
            len: 2,
        }
    }

    /// Encoded size in bytes (of a PUBLISH as encoded: a topic alias changes it by a few bytes
    /// when it is written).
    pub fn len(&self) -> usize {
        match self {
            Frame::Publish { packet, .. } => packet.len(),
            Frame::Small { len, .. } => usize::from(*len),
            Frame::Encoded(bytes) => bytes.len(),
        }
    }

    /// Whether the frame is empty (never, for a valid packet).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the frame to `out`, a PUBLISH with the topic alias `aliases` choose for it.
    fn write_to(&self, out: &mut BytesMut, aliases: &mut OutgoingAliases) {
        match self {
            Frame::Publish {
                packet,
                packet_id,
                dup,
            } => match aliases.alias_for(packet, *dup) {
                Some(alias) => packet.write_aliased_to(out, *packet_id, *dup, alias),
                None => packet.write_to(out, *packet_id, *dup),
            },
            Frame::Small { bytes, len } => out.put_slice(&bytes[..usize::from(*len)]),
            Frame::Encoded(bytes) => out.put_slice(bytes),
        }
    }
}

/// Why a frame could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// A droppable (QoS 0) frame hit `max_queued_messages` or `max_queued_bytes`.
    #[error("outgoing queue full")]
    Full,
    /// A droppable (QoS 0) frame found the core's `max_queued_bytes_total` spent while this
    /// queue already held something.
    #[error("the core's queues hold max_queued_bytes_total")]
    OverBudget,
    /// The client keeps sending but does not read what it is sent.
    #[error("client is not reading its socket")]
    NotReading,
}

/// When a frame is queued: the core's coarse clock and, for a publish whose fan-out is timed,
/// when its message entered the core.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueuedAt {
    /// The core's coarse clock (`Shard::clock` ticks).
    pub tick: u32,
    /// When the message entered the core, for a timed publish.
    pub received: Option<Instant>,
}

impl QueuedAt {
    /// Queued at `tick`, untimed.
    pub fn tick(tick: u32) -> Self {
        QueuedAt {
            tick,
            received: None,
        }
    }
}

/// What one [`OutboundQueue::drain_into`] moved into the write buffer, for the core's
/// counters once it is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Packets of any type.
    pub packets: u64,
    /// PUBLISH packets among them.
    pub publishes: u64,
    /// Payload bytes of those PUBLISH packets.
    pub publish_payload_bytes: u64,
    /// When the message of the timed publish among them entered the core, if there is one.
    pub timed: Option<Instant>,
}

/// A frame with the tick it was queued at.
#[derive(Debug)]
struct Queued {
    frame: Frame,
    tick: u32,
    /// Whether it is the timed publish whose instant is [`OutboundQueue::timed`].
    timed: bool,
    /// Whether it was queued as droppable (a QoS 0 publish).
    droppable: bool,
}

/// Packets waiting for one client's socket.
#[derive(Debug)]
pub struct OutboundQueue {
    frames: VecDeque<Queued>,
    bytes: usize,
    /// Droppable frames it holds at most (`u32`, as `droppable`: every connection has a
    /// queue, and the two fit in one word).
    max_messages: u32,
    max_bytes: usize,
    /// Droppable frames waiting (QoS 0 publishes): what pacing watches.
    droppable: u32,
    /// The topic aliases the client's PUBLISHes are written with.
    aliases: OutgoingAliases,
    /// When the message of the timed publish in the queue entered the core; one at a time,
    /// so that the queue stays small whatever the fan-out rate.
    timed: Option<Instant>,
    /// The core's account of queued bytes, charged with `bytes`.
    budget: QueueBudget,
    /// Whether the queue holds back its core's readers (past half its limits while its client
    /// keeps up).
    pace: QueuePace,
    /// The session's QoS 1/2 queue behind its window is past half its limits (see
    /// [`OutboundQueue::pace_flow`]).
    flow_past_mark: bool,
}

impl OutboundQueue {
    /// An empty queue holding at most `max_messages` droppable frames and `max_bytes` bytes
    /// (0 = no byte limit), whose PUBLISHes are written without topic aliases.
    pub fn new(max_messages: usize, max_bytes: usize) -> Self {
        Self {
            frames: VecDeque::new(),
            bytes: 0,
            max_messages: u32::try_from(max_messages).unwrap_or(u32::MAX),
            max_bytes,
            droppable: 0,
            aliases: OutgoingAliases::default(),
            timed: None,
            budget: QueueBudget::unbounded(),
            pace: QueuePace::default(),
            flow_past_mark: false,
        }
    }

    /// This queue, charging what it holds to the core's `budget`.
    #[must_use]
    pub fn with_budget(mut self, budget: QueueBudget) -> Self {
        self.budget = budget;
        self
    }

    /// This queue, holding back its core's readers through `pacing` while it is past half
    /// its limits and its client keeps up.
    #[must_use]
    pub fn with_pacing(mut self, pacing: Pacing) -> Self {
        self.pace = QueuePace::new(pacing);
        self
    }

    /// This queue, writing its PUBLISHes with the topic aliases `aliases` choose (an MQTT 5
    /// client that accepts some).
    #[must_use]
    pub fn with_aliases(mut self, aliases: OutgoingAliases) -> Self {
        self.aliases = aliases;
        self
    }

    /// Queues a frame that may be dropped when the queue is full (a QoS 0 publish), as queued
    /// at tick 0 and untimed. Returns `Err(Full)` and counts the drop when it is full.
    pub fn push_droppable(&mut self, frame: Frame) -> Result<(), QueueError> {
        self.push_droppable_at(frame, QueuedAt::default())
    }

    /// Queues a frame that may be dropped when the queue is full (a QoS 0 publish). Returns
    /// `Err(Full)` when it is, `Err(OverBudget)` when the core's queues are (see
    /// [`QueueBudget::admits`]), and counts the drop.
    pub fn push_droppable_at(&mut self, frame: Frame, at: QueuedAt) -> Result<(), QueueError> {
        let over_bytes = self.max_bytes != 0 && self.bytes + frame.len() > self.max_bytes;
        if self.frames.len() >= self.max_messages as usize || over_bytes {
            return Err(QueueError::Full);
        }
        if !self.budget.admits(self.bytes, frame.len()) {
            return Err(QueueError::OverBudget);
        }
        self.push_unchecked(frame, at, true);
        Ok(())
    }

    /// Queues a frame the protocol requires (an acknowledgement, a windowed QoS 1/2 publish).
    /// Fails only when the client has stopped reading altogether.
    pub fn push(&mut self, frame: Frame, at: QueuedAt) -> Result<(), QueueError> {
        if self.frames.len() >= self.max_messages as usize + RELIABLE_FRAME_SLACK {
            return Err(QueueError::NotReading);
        }
        self.push_unchecked(frame, at, false);
        Ok(())
    }

    /// Queues the last frame of a connection (its DISCONNECT) whatever the limits: a closing
    /// connection queues nothing after it.
    pub fn push_final(&mut self, frame: Frame, at: QueuedAt) {
        self.push_unchecked(frame, at, false);
    }

    fn push_unchecked(&mut self, frame: Frame, at: QueuedAt, droppable: bool) {
        let timed = at.received.is_some() && self.timed.is_none();
        if timed {
            self.timed = at.received;
        }
        self.bytes += frame.len();
        self.budget.charge(frame.len());
        self.droppable += u32::from(droppable);
        self.frames.push_back(Queued {
            frame,
            tick: at.tick,
            timed,
            droppable,
        });
        self.pace.update(self.past_mark());
    }

    /// Whether the queue holds half its limits or more, in droppable frames or in bytes: one
    /// turn of the core's other tasks more and its client would lose messages.
    /// Acknowledgements and windowed publishes do not count: a client that pipelines requests
    /// must not hold the core back with its own answers. The session's QoS 1/2 queue behind
    /// its window counts by its own limits (see [`OutboundQueue::pace_flow`]).
    fn past_mark(&self) -> bool {
        self.flow_past_mark
            || self.droppable >= (self.max_messages / 2).max(1)
            || (self.max_bytes != 0 && self.bytes >= self.max_bytes / 2)
    }

    /// Notes whether the client's session holds half its QoS 1/2 queue limits or more behind
    /// its window (`OutgoingFlow::past_mark`), after the session's flow changed: the queue
    /// then holds back the core's readers as it does for its own QoS 0 frames, and lets them
    /// go once the client's acknowledgements have drained the session's queue below the mark.
    ///
    /// Returns whether the session's queue began to hold the readers back with this call: its
    /// connection's task must then be woken, for a task waiting among the held readers is no
    /// longer one of them (see [`OutboundQueue::is_holding_for_acks`]).
    pub fn pace_flow(&mut self, past_mark: bool) -> bool {
        let before = self.is_holding_for_acks();
        self.flow_past_mark = past_mark;
        self.pace.update(self.past_mark());
        !before && self.is_holding_for_acks()
    }

    /// Whether the session's QoS 1/2 queue is what holds back the core's readers now. Its
    /// own connection is then never held: the acknowledgements it reads are what let that
    /// queue catch up (QoS 0 frames drain by being written, which a held reader still does).
    pub fn is_holding_for_acks(&self) -> bool {
        self.flow_past_mark && self.pace.is_counted()
    }

    /// Records that the queue was written out whole (`true`) or that the client's socket or
    /// transport refused part of a write (`false`): until it is written out whole again, the
    /// client is not keeping up and its queue holds no one back.
    pub fn record_write(&mut self, whole: bool) {
        self.pace.written(whole);
    }

    /// Stops the queue from holding back its core's readers (its connection is closing).
    pub fn stop_pacing(&mut self) {
        self.pace.stop();
    }

    /// Moves queued frames into `out` until it holds about `MAX_WRITE_BATCH` bytes; says what
    /// it moved. An emptied queue that never held many frames gives its storage back (see
    /// [`RELEASED_CAPACITY`]).
    pub fn drain_into(&mut self, out: &mut BytesMut) -> Drained {
        let mut drained = Drained::default();
        while out.len() < MAX_WRITE_BATCH {
            let Some(Queued {
                frame,
                timed,
                droppable,
                ..
            }) = self.frames.pop_front()
            else {
                break;
            };
            self.droppable -= u32::from(droppable);
            self.bytes -= frame.len();
            self.budget.release(frame.len());
            drained.packets += 1;
            if let Frame::Publish { packet, .. } = &frame {
                drained.publishes += 1;
                drained.publish_payload_bytes += packet.payload().len() as u64;
            }
            if timed {
                drained.timed = self.timed.take();
            }
            out.reserve(frame.len());
            frame.write_to(out, &mut self.aliases);
        }
        let capacity = self.frames.capacity();
        if self.frames.is_empty() && capacity != 0 && capacity <= RELEASED_CAPACITY {
            self.frames = VecDeque::new();
        }
        self.pace.update(self.past_mark());
        drained
    }

    /// The tick at which the oldest frame still waiting was queued.
    pub fn oldest_tick(&self) -> Option<u32> {
        self.frames.front().map(|queued| queued.tick)
    }

    /// Bytes waiting.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.frames.len()
    }
}

impl Drop for OutboundQueue {
    /// A closed connection's frames leave the core's account with it.
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::QoS;
    use crate::topic::TopicName;

    fn publish(payload: &'static [u8]) -> Frame {
        let topic = TopicName::try_from("t").expect("valid topic");
        Frame::Publish {
            packet: EncodedPublish::new(
                &topic,
                &Bytes::from_static(payload),
                QoS::AtMostOnce,
                false,
            ),
            packet_id: None,
            dup: false,
        }
    }

    #[test]
    fn droppable_frames_stop_at_the_message_limit() {
        let mut queue = OutboundQueue::new(2, 0);
        assert!(queue.push_droppable(publish(b"a")).is_ok());
        assert!(queue.push_droppable(publish(b"b")).is_ok());
        assert_eq!(queue.push_droppable(publish(b"c")), Err(QueueError::Full));
        assert!(
            queue
                .push(Frame::ping_response(), QueuedAt::tick(0))
                .is_ok(),
            "acks still pass"
        );
        assert_eq!(queue.len(), 3);
    }

    #[test]
    fn only_qos0_publishes_past_half_the_limit_hold_the_core_back() {
        use crate::pacing::Pacing;
        let pacing = Pacing::new();
        let mut queue = OutboundQueue::new(8, 0).with_pacing(pacing.clone());
        for _ in 0..4 {
            queue
                .push(Frame::ping_response(), QueuedAt::tick(0))
                .expect("an answer is queued");
        }
        assert!(
            !pacing.is_holding(),
            "answers to the client's requests do not count"
        );
        for payload in [b"a", b"b", b"c"] {
            queue.push_droppable(publish(payload)).expect("room");
        }
        assert!(!pacing.is_holding());
        queue.push_droppable(publish(b"d")).expect("room");
        assert!(pacing.is_holding(), "half of max_queued_messages");
        queue.drain_into(&mut BytesMut::new());
        assert!(!pacing.is_holding(), "written");
        queue.record_write(false);
        for payload in [b"e", b"f", b"g", b"h"] {
            queue.push_droppable(publish(payload)).expect("room");
        }
        assert!(
            !pacing.is_holding(),
            "a client that does not keep up holds no one"
        );
    }

    #[test]
    fn a_session_queue_past_its_mark_holds_the_core_back_until_it_drains() {
        use crate::pacing::Pacing;
        let pacing = Pacing::new();
        let mut queue = OutboundQueue::new(8, 0).with_pacing(pacing.clone());
        assert!(queue.pace_flow(true), "began to hold");
        assert!(pacing.is_holding());
        assert!(queue.is_holding_for_acks(), "its own connection is told");
        assert!(!queue.pace_flow(true), "already held");
        queue.pace_flow(false);
        assert!(!pacing.is_holding(), "drained below the mark");
        queue.record_write(false);
        queue.pace_flow(true);
        assert!(
            !pacing.is_holding(),
            "a client whose socket refuses a write holds no one"
        );
        queue.stop_pacing();
        queue.record_write(true);
        assert!(!queue.pace_flow(true));
        assert!(!pacing.is_holding(), "nor does a closing one");
    }

    #[test]
    fn a_queue_behind_for_its_qos0_frames_does_not_exempt_its_reader() {
        use crate::pacing::Pacing;
        let pacing = Pacing::new();
        let mut queue = OutboundQueue::new(2, 0).with_pacing(pacing.clone());
        queue.push_droppable(publish(b"a")).expect("room");
        assert!(pacing.is_holding());
        assert!(
            !queue.is_holding_for_acks(),
            "QoS 0 frames drain by being written, not by the client's reads"
        );
    }

    #[test]
    fn droppable_frames_stop_at_the_byte_limit() {
        // A QoS 0 PUBLISH of topic "t" and a 1-byte payload is 2 + 3 + 1 = 6 bytes.
        let mut queue = OutboundQueue::new(100, 12);
        assert!(queue.push_droppable(publish(b"a")).is_ok());
        assert!(queue.push_droppable(publish(b"b")).is_ok());
        assert_eq!(queue.push_droppable(publish(b"c")), Err(QueueError::Full));
    }

    #[test]
    fn the_core_budget_is_charged_released_and_refuses_long_queues() {
        use crate::queue_budget::{QueueBudget, QUEUE_FLOOR};
        // 1 KiB payloads: a 1,030-byte frame (2 + 3 + 1,024 bytes of payload, plus the
        // remaining length's second byte).
        static PAYLOAD: [u8; 1024] = [7; 1024];
        let frame_len = publish(&PAYLOAD).len();
        let budget = QueueBudget::new(QUEUE_FLOOR + 4 * frame_len);
        let mut slow = OutboundQueue::new(1_000, 0).with_budget(budget.clone());
        let mut pushed = 0;
        while slow.push_droppable(publish(&PAYLOAD)).is_ok() {
            pushed += 1;
        }
        assert_eq!(slow.bytes(), pushed * frame_len);
        assert_eq!(budget.used(), slow.bytes(), "every queued byte is charged");
        assert!(slow.bytes() >= QUEUE_FLOOR, "refused only past the floor");
        assert_eq!(
            slow.push_droppable(publish(&PAYLOAD)),
            Err(QueueError::OverBudget)
        );
        assert!(
            slow.push(Frame::ping_response(), QueuedAt::tick(0)).is_ok(),
            "frames the protocol requires still pass"
        );

        // Another client of the core with a short queue is still served.
        let mut quick = OutboundQueue::new(1_000, 0).with_budget(budget.clone());
        assert!(quick.push_droppable(publish(&PAYLOAD)).is_ok());
        let mut out = BytesMut::new();
        quick.drain_into(&mut out);
        assert_eq!(
            budget.used(),
            slow.bytes(),
            "written frames leave the account"
        );

        drop(slow);
        assert_eq!(
            budget.used(),
            0,
            "a closed connection's frames leave it too"
        );
        drop(quick);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn draining_writes_frames_in_order_into_one_buffer() {
        let mut queue = OutboundQueue::new(10, 0);
        queue.push_droppable(publish(b"x")).expect("room");
        queue
            .push(
                Frame::ack(0x40, PacketId::new(7).expect("non-zero")),
                QueuedAt::tick(0),
            )
            .expect("room");
        queue
            .push(Frame::ping_response(), QueuedAt::tick(0))
            .expect("room");
        let mut out = BytesMut::new();
        let drained = queue.drain_into(&mut out);
        assert_eq!(
            &out[..],
            &[0x30, 4, 0, 1, b't', b'x', 0x40, 2, 0, 7, 0xD0, 0]
        );
        assert!(queue.is_empty());
        assert_eq!(
            drained,
            Drained {
                packets: 3,
                publishes: 1,
                publish_payload_bytes: 1,
                timed: None,
            }
        );
    }

    #[test]
    fn the_oldest_frame_keeps_its_tick_until_written() {
        let mut queue = OutboundQueue::new(10, 0);
        assert_eq!(queue.oldest_tick(), None);
        queue
            .push_droppable_at(publish(b"a"), QueuedAt::tick(5))
            .expect("room");
        queue
            .push_droppable_at(publish(b"bc"), QueuedAt::tick(9))
            .expect("room");
        assert_eq!(queue.oldest_tick(), Some(5));
        assert_eq!(queue.bytes(), 6 + 7);
        let mut out = BytesMut::new();
        queue.drain_into(&mut out);
        assert_eq!(queue.oldest_tick(), None);
        assert_eq!(queue.bytes(), 0);
    }

    #[test]
    fn an_emptied_queue_keeps_no_small_storage() {
        let mut queue = OutboundQueue::new(10, 0);
        queue
            .push(Frame::ping_response(), QueuedAt::tick(0))
            .expect("room");
        assert!(queue.frames.capacity() > 0);
        let mut out = BytesMut::new();
        queue.drain_into(&mut out);
        assert_eq!(queue.frames.capacity(), 0);

        // A queue that held many frames keeps its storage for the next batch.
        for _ in 0..=RELEASED_CAPACITY {
            queue
                .push(Frame::ping_response(), QueuedAt::tick(0))
                .expect("room");
        }
        queue.drain_into(&mut out);
        assert!(queue.is_empty());
        assert!(queue.frames.capacity() > RELEASED_CAPACITY);
        let mut queue = OutboundQueue::new(10, 0);

        // A queue drained only in part keeps what it holds.
        let payload = Bytes::from(vec![0u8; MAX_WRITE_BATCH]);
        let topic = TopicName::try_from("t").expect("valid topic");
        for _ in 0..2 {
            let frame = Frame::Publish {
                packet: EncodedPublish::new(&topic, &payload, QoS::AtMostOnce, false),
                packet_id: None,
                dup: false,
            };
            queue.push(frame, QueuedAt::tick(0)).expect("room");
        }
        let mut out = BytesMut::new();
        queue.drain_into(&mut out);
        assert_eq!(queue.len(), 1);
        assert!(queue.frames.capacity() > 0);
    }

    #[test]
    fn one_timed_publish_at_a_time_reports_its_instant_when_drained() {
        let mut queue = OutboundQueue::new(10, 0);
        let first = Instant::now();
        let second = first + std::time::Duration::from_millis(1);
        let timed = |received| QueuedAt {
            tick: 0,
            received: Some(received),
        };
        queue
            .push_droppable_at(publish(b"a"), timed(first))
            .expect("room");
        queue
            .push_droppable_at(publish(b"b"), timed(second))
            .expect("room");
        let mut out = BytesMut::new();
        assert_eq!(queue.drain_into(&mut out).timed, Some(first));
        queue
            .push_droppable_at(publish(b"c"), timed(second))
            .expect("room");
        assert_eq!(queue.drain_into(&mut out).timed, Some(second));
        assert_eq!(queue.drain_into(&mut out).timed, None);
    }
}
