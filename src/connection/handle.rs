//! The part of a connection that the rest of its shard may touch: its outgoing queue, the
//! wake-up of its task, and the request to close it.

use std::cell::{Cell, OnceCell, RefCell};
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::BytesMut;
use smallvec::SmallVec;

use super::notify::Notify;
use super::outbound::{Drained, Frame, OutboundQueue, QueueError, QueuedAt};
use super::outgoing_alias::OutgoingAliases;
use crate::message::Message;
use crate::metrics::{CoreMetrics, Counter, DropReason, Latency};
use crate::pacing::Pacing;
use crate::protocol::{
    self, DecodeError, Disconnect, EncodedPublish, MqttString, Packet, PacketId, ProtocolVersion,
    ReasonCode,
};
use crate::queue_budget::QueueBudget;
use crate::session::{FlowAction, OutgoingFlow};
use crate::shard::ConnId;

/// Why a connection ended; printed as the `reason=` of the disconnect log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent DISCONNECT.
    ClientDisconnected,
    /// The client sent an MQTT 5 DISCONNECT asking for its will to be published (0x04).
    ClientDisconnectedWithWill,
    /// The socket closed or failed.
    ConnectionLost(String),
    /// Nothing arrived within 1.5 times the keep-alive.
    KeepAliveTimeout,
    /// The client broke the protocol (malformed or out-of-order packet, broken limit): `code`
    /// is the MQTT 5 reason code for it, `why` the details.
    ProtocolError {
        /// The reason code of the DISCONNECT an MQTT 5 client is sent.
        code: ReasonCode,
        /// What the client did, for the log line (and the DISCONNECT's reason string).
        why: String,
    },
    /// Another connection with the same client id took the session.
    TakenOver,
    /// The broker is stopping.
    ShuttingDown,
    /// The client stopped reading while the broker had to send it acknowledgements.
    NotReading,
}

impl CloseReason {
    /// A protocol error reported with `code`.
    pub fn protocol_error(code: ReasonCode, why: impl Into<String>) -> Self {
        CloseReason::ProtocolError {
            code,
            why: why.into(),
        }
    }

    /// The reason code of the DISCONNECT the server sends an MQTT 5 client when the
    /// connection ends this way; `None` when the client left or the connection is gone.
    pub fn disconnect_code(&self) -> Option<ReasonCode> {
        match self {
            CloseReason::ClientDisconnected
            | CloseReason::ClientDisconnectedWithWill
            | CloseReason::ConnectionLost(_) => None,
            CloseReason::KeepAliveTimeout => Some(ReasonCode::KeepAliveTimeout),
            CloseReason::ProtocolError { code, .. } => Some(*code),
            CloseReason::TakenOver => Some(ReasonCode::SessionTakenOver),
            CloseReason::ShuttingDown => Some(ReasonCode::ServerShuttingDown),
            CloseReason::NotReading => Some(ReasonCode::QuotaExceeded),
        }
    }

    /// Whether the will message must be published (every end but DISCONNECT and shutdown).
    pub fn publishes_will(&self) -> bool {
        !matches!(
            self,
            CloseReason::ClientDisconnected | CloseReason::ShuttingDown
        )
    }
}

impl From<DecodeError> for CloseReason {
    /// A packet that failed to decode ends the connection with the error's reason code.
    fn from(error: DecodeError) -> Self {
        CloseReason::protocol_error(error.reason_code(), error.to_string())
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::ClientDisconnected => f.write_str("client disconnected"),
            CloseReason::ClientDisconnectedWithWill => {
                f.write_str("client disconnected with will message")
            }
            CloseReason::ConnectionLost(why) => write!(f, "connection lost: {why}"),
            CloseReason::KeepAliveTimeout => f.write_str("keep-alive timeout"),
            CloseReason::ProtocolError { why, .. } => write!(f, "protocol error: {why}"),
            CloseReason::TakenOver => f.write_str("session taken over"),
            CloseReason::ShuttingDown => f.write_str("server shutting down"),
            CloseReason::NotReading => f.write_str("client is not reading its socket"),
        }
    }
}

/// A connection's keep-alive, in ticks of its shard's clock (see `Shard::clock`).
#[derive(Clone, Copy, Debug)]
pub struct KeepAlive {
    /// Ticks of silence allowed (0 = none).
    pub ticks: u32,
    /// The tick the connection starts in.
    pub now: u32,
}

/// What [`ConnHandle::send_flow_actions`] did with a batch of flow actions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowSent {
    /// PUBLISH packets queued for the client.
    pub publishes: u64,
    /// Messages dropped because they are larger than the client accepts.
    pub dropped: u64,
}

/// Why a flow's PUBLISH was not sent.
enum Unsendable {
    /// The packet (of this length) exceeds the client's maximum packet size.
    TooLarge(PacketId, usize),
    /// The message expired before it left.
    Expired(PacketId),
}

/// A live connection as seen by the shard's fan-out and session code.
pub struct ConnHandle {
    /// The connection's broker-wide id.
    pub id: ConnId,
    /// The client id it connected with.
    pub client_id: Arc<str>,
    /// Its protocol version (decides the wire layout of what it is sent).
    pub protocol: ProtocolVersion,
    /// Its core's metrics: what it sends, drops and how late, and the coarse clock its
    /// queued frames are stamped with.
    core: Rc<CoreMetrics>,
    outbound: RefCell<OutboundQueue>,
    /// Wakes the connection's task when its queue stops being empty or it is asked to close
    /// (one task serves both, so one waker is enough).
    wake: Notify,
    /// Why the connection is closing, once it is: set once, by the first request (boxed: one
    /// pointer while it is not).
    close_reason: OnceCell<Box<CloseReason>>,
    /// Whether the client is losing messages: set (and logged) at its first drop, cleared
    /// (and logged) by its core once a whole watch period passed without one.
    lagging: Cell<bool>,
    /// Messages of any QoS dropped for this client: QoS 0 ones its queue refused, QoS 1/2
    /// ones its full session queue refused, and ones larger than its maximum packet size.
    dropped: Cell<u64>,
    /// Shard clock ticks of silence after which the client is gone (0 = no keep-alive).
    keep_alive_ticks: u32,
    /// The largest packet the client accepts (MQTT 5's Maximum Packet Size; `u32::MAX` when
    /// it set none).
    max_packet_size: u32,
    /// The shard clock tick in which the client was last heard from.
    last_heard: Cell<u32>,
    /// Where the connection stands with parking (see `transport::parked`).
    rest: Cell<Rest>,
    /// The client's streak of full reads (see [`ConnHandle::is_busy`]): consecutive shard
    /// clock ticks, up to the last one heard in, that had a full read (the low seven bits),
    /// and whether the last tick heard in had one (the high bit; one byte for both, as the
    /// handle is one malloc step below the next size).
    full_reads: Cell<u8>,
}

/// Ticks in a row whose reads of a client must include a full one, after a first such tick,
/// for its connection to leave the parking lot: three ticks of 100 ms, so that a burst does
/// not count, while a publisher that keeps its socket full does within half a second.
pub const BUSY_TICKS: u8 = 3;

/// The bit of [`ConnHandle::full_reads`] saying the last tick heard in had a full read.
const FULL_READ_THIS_TICK: u8 = 0x80;

/// Where a connection stands with parking: its socket waits in its core's parking lot
/// unless its client is busy (see `transport::parked`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rest {
    /// The socket is glommio's.
    Awake,
    /// The shard asked the connection's task to park it (see [`ConnHandle::ask_to_park`]).
    Asked,
    /// The socket waits in the parking lot.
    Parked,
    /// The connection is not parked and never asked again: a TLS or WebSocket one, or one
    /// whose park failed for want of a descriptor.
    Unparkable,
}

impl ConnHandle {
    /// A handle whose queue holds at most `max_messages` QoS 0 publishes and `max_bytes`, for
    /// a client that accepts packets of at most `max_packet_size` bytes and whose PUBLISHes
    /// may use `topic_alias_max` topic aliases (0 = none; see `OutgoingAliases`), recording
    /// into its core's metrics `core`.
    #[allow(clippy::too_many_arguments)] // the terms of one connection, all distinct
    pub fn new(
        id: ConnId,
        client_id: Arc<str>,
        protocol: ProtocolVersion,
        max_messages: usize,
        max_bytes: usize,
        keep_alive: KeepAlive,
        max_packet_size: u32,
        topic_alias_max: u16,
        core: Rc<CoreMetrics>,
    ) -> Self {
        let aliases = OutgoingAliases::new(topic_alias_max, max_packet_size);
        Self {
            id,
            client_id,
            protocol,
            core,
            outbound: RefCell::new(
                OutboundQueue::new(max_messages, max_bytes).with_aliases(aliases),
            ),
            wake: Notify::default(),
            close_reason: OnceCell::new(),
            lagging: Cell::new(false),
            dropped: Cell::new(0),
            keep_alive_ticks: keep_alive.ticks,
            last_heard: Cell::new(keep_alive.now),
            max_packet_size,
            rest: Cell::new(Rest::Awake),
            full_reads: Cell::new(0),
        }
    }

    /// This handle, its queue charging what it holds to its core's `budget`
    /// (`max_queued_bytes_total`) and holding back its core's readers through `pacing` while
    /// its client keeps up but waits for its turn (see `pacing`).
    #[must_use]
    pub fn with_core_queues(self, budget: QueueBudget, pacing: Pacing) -> Self {
        let queue = self
            .outbound
            .into_inner()
            .with_budget(budget)
            .with_pacing(pacing);
        Self {
            outbound: RefCell::new(queue),
            ..self
        }
    }

    /// The largest packet the client accepts, in bytes.
    pub fn max_packet_size(&self) -> usize {
        usize::try_from(self.max_packet_size).unwrap_or(usize::MAX)
    }

    /// Queues a packet the protocol requires, encoded here, unless it cannot be made to fit
    /// the client's maximum packet size (it is then not sent [MQTT-3.1.2-24]).
    pub fn send_packet(&self, mut packet: Packet) {
        if !packet.fit_within(self.max_packet_size()) {
            tracing::debug!(
                client_id = %self.client_id,
                packet = packet.name(),
                "packet larger than the client's maximum packet size not sent"
            );
            return;
        }
        let mut out = BytesMut::with_capacity(packet.encoded_len());
        protocol::encode(&packet, &mut out);
        self.send(Frame::Encoded(out.freeze()));
    }

    /// Records that the client sent something during shard clock tick `now`, in a read that
    /// returned a whole chunk (`full`: more was likely waiting) or not.
    pub fn heard(&self, now: u32, full: bool) {
        let state = self.full_reads.get();
        let (mut streak, mut this_tick) = (
            state & !FULL_READ_THIS_TICK,
            state & FULL_READ_THIS_TICK != 0,
        );
        match now.wrapping_sub(self.last_heard.get()) {
            0 => {}
            // A new tick: the streak goes on only if the last one had a full read.
            1 if this_tick => this_tick = false,
            _ => (streak, this_tick) = (0, false),
        }
        if full && !this_tick {
            streak = (streak + 1).min(!FULL_READ_THIS_TICK);
            this_tick = true;
        }
        let flag = if this_tick { FULL_READ_THIS_TICK } else { 0 };
        self.full_reads.set(streak | flag);
        self.last_heard.set(now);
    }

    /// Whether the client's reads filled their chunk at least once in each of the last
    /// `BUSY_TICKS` ticks and the one before, the last heard in among them: a publisher that
    /// keeps its socket full, whose socket is better glommio's than parked. A client whose
    /// reads find less, however often it sends (a subscriber acknowledging a stream of QoS 1
    /// messages, a publisher whose messages are read as they come),
    /// stays parked: each of its reads is then one system call, with the waits for many
    /// sockets gathered in one wake-up of the lot, where glommio would arm a poll per read.
    pub fn is_busy(&self) -> bool {
        let state = self.full_reads.get();
        state & FULL_READ_THIS_TICK != 0 && state & !FULL_READ_THIS_TICK > BUSY_TICKS
    }

    /// Asks the connection's task to park its socket if the client has been silent for
    /// `after` ticks or more at shard clock tick `now` (and it is neither parked nor known to
    /// be unparkable). The task does it when next polled (see `Wire::poll_event`).
    pub fn ask_to_park(&self, now: u32, after: u32) {
        if self.rest.get() == Rest::Awake && now.wrapping_sub(self.last_heard.get()) >= after {
            self.rest.set(Rest::Asked);
            self.wake.notify();
        }
    }

    /// Where the connection stands with parking.
    pub fn rest(&self) -> Rest {
        self.rest.get()
    }

    /// Records where the connection stands with parking, as its task left it.
    pub fn set_rest(&self, rest: Rest) {
        self.rest.set(rest);
    }

    /// Whether the client has been silent for longer than its keep-alive allows at shard
    /// clock tick `now`. Never early: the tick of the last packet counts as silence only once
    /// it is over.
    pub fn keep_alive_expired(&self, now: u32) -> bool {
        self.keep_alive_ticks != 0
            && now.wrapping_sub(self.last_heard.get()) > self.keep_alive_ticks
    }

    /// Queues a packet the protocol requires and wakes the connection's task; a client that
    /// does not read at all is closed instead.
    ///
    /// A connection asked to close takes nothing more: what it was sent ends there (with the
    /// DISCONNECT of an MQTT 5 client, after which nothing may follow [MQTT-3.14.4-1]), and
    /// what comes later, such as an acknowledgement that waited for durable copies, is
    /// discarded, as it would be for a client already gone.
    pub fn send(&self, frame: Frame) {
        self.send_timed(frame, None);
    }

    /// [`ConnHandle::send`] for a publish whose fan-out is timed (`received`: when its
    /// message entered the core).
    fn send_timed(&self, frame: Frame, received: Option<Instant>) {
        if self.is_closing() {
            return;
        }
        let at = self.queued_at(received);
        let mut queue = self.outbound.borrow_mut();
        let was_empty = queue.is_empty();
        let pushed = queue.push(frame, at);
        drop(queue);
        match pushed {
            Ok(()) => self.wake_writer(was_empty),
            Err(_) => self.close(CloseReason::NotReading),
        }
    }

    /// Wakes the connection's task for a frame just queued, when the queue was empty before
    /// it: a task that finds frames waiting keeps writing until none are left, so only the
    /// first one needs to wake it (and a client whose socket is full costs no wake-up per
    /// frame).
    fn wake_writer(&self, was_empty: bool) {
        if was_empty {
            self.wake.notify();
        }
    }

    /// Now, on the core's coarse clock, with the instant of a timed fan-out.
    fn queued_at(&self, received: Option<Instant>) -> QueuedAt {
        QueuedAt {
            tick: self.core.clock(),
            received,
        }
    }

    /// Queues a QoS 0 publish, or drops it when the client's queue (or its core's queue
    /// budget) is full, saying why. `received` is when its message entered the core, for a
    /// timed fan-out. A connection asked to close takes nothing more (see [`ConnHandle::send`]):
    /// the publish is discarded uncounted.
    pub fn send_droppable(
        &self,
        frame: Frame,
        received: Option<Instant>,
    ) -> Result<(), DropReason> {
        if self.is_closing() {
            return Ok(());
        }
        let at = self.queued_at(received);
        let mut queue = self.outbound.borrow_mut();
        let was_empty = queue.is_empty();
        let pushed = queue.push_droppable_at(frame, at);
        drop(queue);
        match pushed {
            Ok(()) => {
                self.wake_writer(was_empty);
                Ok(())
            }
            Err(error) => {
                self.count_drop();
                self.note_lagging();
                Err(match error {
                    QueueError::OverBudget => DropReason::MaxQueuedBytesTotal,
                    QueueError::Full | QueueError::NotReading => DropReason::ConnectionQueueFull,
                })
            }
        }
    }

    /// Records a QoS 1/2 message dropped because the client's session queue was full.
    pub fn record_flow_drop(&self) {
        self.count_drop();
        self.note_lagging();
    }

    /// Logs once per episode when the client starts losing messages.
    fn note_lagging(&self) {
        if !self.lagging.replace(true) {
            tracing::warn!(client_id = %self.client_id, "dropping messages for slow client");
        }
    }

    /// Whether the client is in an episode of lost messages (see [`ConnHandle::end_drop_episode`]).
    pub fn is_dropping(&self) -> bool {
        self.lagging.get()
    }

    /// Ends the client's episode of lost messages (its core saw none for a whole watch
    /// period): the next drop is logged again.
    pub fn end_drop_episode(&self) {
        self.lagging.set(false);
    }

    /// Records a message not sent because it is larger than the client's maximum packet
    /// size: dropped for this client as if delivered [MQTT-3.1.2-25], and counted.
    pub fn record_too_large(&self, len: usize) {
        self.count_drop();
        tracing::debug!(
            client_id = %self.client_id,
            len,
            max_packet_size = self.max_packet_size,
            "message larger than the client's maximum packet size dropped"
        );
    }

    /// Queues what a session flow asked for, giving up (in `flow`) on the publishes that
    /// cannot be sent: larger than the client accepts, or expired before they left (counted
    /// here as dropped for [`DropReason::Expired`]). `shared` is a message of the caller with
    /// its encoding for this client (fan-out), used for the action that sends that very
    /// message; the others are encoded here. Consumes `actions`.
    pub fn send_flow_actions(
        &self,
        flow: &mut OutgoingFlow,
        actions: &mut Vec<FlowAction>,
        shared: Option<(&Message, &EncodedPublish)>,
    ) -> FlowSent {
        self.send_flow_actions_timed(flow, actions, shared, None)
    }

    /// [`ConnHandle::send_flow_actions`] for a fan-out that is timed: the copy of the shared
    /// message carries `received` (when the message entered the core) to its write.
    pub fn send_flow_actions_timed(
        &self,
        flow: &mut OutgoingFlow,
        actions: &mut Vec<FlowAction>,
        shared: Option<(&Message, &EncodedPublish)>,
        received: Option<Instant>,
    ) -> FlowSent {
        let mut sent = FlowSent::default();
        loop {
            let mut unsent: SmallVec<[PacketId; 2]> = SmallVec::new();
            for action in actions.drain(..) {
                match self.send_flow_action(action, shared, received) {
                    Ok(true) => sent.publishes += 1,
                    Ok(false) => {}
                    Err(Unsendable::TooLarge(id, len)) => {
                        self.record_too_large(len);
                        sent.dropped += 1;
                        unsent.push(id);
                    }
                    Err(Unsendable::Expired(id)) => {
                        self.core.dropped(DropReason::Expired, 1);
                        unsent.push(id);
                    }
                }
            }
            if unsent.is_empty() {
                // A client too slow to drain its queue soon holds no one back (see
                // `session::ack_rate`): its queue's limits drop what it cannot take.
                let past_mark = flow.past_mark() && flow.drains_in_time(self.core.clock());
                if self.with_outbound(|queue| queue.pace_flow(past_mark)) {
                    // The connection may be waiting among the held readers: it is no longer
                    // one of them, and its acknowledgements are what the core waits for.
                    self.wake.notify();
                }
                return sent;
            }
            for id in unsent {
                flow.discard(id, actions);
            }
        }
    }

    /// Queues one flow action; `Ok(true)` for a PUBLISH.
    fn send_flow_action(
        &self,
        action: FlowAction,
        shared: Option<(&Message, &EncodedPublish)>,
        received: Option<Instant>,
    ) -> Result<bool, Unsendable> {
        match action {
            FlowAction::Publish {
                packet_id,
                message,
                dup,
            } => {
                // A re-delivery has started onward delivery already: it goes out even late.
                if !dup && message.is_expired() {
                    return Err(Unsendable::Expired(packet_id));
                }
                let (packet, received) = match shared {
                    Some((original, packet)) if original.is_same_as(&message) => {
                        (packet.clone(), received)
                    }
                    _ => (
                        message.encode(self.protocol, message.qos, message.retain),
                        None,
                    ),
                };
                if packet.len() > self.max_packet_size() {
                    return Err(Unsendable::TooLarge(packet_id, packet.len()));
                }
                let frame = Frame::Publish {
                    packet,
                    packet_id: Some(packet_id),
                    dup,
                };
                self.send_timed(frame, received);
                Ok(true)
            }
            FlowAction::PubRel(id) => {
                self.send(Frame::ack(0x62, id));
                Ok(false)
            }
        }
    }

    /// Asks the connection's task to end (the first reason given wins). An MQTT 5 client is
    /// sent a DISCONNECT saying why, after what is already queued, when the specification
    /// allows one for that reason.
    pub fn close(&self, reason: CloseReason) {
        if self.close_reason.get().is_none() {
            if self.protocol == ProtocolVersion::V5 {
                self.queue_disconnect(&reason);
            }
            // Unset just above, and nothing between sets it: the DISCONNECT is only queued.
            let _ = self.close_reason.set(Box::new(reason));
        }
        // What is still written on a closing connection holds no one back.
        self.outbound.borrow_mut().stop_pacing();
        self.wake.notify();
    }

    /// Queues the DISCONNECT telling an MQTT 5 client why its connection ends, with the words
    /// of the log line as reason string when they fit its maximum packet size (some clients,
    /// paho-mqtt 2.1 among them, read the reason code only when properties follow it).
    fn queue_disconnect(&self, reason: &CloseReason) {
        let Some(code) = reason.disconnect_code() else {
            return;
        };
        let mut disconnect = Disconnect::new(code);
        disconnect.properties.reason_string = MqttString::try_from(reason.to_string()).ok();
        let mut packet = Packet::DisconnectV5(disconnect);
        if !packet.fit_within(self.max_packet_size()) {
            return;
        }
        let mut out = BytesMut::with_capacity(packet.encoded_len());
        protocol::encode(&packet, &mut out);
        // Past every limit: the queue is bounded by the one frame a connection closes with.
        let at = self.queued_at(None);
        self.outbound
            .borrow_mut()
            .push_final(Frame::Encoded(out.freeze()), at);
    }

    /// The reason given to [`ConnHandle::close`], if any.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close_reason.get().map(|reason| (**reason).clone())
    }

    /// Whether the connection was asked to close.
    pub fn is_closing(&self) -> bool {
        self.close_reason.get().is_some()
    }

    /// `Ready` when the connection's task has been woken since it last looked: its queue
    /// stopped being empty or it was asked to close (it then checks both). `Pending` registers
    /// the task of `cx` for the next wake-up.
    pub fn poll_wake(&self, cx: &Context<'_>) -> Poll<()> {
        self.wake.poll_notified(cx)
    }

    /// Runs `f` on the outgoing queue.
    pub fn with_outbound<T>(&self, f: impl FnOnce(&mut OutboundQueue) -> T) -> T {
        f(&mut self.outbound.borrow_mut())
    }

    /// Whether this client's session queue is holding back its core's readers until the
    /// client's acknowledgements drain it (see `pacing`): its own reads are then never held.
    pub fn is_holding_for_acks(&self) -> bool {
        self.outbound.borrow().is_holding_for_acks()
    }

    /// Messages (any QoS) dropped for this client so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    fn count_drop(&self) {
        self.dropped.set(self.dropped.get() + 1);
    }

    /// Moves what is queued into the write buffer `out` (see [`OutboundQueue::drain_into`]).
    pub fn drain_into(&self, out: &mut bytes::BytesMut) -> Drained {
        self.outbound.borrow_mut().drain_into(out)
    }

    /// Counts a batch written to the socket: `drained` from [`ConnHandle::drain_into`], `bytes`
    /// long. A timed publish in it gives its publish-to-delivery latency (one clock read).
    pub fn record_written(&self, drained: Drained, bytes: usize) {
        let core = &self.core;
        core.add(Counter::MessagesSent, drained.packets);
        core.add(Counter::BytesSent, bytes as u64);
        core.add(Counter::PublishSent, drained.publishes);
        core.add(Counter::PublishBytesSent, drained.publish_payload_bytes);
        if let Some(received) = drained.timed {
            core.record(Latency::PublishDelivery, received.elapsed());
        }
    }

    /// What waits in the outgoing queue: frames, bytes, and the coarse-clock tick at which
    /// the oldest of them was queued.
    pub fn queue_depth(&self) -> (usize, usize, Option<u32>) {
        let queue = self.outbound.borrow();
        (queue.len(), queue.bytes(), queue.oldest_tick())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn id(raw: u16) -> PacketId {
        PacketId::new(raw).expect("a non-zero packet id")
    }

    fn handle(protocol: ProtocolVersion) -> ConnHandle {
        let keep_alive = KeepAlive { ticks: 0, now: 0 };
        let core = Rc::new(CoreMetrics::new(0));
        let conn = ConnId::new(0, 1);
        ConnHandle::new(
            conn,
            Arc::from("c"),
            protocol,
            100,
            0,
            keep_alive,
            u32::MAX,
            0,
            core,
        )
    }

    #[test]
    fn nothing_follows_the_disconnect_of_a_closing_connection() {
        let conn = handle(ProtocolVersion::V5);
        conn.send(Frame::ack(0x40, id(1)));
        conn.close(CloseReason::TakenOver);
        conn.send(Frame::ack(0x40, id(2)));
        conn.send_packet(Packet::PingResp);
        let publish = Frame::Encoded(Bytes::from_static(&[0x30, 4, 0, 1, b't', b'x']));
        assert_eq!(conn.send_droppable(publish, None), Ok(()));
        let mut out = BytesMut::new();
        conn.drain_into(&mut out);
        assert_eq!(
            out[..4],
            [0x40, 2, 0, 1],
            "the PUBACK queued before the close"
        );
        assert_eq!(out[4], 0xE0, "then the DISCONNECT: {out:02x?}");
        let disconnect_len = 2 + usize::from(out[5]);
        assert_eq!(
            out.len(),
            4 + disconnect_len,
            "and nothing after it: {out:02x?}"
        );
        assert_eq!(
            conn.dropped(),
            0,
            "what a closing connection refuses is not a drop"
        );
    }

    #[test]
    fn a_handle_stays_small() {
        // Every connection holds one, in an `Rc` (16 bytes more): 232 bytes are one glibc
        // chunk of 240, where 256 would take 272 (issue 3's idle memory).
        let size = std::mem::size_of::<ConnHandle>();
        assert!(size <= 216, "{size} bytes");
    }

    #[test]
    fn a_client_is_busy_after_full_reads_in_four_ticks_in_a_row() {
        let conn = handle(ProtocolVersion::V3_1_1);
        for tick in 1..=3 {
            conn.heard(tick, true);
            conn.heard(tick, true);
            assert!(!conn.is_busy(), "tick {tick}");
        }
        conn.heard(4, false);
        assert!(!conn.is_busy(), "tick 4 has no full read yet");
        conn.heard(4, true);
        assert!(conn.is_busy(), "full reads in ticks 1 to 4");
        conn.heard(5, false);
        assert!(!conn.is_busy(), "tick 5 has no full read (yet)");
        conn.heard(5, true);
        assert!(conn.is_busy(), "full reads in ticks 1 to 5");
    }

    #[test]
    fn small_reads_however_frequent_keep_a_client_parked() {
        let conn = handle(ProtocolVersion::V3_1_1);
        for tick in 1..=50 {
            for _ in 0..100 {
                conn.heard(tick, false);
            }
        }
        assert!(!conn.is_busy());
    }

    #[test]
    fn a_tick_without_a_full_read_starts_the_streak_again() {
        let conn = handle(ProtocolVersion::V3_1_1);
        for tick in 1..=3 {
            conn.heard(tick, true);
        }
        conn.heard(4, false);
        for tick in 5..=7 {
            conn.heard(tick, true);
            assert!(!conn.is_busy(), "tick {tick}: the streak began at tick 5");
        }
        conn.heard(8, true);
        assert!(conn.is_busy());
        conn.heard(10, true);
        assert!(!conn.is_busy(), "silent in tick 9");
    }

    #[test]
    fn every_kind_of_drop_is_counted_once() {
        let conn = handle(ProtocolVersion::V3_1_1);
        let publish = || Frame::Encoded(Bytes::from_static(&[0x30, 4, 0, 1, b't', b'x']));
        for _ in 0..100 {
            assert_eq!(conn.send_droppable(publish(), None), Ok(()));
        }
        assert_eq!(conn.dropped(), 0, "100 fit in max_messages = 100");
        assert_eq!(
            conn.send_droppable(publish(), None),
            Err(DropReason::ConnectionQueueFull)
        );
        assert_eq!(conn.dropped(), 1, "a QoS 0 publish past the limit");
        conn.record_flow_drop();
        assert_eq!(
            conn.dropped(),
            2,
            "a QoS 1/2 message past the session queue"
        );
        conn.record_too_large(1 << 20);
        assert_eq!(conn.dropped(), 3, "a message over the maximum packet size");
    }

    #[test]
    fn a_closing_311_connection_queues_nothing_more() {
        let conn = handle(ProtocolVersion::V3_1_1);
        conn.send(Frame::ack(0x40, id(1)));
        conn.close(CloseReason::ShuttingDown);
        conn.send(Frame::ack(0x40, id(2)));
        let mut out = BytesMut::new();
        conn.drain_into(&mut out);
        assert_eq!(out[..], [0x40, 2, 0, 1]);
    }
}
