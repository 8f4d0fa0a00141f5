//! QoS 1 and 2 delivery from the broker to one client (MQTT 3.1.1 §4.3, §4.4, §4.6): the
//! inflight window, packet id allocation, the FIFO queue behind the window and re-delivery on
//! reconnect. Pure state: the caller writes the packets this module asks for.

use std::collections::VecDeque;

use super::SessionMap;

use super::ack_rate::AckRate;
use crate::message::Message;
use crate::persist::Acknowledgement;
use crate::protocol::{PacketId, QoS};
use crate::queue_budget::QueueBudget;

/// Limits of one session's outgoing flow (from config `[limits]`).
#[derive(Clone, Copy, Debug)]
pub struct FlowLimits {
    /// Messages sent but not yet fully acknowledged, at most (1..=65535; clamped into that range).
    pub max_inflight: usize,
    /// Messages waiting behind a full window (or for an offline client), at most.
    pub max_queued_messages: usize,
    /// Bytes (`Message::queued_size`) waiting behind the window, at most; 0 means no byte limit.
    pub max_queued_bytes: usize,
}

/// A packet the caller must send to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlowAction {
    /// Send this message as a PUBLISH with this packet id and DUP flag (QoS is `message.qos`).
    Publish {
        /// The id the client acknowledges it with.
        packet_id: PacketId,
        /// The message, QoS already reduced to what the subscription granted.
        message: Message,
        /// Set when this is a re-delivery of a PUBLISH the client may already have seen.
        dup: bool,
    },
    /// Send PUBREL for this id (the client has PUBREC'd the QoS 2 message).
    PubRel(PacketId),
}

/// A change of the flow that a persistent session writes to its core's log (see
/// [`OutgoingFlow::take_journal`]). Each message the flow accepts gets a message id, unique in
/// the session and growing in the order messages were offered, which is also the order they leave
/// the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlowEvent {
    /// A message was accepted: sent at once with `packet_id`, or queued (`None`).
    Queued {
        /// Its message id.
        message_id: u64,
        /// The packet id it was sent with, if it was sent at once.
        packet_id: Option<PacketId>,
        /// The message, QoS as delivered.
        message: Message,
    },
    /// A queued message entered the window with `packet_id`.
    Sent {
        /// Its message id.
        message_id: u64,
        /// The packet id it was sent with.
        packet_id: PacketId,
    },
    /// A queued message was dropped unsent (it expired while it waited).
    Dropped {
        /// Its message id.
        message_id: u64,
    },
    /// An in-flight packet id progressed: PUBACK or PUBCOMP ended it (so did a refusing
    /// PUBREC or a discard, written as the end of the exchange), PUBREC released its message.
    Acknowledged {
        /// The packet id.
        packet_id: PacketId,
        /// How far it went.
        ack: Acknowledgement,
    },
}

/// A message recovered from a persistent session's records, handed to
/// [`OutgoingFlow::restore`].
#[derive(Debug)]
pub struct RestoredMessage {
    /// Its message id.
    pub message_id: u64,
    /// The packet id it was in flight with (`None`: it waited in the queue).
    pub packet_id: Option<PacketId>,
    /// The message.
    pub message: Message,
}

/// A message a flow holds, as [`OutgoingFlow::held`] lists it: its message id, the packet id
/// it is in flight with (`None`: queued), and the message.
pub type HeldMessage<'a> = (u64, Option<PacketId>, &'a Message);

/// Why `OutgoingFlow::offer` refused a message; the caller counts it as dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueueFull {
    /// The queue already holds `max_queued_messages` messages.
    #[error("session queue is full (max_queued_messages reached)")]
    Messages,
    /// Queuing the message would exceed `max_queued_bytes`.
    #[error("session queue is full (max_queued_bytes would be exceeded)")]
    Bytes,
    /// The core's queues hold its share of `max_queued_bytes_total`, and this one is long.
    #[error("the core's queues are full (max_queued_bytes_total reached)")]
    Budget,
}

/// An acknowledgement from the client that does not fit the flow's state; the flow is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// No message is in flight with this id.
    #[error("acknowledgement for packet id {0}, which is not in flight")]
    UnknownPacketId(PacketId),
    /// The id is in flight, but awaits a different acknowledgement.
    #[error("unexpected acknowledgement for packet id {packet_id}: expected {expected}")]
    UnexpectedAck {
        /// The acknowledged id.
        packet_id: PacketId,
        /// The packet type this id is waiting for (`"PUBACK"`, `"PUBREC"` or `"PUBCOMP"`).
        expected: &'static str,
    },
}

/// Where one in-flight packet id stands in its QoS 1 or QoS 2 exchange.
#[derive(Debug)]
enum Stage {
    /// QoS 1 PUBLISH sent; the message (and its message id) is kept to re-send until PUBACK.
    Qos1Published(Message, u64),
    /// QoS 2 PUBLISH sent; the message (and its message id) is kept to re-send until PUBREC.
    Qos2Published(Message, u64),
    /// PUBREC received and PUBREL sent: the client owns the message now, only the id is kept
    /// until PUBCOMP.
    Released,
}

impl Stage {
    /// Name of the acknowledgement this stage waits for, for `FlowError::UnexpectedAck`.
    fn awaited_ack(&self) -> &'static str {
        match self {
            Stage::Qos1Published(..) => "PUBACK",
            Stage::Qos2Published(..) => "PUBREC",
            Stage::Released => "PUBCOMP",
        }
    }
}

/// One in-flight packet id: its stage and its position in the send order.
#[derive(Debug)]
struct InflightEntry {
    /// Order in which this id was first sent; matches one element of `ActiveFlow::send_order`.
    seq: u64,
    /// Where its exchange stands.
    stage: Stage,
}

/// The outgoing QoS 1/2 state of one session: a window of at most `max_inflight`
/// unacknowledged messages and a bounded FIFO queue behind it (see `ActiveFlow`). Messages
/// leave in the order they were offered.
///
/// Most sessions are never offered a QoS 1/2 message (a broker keeps one per client, idle ones
/// included): until the first is, the flow holds only its limits and its core's budget, and
/// the window, the queue and their counters are allocated with that first message.
#[derive(Debug)]
pub struct OutgoingFlow {
    state: FlowState,
}

/// The limits of a flow never offered a message, in 32 bits each: every session holds them, idle
/// ones included (issue 3's memory per idle connection), and the flow's state is then 24 bytes
/// instead of 40. A byte limit above `u32::MAX` is kept as `u32::MAX` (4 GiB), beyond what
/// `max_queued_bytes_total` lets any one queue hold by default.
#[derive(Clone, Copy, Debug)]
struct UnusedLimits {
    max_inflight: u32,
    max_queued_messages: u32,
    max_queued_bytes: u32,
}

/// `value` in 32 bits, `u32::MAX` if it is larger.
fn saturating_u32(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

impl From<FlowLimits> for UnusedLimits {
    fn from(limits: FlowLimits) -> Self {
        Self {
            max_inflight: saturating_u32(limits.max_inflight),
            max_queued_messages: saturating_u32(limits.max_queued_messages),
            max_queued_bytes: saturating_u32(limits.max_queued_bytes),
        }
    }
}

impl From<UnusedLimits> for FlowLimits {
    fn from(limits: UnusedLimits) -> Self {
        // u32 fits in usize on every target glommio runs on (64-bit Linux).
        Self {
            max_inflight: limits.max_inflight as usize,
            max_queued_messages: limits.max_queued_messages as usize,
            max_queued_bytes: limits.max_queued_bytes as usize,
        }
    }
}

/// Whether a flow was ever offered a message.
#[derive(Debug)]
enum FlowState {
    /// Never offered one: nothing in flight or queued, packet and message ids start at 1.
    Unused {
        /// The configured limits.
        limits: UnusedLimits,
        /// The core's account of queued bytes, for when messages queue.
        budget: QueueBudget,
        /// Whether changes are to be journaled.
        journaling: bool,
    },
    /// Offered one at least: it stays so until the session ends, its ids growing.
    Active(Box<ActiveFlow>),
}

impl OutgoingFlow {
    /// Creates an empty flow; `limits.max_inflight` is clamped to 1..=65535 so that a window
    /// with room always has a free packet id.
    pub fn new(limits: FlowLimits) -> Self {
        OutgoingFlow {
            state: FlowState::Unused {
                limits: limits.into(),
                budget: QueueBudget::unbounded(),
                journaling: false,
            },
        }
    }

    /// The flow's window and queue, allocated on first use.
    fn active(&mut self) -> &mut ActiveFlow {
        if let FlowState::Unused {
            limits,
            budget,
            journaling,
        } = &self.state
        {
            let flow = ActiveFlow::new((*limits).into(), budget.clone(), *journaling);
            self.state = FlowState::Active(Box::new(flow));
        }
        match &mut self.state {
            FlowState::Active(flow) => flow,
            // The `if` above made an unused flow active.
            FlowState::Unused { .. } => unreachable!("an unused flow was just made active"),
        }
    }

    /// The flow's window and queue, if it was ever offered a message.
    fn active_ref(&self) -> Option<&ActiveFlow> {
        match &self.state {
            FlowState::Active(flow) => Some(flow),
            FlowState::Unused { .. } => None,
        }
    }

    /// The flow's window and queue for an update, if it was ever offered a message.
    fn active_mut(&mut self) -> Option<&mut ActiveFlow> {
        match &mut self.state {
            FlowState::Active(flow) => Some(flow),
            FlowState::Unused { .. } => None,
        }
    }

    /// Charges what the queue holds to the core's `budget` from now on
    /// (`max_queued_bytes_total`).
    pub fn set_budget(&mut self, budget: QueueBudget) {
        match &mut self.state {
            FlowState::Unused { budget: unused, .. } => *unused = budget,
            FlowState::Active(flow) => flow.set_budget(budget),
        }
    }

    /// Starts (or stops) keeping a journal of [`FlowEvent`]s, for a session whose changes are
    /// written down; the caller takes them with [`OutgoingFlow::take_journal`] after each
    /// operation.
    pub fn set_journaling(&mut self, on: bool) {
        match &mut self.state {
            FlowState::Unused { journaling, .. } => *journaling = on,
            FlowState::Active(flow) => flow.set_journaling(on),
        }
    }

    /// The events recorded since the last call (empty when not journaling).
    pub fn take_journal(&mut self) -> Vec<FlowEvent> {
        self.active_mut()
            .map(ActiveFlow::take_journal)
            .unwrap_or_default()
    }

    /// Whether events wait in the journal.
    pub fn has_journal_events(&self) -> bool {
        self.active_ref()
            .is_some_and(ActiveFlow::has_journal_events)
    }

    /// Rebuilds the flow of a session read back at start-up: `messages` in message id order
    /// (those with a packet id go back in flight, to be re-sent with DUP on resume, the others
    /// to the queue, whatever the limits: they were accepted once), `released` the QoS 2 ids
    /// awaiting PUBCOMP; message ids continue above `highest_message_id`, packet ids above
    /// `last_packet_id` (the one last sent with, as before the restart: a queued message whose
    /// `Sent` was lost goes out with the id the client may already hold). Journals nothing.
    /// A session whose records hold none of these stays unused.
    pub fn restore(
        &mut self,
        released: impl IntoIterator<Item = PacketId>,
        messages: Vec<RestoredMessage>,
        highest_message_id: u64,
        last_packet_id: Option<PacketId>,
    ) {
        let mut released = released.into_iter().peekable();
        let unused = self.active_ref().is_none()
            && released.peek().is_none()
            && messages.is_empty()
            && highest_message_id == 0
            && last_packet_id.is_none();
        if !unused {
            self.active()
                .restore(released, messages, highest_message_id, last_packet_id);
        }
    }

    /// Everything the flow holds as a persistent session's records describe it: the ids
    /// awaiting PUBCOMP, then the messages in message id order (in flight with their packet
    /// id, then queued): what a snapshot writes.
    pub fn held(&self) -> (Vec<PacketId>, Vec<HeldMessage<'_>>) {
        self.active_ref().map(ActiveFlow::held).unwrap_or_default()
    }

    /// The messages another client could still be given if the session ended now, oldest
    /// first: those queued and never sent, and the QoS 1 ones in flight. A QoS 2 message
    /// already sent is not among them: its delivery is completed with this client or not at
    /// all [MQTT-4.8.2-5]. Only a flow that was ever offered a shared subscription's copy
    /// (`Message::shared_group`) lists any: the others' messages stay theirs, and a session
    /// ending with them costs no look through its flow.
    pub fn transferable(&self) -> impl Iterator<Item = &Message> {
        let (_, messages) = match self.active_ref() {
            Some(flow) if flow.offered_shared => flow.held(),
            _ => Default::default(),
        };
        messages
            .into_iter()
            .filter(|(_, packet_id, message)| {
                packet_id.is_none() || message.qos == QoS::AtLeastOnce
            })
            .map(|(_, _, message)| message)
    }

    /// Offers a message whose QoS (`message.qos`, already min(published, granted)) is 1 or 2.
    ///
    /// If `online` and the window has room, and nothing is queued ahead of it, the message gets
    /// a free packet id and a `Publish { dup: false }` is pushed to `out`. Otherwise it is queued
    /// if `max_queued_messages` and `max_queued_bytes` allow, else `Err(QueueFull)` is returned
    /// and nothing is kept. When `online`, messages already queued are released first.
    pub fn offer(
        &mut self,
        message: Message,
        online: bool,
        out: &mut Vec<FlowAction>,
    ) -> Result<(), QueueFull> {
        self.active().offer(message, online, out)
    }

    /// The window an acknowledgement of `id` is for, or the error that nothing is in flight.
    fn acknowledged(&mut self, id: PacketId) -> Result<&mut ActiveFlow, FlowError> {
        self.active_mut().ok_or(FlowError::UnknownPacketId(id))
    }

    /// Handles PUBACK for a QoS 1 message: frees its slot and releases queued messages into
    /// the window (pushing `Publish` actions).
    pub fn on_puback(&mut self, id: PacketId, out: &mut Vec<FlowAction>) -> Result<(), FlowError> {
        self.acknowledged(id)?.on_puback(id, out)
    }

    /// Handles PUBREC for a QoS 2 message: the message is released (its payload can be freed),
    /// the id now awaits PUBCOMP, and `PubRel(id)` is pushed. A repeated PUBREC for an id that
    /// already awaits PUBCOMP is answered with PUBREL again (harmless, and it lets a client that
    /// lost our PUBREL finish the exchange).
    pub fn on_pubrec(&mut self, id: PacketId, out: &mut Vec<FlowAction>) -> Result<(), FlowError> {
        self.acknowledged(id)?.on_pubrec(id, out)
    }

    /// Handles PUBCOMP: frees the slot and releases queued messages into the window.
    pub fn on_pubcomp(&mut self, id: PacketId, out: &mut Vec<FlowAction>) -> Result<(), FlowError> {
        self.acknowledged(id)?.on_pubcomp(id, out)
    }

    /// Handles an MQTT 5 PUBREC with a failure reason code: the subscriber refused the QoS 2
    /// message, which ends its exchange without PUBREL [MQTT-4.3.3]; frees the slot and
    /// releases queued messages into the window.
    pub fn on_pubrec_refused(
        &mut self,
        id: PacketId,
        out: &mut Vec<FlowAction>,
    ) -> Result<(), FlowError> {
        self.acknowledged(id)?.on_pubrec_refused(id, out)
    }

    /// Gives up on in-flight `id` without an acknowledgement, because its PUBLISH could not be
    /// sent (larger than the client accepts, or expired before it left), as if it had been
    /// delivered [MQTT-3.1.2-25]; releases queued messages into the window.
    pub fn discard(&mut self, id: PacketId, out: &mut Vec<FlowAction>) {
        if let Some(flow) = self.active_mut() {
            flow.discard(id, out);
        }
    }

    /// Sets the window: at most `max_inflight` messages in flight (clamped to 1..=65535), for
    /// a client that accepts fewer than the configured window (its MQTT 5 receive maximum).
    /// A smaller window than the messages already in flight lets them finish first.
    pub fn set_max_inflight(&mut self, max_inflight: usize) {
        match &mut self.state {
            FlowState::Unused { limits, .. } => limits.max_inflight = saturating_u32(max_inflight),
            FlowState::Active(flow) => flow.set_max_inflight(max_inflight),
        }
    }

    /// Called when the client (re)connects with this session (§4.4): every in-flight item is
    /// sent again in the order first sent (PUBLISH with `dup: true` and the same packet id, or
    /// PUBREL for ids awaiting PUBCOMP), then queued messages are released into the window.
    pub fn resume(&mut self, out: &mut Vec<FlowAction>) {
        if let Some(flow) = self.active_mut() {
            flow.resume(out);
        }
    }

    /// Number of packet ids in flight (sent, not yet fully acknowledged).
    pub fn inflight_len(&self) -> usize {
        self.active_ref().map_or(0, ActiveFlow::inflight_len)
    }

    /// Number of messages waiting behind the window.
    pub fn queued_len(&self) -> usize {
        self.active_ref().map_or(0, ActiveFlow::queued_len)
    }

    /// Whether the queue behind the window holds half its limits or more (in messages or in
    /// bytes): a few more turns of the core's publishers and it would drop messages. Its
    /// connection then holds back the core's readers (see `pacing`).
    pub fn past_mark(&self) -> bool {
        self.active_ref().is_some_and(|flow| {
            let limits = &flow.limits;
            (limits.max_queued_messages != 0
                && flow.queue.len() >= (limits.max_queued_messages / 2).max(1))
                || (limits.max_queued_bytes != 0
                    && flow.queued_bytes >= limits.max_queued_bytes / 2)
        })
    }

    /// Counts an acknowledgement from the client during tick `now` of the core's clock.
    pub fn record_ack(&mut self, now: u32) {
        if let Some(flow) = self.active_mut() {
            flow.acks.record(now);
        }
    }

    /// Whether the client, at the rate it acknowledged lately, drains the queue behind its
    /// window soon enough for the core's readers to wait for it (see `ack_rate`).
    pub fn drains_in_time(&self, now: u32) -> bool {
        self.active_ref()
            .map_or(true, |flow| flow.acks.drains(flow.queue.len(), now))
    }

    /// Bytes (`Message::queued_size`) waiting behind the window.
    pub fn queued_bytes(&self) -> usize {
        self.active_ref().map_or(0, ActiveFlow::queued_bytes)
    }

    /// Drops everything (clean session end); returns how many messages were discarded: the
    /// queued ones and the in-flight ones the client has not yet acknowledged receiving (ids
    /// awaiting PUBCOMP hold no message any more and are not counted).
    pub fn clear(&mut self) -> usize {
        self.active_mut().map_or(0, ActiveFlow::clear)
    }
}

/// The outgoing QoS 1/2 state of a session once it was offered a message (see
/// [`OutgoingFlow`]): a window of at most `max_inflight` unacknowledged messages and a bounded
/// FIFO queue behind it. Messages leave in the order they were offered.
///
/// Layout: `inflight` maps a packet id to its entry (O(1) expected lookup on every ack), and
/// `send_order` lists `(seq, id)` in first-sent order for re-delivery on reconnect. An ack does
/// not search `send_order`: the pair is left behind and recognised as stale later because the
/// id is no longer in `inflight` or now carries a newer `seq`. Stale pairs are dropped from the
/// front after every ack (in-order acks, the usual case, leave none) and the deque is compacted
/// when stale pairs outnumber live ones, so every operation stays amortised O(1) and the deque
/// never holds more than about twice the window.
#[derive(Debug)]
struct ActiveFlow {
    /// The configured limits (with `max_inflight` clamped to 1..=65535).
    limits: FlowLimits,
    /// In-flight packet ids and their state.
    inflight: SessionMap<PacketId, InflightEntry>,
    /// `(seq, id)` in first-sent order; may contain stale pairs (see the type's doc).
    send_order: VecDeque<(u64, PacketId)>,
    /// Sequence number given to the next id sent.
    next_seq: u64,
    /// Where the search for a free packet id starts (1..=65535).
    next_packet_id: u16,
    /// Messages not yet in the window, oldest first, with their message ids.
    queue: VecDeque<(u64, Message)>,
    /// Sum of `Message::queued_size` over `queue`.
    queued_bytes: usize,
    /// Message id of the next message accepted.
    next_message_id: u64,
    /// Changes to write down, for a persistent session (`None`: nobody writes them).
    journal: Option<Vec<FlowEvent>>,
    /// The core's account of queued bytes, charged with `queued_bytes`.
    budget: QueueBudget,
    /// How fast the client acknowledges (see [`OutgoingFlow::drains_in_time`]).
    acks: AckRate,
    /// Whether a copy chosen through a shared subscription group was ever offered (see
    /// [`OutgoingFlow::transferable`]).
    offered_shared: bool,
}

impl Drop for ActiveFlow {
    /// An ended session's queue leaves the core's account with it.
    fn drop(&mut self) {
        self.budget.release(self.queued_bytes);
    }
}

/// The largest number of ids that can be in flight: the whole non-zero 16-bit space.
const PACKET_ID_SPACE: usize = u16::MAX as usize;

/// Capacity (entries) above which an emptied collection gives its memory back, so that one
/// burst does not pin memory for the rest of the session while ordinary traffic does not
/// reallocate every time the window drains.
const SHRINK_THRESHOLD: usize = 64;

/// Stale pairs `send_order` may hold beyond twice the in-flight count before it is compacted.
const STALE_SLACK: usize = 16;

/// The stage of a message just put in flight with its PUBLISH.
fn publish_stage(message: Message, message_id: u64) -> Stage {
    match message.qos {
        QoS::ExactlyOnce => Stage::Qos2Published(message, message_id),
        QoS::AtLeastOnce | QoS::AtMostOnce => Stage::Qos1Published(message, message_id),
    }
}

/// Whether a `send_order` pair still describes an in-flight id (and not an acknowledged one, or
/// an older use of an id that has since been reused).
fn is_live(inflight: &SessionMap<PacketId, InflightEntry>, seq: u64, packet_id: PacketId) -> bool {
    inflight
        .get(&packet_id)
        .is_some_and(|entry| entry.seq == seq)
}

impl ActiveFlow {
    /// Creates an empty flow charging `budget`, keeping a journal if `journaling`;
    /// `limits.max_inflight` is clamped to 1..=65535 so that a window with room always has a
    /// free packet id.
    fn new(limits: FlowLimits, budget: QueueBudget, journaling: bool) -> Self {
        let limits = FlowLimits {
            max_inflight: limits.max_inflight.clamp(1, PACKET_ID_SPACE),
            ..limits
        };
        ActiveFlow {
            limits,
            inflight: SessionMap::default(),
            send_order: VecDeque::new(),
            next_seq: 0,
            next_packet_id: 1,
            queue: VecDeque::new(),
            queued_bytes: 0,
            next_message_id: 1,
            journal: journaling.then(Vec::new),
            budget,
            acks: AckRate::default(),
            offered_shared: false,
        }
    }

    /// Charges what the queue holds to the core's `budget` from now on
    /// (`max_queued_bytes_total`).
    fn set_budget(&mut self, budget: QueueBudget) {
        budget.charge(self.queued_bytes);
        std::mem::replace(&mut self.budget, budget).release(self.queued_bytes);
    }

    /// Counts `size` more bytes queued, here and in the core's budget.
    fn add_queued(&mut self, size: usize) {
        self.queued_bytes += size;
        self.budget.charge(size);
    }

    /// Counts `size` bytes that left the queue (`size` was added before: no underflow).
    fn remove_queued(&mut self, size: usize) {
        self.queued_bytes -= size;
        self.budget.release(size);
    }

    /// Starts (or stops) keeping a journal of [`FlowEvent`]s, for a session whose changes are
    /// written down; the caller takes them with [`OutgoingFlow::take_journal`] after each
    /// operation.
    fn set_journaling(&mut self, on: bool) {
        self.journal = on.then(Vec::new);
    }

    /// The events recorded since the last call (empty when not journaling).
    fn take_journal(&mut self) -> Vec<FlowEvent> {
        match &mut self.journal {
            Some(journal) if !journal.is_empty() => std::mem::take(journal),
            _ => Vec::new(),
        }
    }

    /// Whether events wait in the journal.
    fn has_journal_events(&self) -> bool {
        self.journal
            .as_ref()
            .is_some_and(|journal| !journal.is_empty())
    }

    fn note(&mut self, event: impl FnOnce() -> FlowEvent) {
        if let Some(journal) = &mut self.journal {
            journal.push(event());
        }
    }

    /// Rebuilds the flow of a session read back at start-up: `messages` in message id order
    /// (those with a packet id go back in flight, to be re-sent with DUP on resume, the others
    /// to the queue, whatever the limits: they were accepted once), `released` the QoS 2 ids
    /// awaiting PUBCOMP; message ids continue above `highest_message_id`, packet ids above
    /// `last_packet_id` (the one last sent with, as before the restart: a queued message whose
    /// `Sent` was lost goes out with the id the client may already hold). Journals nothing.
    fn restore(
        &mut self,
        released: impl IntoIterator<Item = PacketId>,
        messages: Vec<RestoredMessage>,
        highest_message_id: u64,
        last_packet_id: Option<PacketId>,
    ) {
        if let Some(last) = last_packet_id {
            self.next_packet_id = last.get().checked_add(1).unwrap_or(1);
        }
        for packet_id in released {
            self.put_in_flight(packet_id, Stage::Released);
        }
        for restored in messages {
            match restored.packet_id {
                Some(packet_id) if !self.inflight.contains_key(&packet_id) => {
                    let stage = publish_stage(restored.message, restored.message_id);
                    self.put_in_flight(packet_id, stage);
                }
                _ => {
                    self.add_queued(restored.message.queued_size());
                    self.queue
                        .push_back((restored.message_id, restored.message));
                }
            }
        }
        self.next_message_id = self
            .next_message_id
            .max(highest_message_id.saturating_add(1));
    }

    fn put_in_flight(&mut self, packet_id: PacketId, stage: Stage) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.inflight
            .insert(packet_id, InflightEntry { seq, stage });
        self.send_order.push_back((seq, packet_id));
    }

    /// Everything the flow holds as a persistent session's records describe it: the ids
    /// awaiting PUBCOMP, then the messages in message id order (in flight with their packet
    /// id, then queued): what a snapshot writes.
    fn held(&self) -> (Vec<PacketId>, Vec<HeldMessage<'_>>) {
        let mut released = Vec::new();
        let mut messages = Vec::with_capacity(self.inflight.len() + self.queue.len());
        for (packet_id, entry) in &self.inflight {
            match &entry.stage {
                Stage::Released => released.push(*packet_id),
                Stage::Qos1Published(message, id) | Stage::Qos2Published(message, id) => {
                    messages.push((*id, Some(*packet_id), message));
                }
            }
        }
        messages.sort_by_key(|(id, _, _)| *id);
        messages.extend(self.queue.iter().map(|(id, message)| (*id, None, message)));
        (released, messages)
    }

    /// Offers a message whose QoS (`message.qos`, already min(published, granted)) is 1 or 2.
    ///
    /// If `online` and the window has room, and nothing is queued ahead of it, the message gets
    /// a free packet id and a `Publish { dup: false }` is pushed to `out`. Otherwise it is queued
    /// if `max_queued_messages` and `max_queued_bytes` allow, else `Err(QueueFull)` is returned
    /// and nothing is kept. When `online`, messages already queued are released first.
    fn offer(
        &mut self,
        message: Message,
        online: bool,
        out: &mut Vec<FlowAction>,
    ) -> Result<(), QueueFull> {
        debug_assert_ne!(
            message.qos,
            QoS::AtMostOnce,
            "QoS 0 messages are not tracked by OutgoingFlow"
        );
        self.offered_shared |= message.shared_group().is_some();
        if online {
            self.release_queued(out);
            if self.queue.is_empty() && self.window_has_room() {
                if let Some(packet_id) = self.allocate_packet_id() {
                    let message_id = self.take_message_id();
                    self.note(|| FlowEvent::Queued {
                        message_id,
                        packet_id: Some(packet_id),
                        message: message.clone(),
                    });
                    self.send_new(packet_id, message_id, message, out);
                    return Ok(());
                }
            }
        }
        self.enqueue(message)
    }

    fn take_message_id(&mut self) -> u64 {
        let id = self.next_message_id;
        self.next_message_id += 1;
        id
    }

    /// Handles PUBACK for a QoS 1 message: frees its slot and releases queued messages into
    /// the window (pushing `Publish` actions).
    fn on_puback(&mut self, id: PacketId, out: &mut Vec<FlowAction>) -> Result<(), FlowError> {
        let entry = self.entry(id)?;
        match entry.stage {
            Stage::Qos1Published(..) => {
                self.note(|| FlowEvent::Acknowledged {
                    packet_id: id,
                    ack: Acknowledgement::Puback,
                });
                self.complete(id);
                self.release_queued(out);
                Ok(())
            }
            ref other => Err(FlowError::UnexpectedAck {
                packet_id: id,
                expected: other.awaited_ack(),
            }),
        }
    }

    /// Handles PUBREC for a QoS 2 message: the message is released (its payload can be freed),
    /// the id now awaits PUBCOMP, and `PubRel(id)` is pushed. A repeated PUBREC for an id that
    /// already awaits PUBCOMP is answered with PUBREL again (harmless, and it lets a client that
    /// lost our PUBREL finish the exchange).
    fn on_pubrec(&mut self, id: PacketId, out: &mut Vec<FlowAction>) -> Result<(), FlowError> {
        let entry = self.entry_mut(id)?;
        match entry.stage {
            Stage::Qos2Published(..) | Stage::Released => {
                let first = matches!(entry.stage, Stage::Qos2Published(..));
                entry.stage = Stage::Released;
                out.push(FlowAction::PubRel(id));
                if first {
                    self.note(|| FlowEvent::Acknowledged {
                        packet_id: id,
                        ack: Acknowledgement::Pubrec,
                    });
                }
                Ok(())
            }
            Stage::Qos1Published(..) => Err(FlowError::UnexpectedAck {
                packet_id: id,
                expected: "PUBACK",
            }),
        }
    }

    /// Handles PUBCOMP: frees the slot and releases queued messages into the window.
    fn on_pubcomp(&mut self, id: PacketId, out: &mut Vec<FlowAction>) -> Result<(), FlowError> {
        let entry = self.entry(id)?;
        match entry.stage {
            Stage::Released => {
                self.note(|| FlowEvent::Acknowledged {
                    packet_id: id,
                    ack: Acknowledgement::Pubcomp,
                });
                self.complete(id);
                self.release_queued(out);
                Ok(())
            }
            ref other => Err(FlowError::UnexpectedAck {
                packet_id: id,
                expected: other.awaited_ack(),
            }),
        }
    }

    /// Handles an MQTT 5 PUBREC with a failure reason code: the subscriber refused the QoS 2
    /// message, which ends its exchange without PUBREL [MQTT-4.3.3]; frees the slot and
    /// releases queued messages into the window.
    fn on_pubrec_refused(
        &mut self,
        id: PacketId,
        out: &mut Vec<FlowAction>,
    ) -> Result<(), FlowError> {
        let entry = self.entry(id)?;
        match entry.stage {
            Stage::Qos2Published(..) => {
                self.note(|| FlowEvent::Acknowledged {
                    packet_id: id,
                    ack: Acknowledgement::Pubcomp,
                });
                self.complete(id);
                self.release_queued(out);
                Ok(())
            }
            ref other => Err(FlowError::UnexpectedAck {
                packet_id: id,
                expected: other.awaited_ack(),
            }),
        }
    }

    /// Gives up on in-flight `id` without an acknowledgement, because its PUBLISH could not be
    /// sent (larger than the client accepts, or expired before it left), as if it had been
    /// delivered [MQTT-3.1.2-25]; releases queued messages into the window.
    fn discard(&mut self, id: PacketId, out: &mut Vec<FlowAction>) {
        if self.inflight.contains_key(&id) {
            self.note(|| FlowEvent::Acknowledged {
                packet_id: id,
                ack: Acknowledgement::Pubcomp,
            });
            self.complete(id);
            self.release_queued(out);
        }
    }

    /// Sets the window: at most `max_inflight` messages in flight (clamped to 1..=65535), for
    /// a client that accepts fewer than the configured window (its MQTT 5 receive maximum).
    /// A smaller window than the messages already in flight lets them finish first.
    fn set_max_inflight(&mut self, max_inflight: usize) {
        self.limits.max_inflight = max_inflight.clamp(1, PACKET_ID_SPACE);
    }

    /// Called when the client (re)connects with this session (§4.4): every in-flight item is
    /// sent again in the order first sent (PUBLISH with `dup: true` and the same packet id, or
    /// PUBREL for ids awaiting PUBCOMP), then queued messages are released into the window.
    fn resume(&mut self, out: &mut Vec<FlowAction>) {
        self.compact_send_order();
        for &(_, packet_id) in &self.send_order {
            let Some(entry) = self.inflight.get(&packet_id) else {
                continue;
            };
            out.push(match &entry.stage {
                Stage::Qos1Published(message, _) | Stage::Qos2Published(message, _) => {
                    FlowAction::Publish {
                        packet_id,
                        message: message.clone(),
                        dup: true,
                    }
                }
                Stage::Released => FlowAction::PubRel(packet_id),
            });
        }
        self.release_queued(out);
    }

    /// Number of packet ids in flight (sent, not yet fully acknowledged).
    fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    /// Number of messages waiting behind the window.
    fn queued_len(&self) -> usize {
        self.queue.len()
    }

    /// Bytes (`Message::queued_size`) waiting behind the window.
    fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Drops everything (clean session end); returns how many messages were discarded: the
    /// queued ones and the in-flight ones the client has not yet acknowledged receiving (ids
    /// awaiting PUBCOMP hold no message any more and are not counted).
    fn clear(&mut self) -> usize {
        let unacknowledged = self
            .inflight
            .values()
            .filter(|entry| !matches!(entry.stage, Stage::Released))
            .count();
        let discarded = unacknowledged + self.queue.len();
        self.inflight = SessionMap::default();
        self.send_order = VecDeque::new();
        self.queue = VecDeque::new();
        self.remove_queued(self.queued_bytes);
        self.next_packet_id = 1;
        discarded
    }

    /// Whether one more id can be put in flight.
    fn window_has_room(&self) -> bool {
        self.inflight.len() < self.limits.max_inflight
    }

    /// Looks up an in-flight id, or reports it unknown.
    fn entry(&self, id: PacketId) -> Result<&InflightEntry, FlowError> {
        self.inflight.get(&id).ok_or(FlowError::UnknownPacketId(id))
    }

    /// Looks up an in-flight id for update, or reports it unknown.
    fn entry_mut(&mut self, id: PacketId) -> Result<&mut InflightEntry, FlowError> {
        self.inflight
            .get_mut(&id)
            .ok_or(FlowError::UnknownPacketId(id))
    }

    /// Queues a message if the limits allow it.
    fn enqueue(&mut self, message: Message) -> Result<(), QueueFull> {
        if self.queue.len() >= self.limits.max_queued_messages {
            return Err(QueueFull::Messages);
        }
        let size = message.queued_size();
        if self.limits.max_queued_bytes != 0
            && self.queued_bytes.saturating_add(size) > self.limits.max_queued_bytes
        {
            return Err(QueueFull::Bytes);
        }
        if !self.budget.admits(self.queued_bytes, size) {
            return Err(QueueFull::Budget);
        }
        self.add_queued(size);
        let message_id = self.take_message_id();
        self.note(|| FlowEvent::Queued {
            message_id,
            packet_id: None,
            message: message.clone(),
        });
        self.queue.push_back((message_id, message));
        Ok(())
    }

    /// Moves queued messages into the window, oldest first, while it has room.
    /// Messages whose expiry interval passed while they waited are dropped here, never sent
    /// [MQTT-3.3.2-5].
    fn release_queued(&mut self, out: &mut Vec<FlowAction>) {
        while self.window_has_room() {
            let Some((message_id, message)) = self.queue.pop_front() else {
                break;
            };
            // `queued_bytes` is the sum over `queue`, which held this message: no underflow.
            self.remove_queued(message.queued_size());
            if message.is_expired() {
                self.note(|| FlowEvent::Dropped { message_id });
                continue;
            }
            let Some(packet_id) = self.allocate_packet_id() else {
                self.add_queued(message.queued_size());
                self.queue.push_front((message_id, message));
                return;
            };
            self.note(|| FlowEvent::Sent {
                message_id,
                packet_id,
            });
            self.send_new(packet_id, message_id, message, out);
        }
        if self.queue.is_empty() && self.queue.capacity() > SHRINK_THRESHOLD {
            self.queue = VecDeque::new();
        }
    }

    /// Puts a message in flight under `packet_id` and asks the caller to send it.
    fn send_new(
        &mut self,
        packet_id: PacketId,
        message_id: u64,
        message: Message,
        out: &mut Vec<FlowAction>,
    ) {
        self.put_in_flight(packet_id, publish_stage(message.clone(), message_id));
        out.push(FlowAction::Publish {
            packet_id,
            message,
            dup: false,
        });
    }

    /// Finds the next id not in flight, searching upward from `next_packet_id` and wrapping
    /// from 65535 to 1. Returns `None` only if all 65535 ids are in flight, which the clamped
    /// `max_inflight` rules out whenever the window has room.
    fn allocate_packet_id(&mut self) -> Option<PacketId> {
        for _ in 0..PACKET_ID_SPACE {
            let candidate = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            match PacketId::new(candidate) {
                Some(id) if !self.inflight.contains_key(&id) => return Some(id),
                _ => {}
            }
        }
        None
    }

    /// Removes a fully acknowledged id and trims stale `send_order` pairs; once nothing is in
    /// flight, memory grown by a burst is given back.
    fn complete(&mut self, id: PacketId) {
        self.inflight.remove(&id);
        if self.inflight.is_empty() {
            if self.inflight.capacity() > SHRINK_THRESHOLD {
                self.inflight = SessionMap::default();
            }
            if self.send_order.capacity() > SHRINK_THRESHOLD {
                self.send_order = VecDeque::new();
            } else {
                self.send_order.clear();
            }
            return;
        }
        while let Some(&(seq, packet_id)) = self.send_order.front() {
            if is_live(&self.inflight, seq, packet_id) {
                break;
            }
            self.send_order.pop_front();
        }
        if self.send_order.len() > 2 * self.inflight.len() + STALE_SLACK {
            self.compact_send_order();
        }
    }

    /// Drops every stale pair from `send_order`, keeping the live ones in order.
    fn compact_send_order(&mut self) {
        let inflight = &self.inflight;
        self.send_order
            .retain(|&(seq, packet_id)| is_live(inflight, seq, packet_id));
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::topic::TopicName;

    fn id(raw: u16) -> PacketId {
        PacketId::new(raw).unwrap()
    }

    /// A message on `t/<n>` whose payload is `payload_len` bytes of `n`, so each one is
    /// recognisable and its `queued_size` is `3 + payload_len` for n < 10.
    fn msg(n: u8, payload_len: usize, qos: QoS) -> Message {
        Message {
            extras: None,
            topic: TopicName::try_from(format!("t/{n}").as_str()).unwrap(),
            payload: Bytes::from(vec![n; payload_len]),
            qos,
            retain: false,
        }
    }

    fn limits(
        max_inflight: usize,
        max_queued_messages: usize,
        max_queued_bytes: usize,
    ) -> FlowLimits {
        FlowLimits {
            max_inflight,
            max_queued_messages,
            max_queued_bytes,
        }
    }

    fn publish(packet_id: u16, message: Message, dup: bool) -> FlowAction {
        FlowAction::Publish {
            packet_id: id(packet_id),
            message,
            dup,
        }
    }

    fn take(out: &mut Vec<FlowAction>) -> Vec<FlowAction> {
        std::mem::take(out)
    }

    /// The window and queue of a flow that was offered a message.
    fn active(flow: &OutgoingFlow) -> &ActiveFlow {
        flow.active_ref().expect("the flow was offered a message")
    }

    #[test]
    fn an_unused_flow_is_small_and_allocates_nothing_until_offered_a_message() {
        // A broker keeps a flow per client, most of them never sent a QoS 1/2 message: the
        // window and queue must not come back into every session (issue 3's idle memory).
        assert!(std::mem::size_of::<OutgoingFlow>() <= 24);
        let mut flow = OutgoingFlow::new(limits(2, 10, 0));
        let mut out = Vec::new();
        flow.set_budget(crate::queue_budget::QueueBudget::new(1_000));
        flow.set_journaling(true);
        flow.set_max_inflight(1);
        flow.resume(&mut out);
        flow.discard(id(1), &mut out);
        assert_eq!(flow.clear(), 0);
        assert_eq!(
            flow.on_puback(id(1), &mut out),
            Err(FlowError::UnknownPacketId(id(1)))
        );
        assert_eq!(
            flow.on_pubrec(id(2), &mut out),
            Err(FlowError::UnknownPacketId(id(2)))
        );
        assert_eq!(
            flow.on_pubcomp(id(3), &mut out),
            Err(FlowError::UnknownPacketId(id(3)))
        );
        assert_eq!(
            flow.on_pubrec_refused(id(4), &mut out),
            Err(FlowError::UnknownPacketId(id(4)))
        );
        flow.restore(Vec::<PacketId>::new(), Vec::new(), 0, None);
        assert!(out.is_empty());
        assert!(flow.take_journal().is_empty());
        assert_eq!(flow.held(), (Vec::new(), Vec::new()));
        assert!(flow.active_ref().is_none());
        flow.offer(msg(1, 1, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        assert!(flow.active_ref().is_some());
        assert_eq!(out, vec![publish(1, msg(1, 1, QoS::AtLeastOnce), false)]);
    }

    #[test]
    fn settings_made_before_the_first_message_hold_after_it() {
        use crate::queue_budget::QueueBudget;
        let budget = QueueBudget::new(1_000);
        let mut flow = OutgoingFlow::new(limits(2, 10, 0));
        flow.set_budget(budget.clone());
        flow.set_journaling(true);
        flow.set_max_inflight(1);
        let mut out = Vec::new();
        flow.offer(msg(1, 1, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        flow.offer(msg(2, 1, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        assert_eq!(out.len(), 1, "the window of 1 set before first use holds");
        assert_eq!(flow.queued_len(), 1);
        assert_eq!(
            budget.used(),
            4,
            "the budget set before first use is charged"
        );
        let events = flow.take_journal();
        assert_eq!(events.len(), 2, "journaling set before first use records");
    }

    #[test]
    fn a_restored_flow_continues_the_recorded_ids() {
        let mut flow = OutgoingFlow::new(limits(2, 10, 0));
        flow.set_journaling(true);
        flow.restore(Vec::<PacketId>::new(), Vec::new(), 5, Some(id(9)));
        let mut out = Vec::new();
        flow.offer(msg(1, 1, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        assert_eq!(out, vec![publish(10, msg(1, 1, QoS::AtLeastOnce), false)]);
        assert_eq!(
            flow.take_journal(),
            vec![FlowEvent::Queued {
                message_id: 6,
                packet_id: Some(id(10)),
                message: msg(1, 1, QoS::AtLeastOnce),
            }]
        );
    }

    #[test]
    fn queued_bytes_are_charged_to_the_core_budget_and_given_back() {
        use crate::queue_budget::{QueueBudget, QUEUE_FLOOR};
        // Offline: every message queues. 10 KiB messages: the floor is passed after 7.
        let budget = QueueBudget::new(QUEUE_FLOOR + 20_000);
        let mut flow = OutgoingFlow::new(limits(2, 1_000, 0));
        flow.set_budget(budget.clone());
        let mut out = Vec::new();
        let mut accepted = 0;
        let refused = loop {
            match flow.offer(msg(1, 10_240, QoS::AtLeastOnce), false, &mut out) {
                Ok(()) => accepted += 1,
                Err(full) => break full,
            }
        };
        assert_eq!(refused, QueueFull::Budget);
        assert_eq!(budget.used(), flow.queued_bytes());
        assert_eq!(flow.queued_bytes(), accepted * (3 + 10_240));
        assert!(flow.queued_bytes() >= QUEUE_FLOOR);

        // Another session of the core with a short queue still takes messages.
        let mut other = OutgoingFlow::new(limits(2, 1_000, 0));
        other.set_budget(budget.clone());
        assert!(other
            .offer(msg(2, 10_240, QoS::AtLeastOnce), false, &mut out)
            .is_ok());

        // Messages moving into the window leave the account; so do cleared and dropped ones.
        flow.resume(&mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(budget.used(), flow.queued_bytes() + other.queued_bytes());
        other.clear();
        assert_eq!(budget.used(), flow.queued_bytes());
        drop(flow);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn window_fills_to_max_inflight_then_queues() {
        let mut flow = OutgoingFlow::new(limits(2, 10, 0));
        let mut out = Vec::new();
        for n in 1..=4 {
            flow.offer(msg(n, 1, QoS::AtLeastOnce), true, &mut out)
                .unwrap();
        }
        assert_eq!(
            take(&mut out),
            vec![
                publish(1, msg(1, 1, QoS::AtLeastOnce), false),
                publish(2, msg(2, 1, QoS::AtLeastOnce), false),
            ]
        );
        assert_eq!(flow.inflight_len(), 2);
        assert_eq!(flow.queued_len(), 2);
        assert_eq!(flow.queued_bytes(), 2 * 4);
    }

    #[test]
    fn acks_release_queued_messages_in_offer_order() {
        let mut flow = OutgoingFlow::new(limits(2, 10, 0));
        let mut out = Vec::new();
        for n in 1..=5 {
            flow.offer(msg(n, 1, QoS::AtLeastOnce), true, &mut out)
                .unwrap();
        }
        take(&mut out);

        flow.on_puback(id(2), &mut out).unwrap();
        assert_eq!(
            take(&mut out),
            vec![publish(3, msg(3, 1, QoS::AtLeastOnce), false)]
        );
        flow.on_puback(id(1), &mut out).unwrap();
        assert_eq!(
            take(&mut out),
            vec![publish(4, msg(4, 1, QoS::AtLeastOnce), false)]
        );
        flow.on_puback(id(3), &mut out).unwrap();
        assert_eq!(
            take(&mut out),
            vec![publish(5, msg(5, 1, QoS::AtLeastOnce), false)]
        );
        flow.on_puback(id(4), &mut out).unwrap();
        flow.on_puback(id(5), &mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(flow.inflight_len(), 0);
        assert_eq!(flow.queued_len(), 0);
        assert_eq!(flow.queued_bytes(), 0);
    }

    #[test]
    fn qos2_full_cycle_frees_the_slot_only_on_pubcomp() {
        let mut flow = OutgoingFlow::new(limits(1, 10, 0));
        let mut out = Vec::new();
        flow.offer(msg(1, 2, QoS::ExactlyOnce), true, &mut out)
            .unwrap();
        flow.offer(msg(2, 2, QoS::ExactlyOnce), true, &mut out)
            .unwrap();
        assert_eq!(
            take(&mut out),
            vec![publish(1, msg(1, 2, QoS::ExactlyOnce), false)]
        );
        assert_eq!(flow.queued_len(), 1);

        flow.on_pubrec(id(1), &mut out).unwrap();
        assert_eq!(take(&mut out), vec![FlowAction::PubRel(id(1))]);
        assert_eq!(
            flow.inflight_len(),
            1,
            "the id stays in flight until PUBCOMP"
        );
        assert_eq!(flow.queued_len(), 1);

        flow.on_pubcomp(id(1), &mut out).unwrap();
        assert_eq!(
            take(&mut out),
            vec![publish(2, msg(2, 2, QoS::ExactlyOnce), false)]
        );
        flow.on_pubrec(id(2), &mut out).unwrap();
        flow.on_pubcomp(id(2), &mut out).unwrap();
        assert_eq!(take(&mut out), vec![FlowAction::PubRel(id(2))]);
        assert_eq!(flow.inflight_len(), 0);
        assert_eq!(flow.queued_len(), 0);
    }

    #[test]
    fn repeated_pubrec_is_answered_with_pubrel_again() {
        let mut flow = OutgoingFlow::new(limits(1, 10, 0));
        let mut out = Vec::new();
        flow.offer(msg(1, 2, QoS::ExactlyOnce), true, &mut out)
            .unwrap();
        take(&mut out);
        flow.on_pubrec(id(1), &mut out).unwrap();
        flow.on_pubrec(id(1), &mut out).unwrap();
        assert_eq!(
            take(&mut out),
            vec![FlowAction::PubRel(id(1)), FlowAction::PubRel(id(1))]
        );
        assert_eq!(flow.inflight_len(), 1);
        flow.on_pubcomp(id(1), &mut out).unwrap();
        assert_eq!(flow.inflight_len(), 0);
    }

    #[test]
    fn resume_resends_in_flight_in_first_sent_order_then_releases_queue() {
        let mut flow = OutgoingFlow::new(limits(4, 10, 0));
        let mut out = Vec::new();
        flow.offer(msg(1, 1, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        flow.offer(msg(2, 1, QoS::ExactlyOnce), true, &mut out)
            .unwrap();
        flow.offer(msg(3, 1, QoS::ExactlyOnce), true, &mut out)
            .unwrap();
        flow.offer(msg(4, 1, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        take(&mut out);
        flow.on_pubrec(id(2), &mut out).unwrap();
        take(&mut out);
        // The client disconnects; more messages arrive while it is away.
        flow.offer(msg(5, 1, QoS::AtLeastOnce), false, &mut out)
            .unwrap();
        flow.offer(msg(6, 1, QoS::ExactlyOnce), false, &mut out)
            .unwrap();
        assert!(out.is_empty());

        flow.resume(&mut out);
        assert_eq!(
            take(&mut out),
            vec![
                publish(1, msg(1, 1, QoS::AtLeastOnce), true),
                FlowAction::PubRel(id(2)),
                publish(3, msg(3, 1, QoS::ExactlyOnce), true),
                publish(4, msg(4, 1, QoS::AtLeastOnce), true),
            ]
        );
        assert_eq!(flow.queued_len(), 2, "the window is still full");

        flow.on_puback(id(1), &mut out).unwrap();
        assert_eq!(
            take(&mut out),
            vec![publish(5, msg(5, 1, QoS::AtLeastOnce), false)]
        );

        // A second reconnect: id 5 now comes last, after the older ones.
        flow.resume(&mut out);
        assert_eq!(
            take(&mut out),
            vec![
                FlowAction::PubRel(id(2)),
                publish(3, msg(3, 1, QoS::ExactlyOnce), true),
                publish(4, msg(4, 1, QoS::AtLeastOnce), true),
                publish(5, msg(5, 1, QoS::AtLeastOnce), true),
            ]
        );
    }

    #[test]
    fn resume_orders_a_reused_id_by_its_latest_send() {
        let mut flow = OutgoingFlow::new(limits(3, 10, 0));
        let mut out = Vec::new();
        for n in 1..=3 {
            flow.offer(msg(n, 1, QoS::AtLeastOnce), true, &mut out)
                .unwrap();
        }
        flow.on_puback(id(2), &mut out).unwrap();
        flow.active().next_packet_id = 2;
        flow.offer(msg(4, 1, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        assert_eq!(
            out.last(),
            Some(&publish(2, msg(4, 1, QoS::AtLeastOnce), false))
        );
        take(&mut out);

        flow.resume(&mut out);
        assert_eq!(
            take(&mut out),
            vec![
                publish(1, msg(1, 1, QoS::AtLeastOnce), true),
                publish(3, msg(3, 1, QoS::AtLeastOnce), true),
                publish(2, msg(4, 1, QoS::AtLeastOnce), true),
            ]
        );
    }

    #[test]
    fn resume_with_nothing_pending_sends_nothing() {
        let mut flow = OutgoingFlow::new(limits(2, 10, 0));
        let mut out = Vec::new();
        flow.resume(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn offline_offers_queue_even_when_the_window_is_empty() {
        let mut flow = OutgoingFlow::new(limits(2, 10, 0));
        let mut out = Vec::new();
        for n in 1..=3 {
            flow.offer(msg(n, 1, QoS::AtLeastOnce), false, &mut out)
                .unwrap();
        }
        assert!(out.is_empty());
        assert_eq!(flow.inflight_len(), 0);
        assert_eq!(flow.queued_len(), 3);

        flow.resume(&mut out);
        assert_eq!(
            take(&mut out),
            vec![
                publish(1, msg(1, 1, QoS::AtLeastOnce), false),
                publish(2, msg(2, 1, QoS::AtLeastOnce), false),
            ]
        );
        assert_eq!(flow.queued_len(), 1);
    }

    #[test]
    fn online_offer_goes_behind_messages_already_queued() {
        let mut flow = OutgoingFlow::new(limits(2, 10, 0));
        let mut out = Vec::new();
        flow.offer(msg(1, 1, QoS::AtLeastOnce), false, &mut out)
            .unwrap();
        flow.offer(msg(2, 1, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        assert_eq!(
            take(&mut out),
            vec![
                publish(1, msg(1, 1, QoS::AtLeastOnce), false),
                publish(2, msg(2, 1, QoS::AtLeastOnce), false),
            ]
        );
        assert_eq!(flow.queued_len(), 0);
    }

    #[test]
    fn queue_message_limit_accepts_the_limit_and_refuses_one_more() {
        let mut flow = OutgoingFlow::new(limits(1, 3, 0));
        let mut out = Vec::new();
        flow.offer(msg(0, 1, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        for n in 1..=3 {
            flow.offer(msg(n, 1, QoS::AtLeastOnce), true, &mut out)
                .unwrap();
        }
        assert_eq!(flow.queued_len(), 3);
        assert_eq!(
            flow.offer(msg(4, 1, QoS::AtLeastOnce), true, &mut out),
            Err(QueueFull::Messages)
        );
        assert_eq!(flow.queued_len(), 3);
        assert_eq!(flow.queued_bytes(), 3 * 4);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn the_queue_is_past_its_mark_from_half_its_limits() {
        let mut flow = OutgoingFlow::new(limits(1, 4, 100));
        assert!(!flow.past_mark(), "an unused flow");
        let mut out = Vec::new();
        for n in 0..=2 {
            flow.offer(msg(n, 1, QoS::AtLeastOnce), true, &mut out)
                .unwrap();
        }
        assert_eq!(flow.queued_len(), 2);
        assert!(flow.past_mark(), "half of max_queued_messages");
        let id = match &out[0] {
            FlowAction::Publish { packet_id, .. } => *packet_id,
            other => panic!("expected a PUBLISH, got {other:?}"),
        };
        flow.on_puback(id, &mut out).unwrap();
        assert_eq!(flow.queued_len(), 1);
        assert!(
            !flow.past_mark(),
            "an acknowledgement let one into the window"
        );
        let mut by_bytes = OutgoingFlow::new(limits(1, 100, 100));
        by_bytes
            .offer(msg(0, 1, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        by_bytes
            .offer(msg(1, 49, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        assert!(by_bytes.past_mark(), "half of max_queued_bytes");
        let mut none_queued = OutgoingFlow::new(limits(1, 0, 100));
        none_queued
            .offer(msg(0, 1, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        assert_eq!(
            none_queued.offer(msg(1, 1, QoS::AtLeastOnce), true, &mut out),
            Err(QueueFull::Messages)
        );
        assert!(
            !none_queued.past_mark(),
            "max_queued_messages = 0: nothing ever waits, so no mark is passed"
        );
    }

    #[test]
    fn queue_byte_limit_accepts_the_limit_and_refuses_one_more() {
        // Each message below is 3 (topic) + 7 (payload) = 10 bytes; in-flight ones do not count.
        let mut flow = OutgoingFlow::new(limits(1, 100, 30));
        let mut out = Vec::new();
        flow.offer(msg(0, 7, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        flow.offer(msg(1, 7, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        flow.offer(msg(2, 7, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        assert_eq!(flow.queued_bytes(), 20);
        assert_eq!(
            flow.offer(msg(3, 8, QoS::AtLeastOnce), true, &mut out),
            Err(QueueFull::Bytes),
            "31 bytes is one over the limit"
        );
        assert_eq!(flow.queued_bytes(), 20);
        flow.offer(msg(3, 7, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        assert_eq!(flow.queued_bytes(), 30, "exactly the limit is accepted");
        assert_eq!(
            flow.offer(msg(4, 0, QoS::AtLeastOnce), false, &mut out),
            Err(QueueFull::Bytes)
        );
        assert_eq!(flow.queued_len(), 3);

        flow.on_puback(id(1), &mut out).unwrap();
        assert_eq!(flow.queued_bytes(), 20, "released messages stop counting");
    }

    #[test]
    fn zero_byte_limit_means_unlimited_bytes() {
        let mut flow = OutgoingFlow::new(limits(1, 3, 0));
        let mut out = Vec::new();
        for n in 1..=3 {
            flow.offer(msg(n, 100_000, QoS::AtLeastOnce), false, &mut out)
                .unwrap();
        }
        assert_eq!(flow.queued_bytes(), 3 * 100_003);
    }

    #[test]
    fn zero_message_limit_refuses_anything_beyond_the_window() {
        let mut flow = OutgoingFlow::new(limits(1, 0, 0));
        let mut out = Vec::new();
        flow.offer(msg(1, 1, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        assert_eq!(
            flow.offer(msg(2, 1, QoS::AtLeastOnce), true, &mut out),
            Err(QueueFull::Messages)
        );
        assert_eq!(
            flow.offer(msg(3, 1, QoS::AtLeastOnce), false, &mut out),
            Err(QueueFull::Messages)
        );
    }

    #[test]
    fn zero_max_inflight_is_clamped_to_one() {
        let mut flow = OutgoingFlow::new(limits(0, 10, 0));
        let mut out = Vec::new();
        flow.offer(msg(1, 1, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        flow.offer(msg(2, 1, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        assert_eq!(flow.inflight_len(), 1);
        assert_eq!(flow.queued_len(), 1);
    }

    #[test]
    fn packet_ids_wrap_from_65535_to_1_skipping_ids_in_flight() {
        let mut flow = OutgoingFlow::new(limits(10, 10, 0));
        let mut out = Vec::new();
        flow.offer(msg(1, 1, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        flow.offer(msg(2, 1, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        flow.active().next_packet_id = u16::MAX - 1;
        flow.offer(msg(3, 1, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        flow.offer(msg(4, 1, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        flow.offer(msg(5, 1, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        let ids: Vec<u16> = take(&mut out)
            .into_iter()
            .map(|action| match action {
                FlowAction::Publish { packet_id, .. } => packet_id.get(),
                FlowAction::PubRel(packet_id) => packet_id.get(),
            })
            .collect();
        assert_eq!(ids, vec![1, 2, u16::MAX - 1, u16::MAX, 3]);
    }

    #[test]
    fn packet_ids_cycle_through_the_whole_space() {
        let mut flow = OutgoingFlow::new(limits(1, 10, 0));
        let mut out = Vec::new();
        flow.offer(msg(1, 1, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        let mut expected = 1u16;
        for _ in 0..=usize::from(u16::MAX) {
            let Some(FlowAction::Publish { packet_id, .. }) = out.pop() else {
                panic!("expected one PUBLISH");
            };
            assert_eq!(packet_id.get(), expected);
            flow.offer(msg(1, 1, QoS::AtLeastOnce), true, &mut out)
                .unwrap();
            flow.on_puback(packet_id, &mut out).unwrap();
            expected = expected.checked_add(1).unwrap_or(1);
        }
        assert!(active(&flow).send_order.len() <= 2 * flow.inflight_len() + STALE_SLACK);
    }

    #[test]
    fn a_full_65535_window_still_finds_every_id() {
        let mut flow = OutgoingFlow::new(limits(usize::MAX, 1, 0));
        let mut out = Vec::new();
        for _ in 0..u16::MAX {
            flow.offer(msg(1, 0, QoS::AtLeastOnce), true, &mut out)
                .unwrap();
        }
        assert_eq!(flow.inflight_len(), usize::from(u16::MAX));
        flow.offer(msg(2, 0, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        assert_eq!(flow.queued_len(), 1, "max_inflight is clamped to 65535");
        out.clear();
        flow.on_puback(id(40_000), &mut out).unwrap();
        assert_eq!(
            out,
            vec![publish(40_000, msg(2, 0, QoS::AtLeastOnce), false)]
        );
    }

    #[test]
    fn unknown_and_unexpected_acks_are_errors_that_change_nothing() {
        let mut flow = OutgoingFlow::new(limits(2, 10, 0));
        let mut out = Vec::new();
        flow.offer(msg(1, 1, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        flow.offer(msg(2, 1, QoS::ExactlyOnce), true, &mut out)
            .unwrap();
        flow.offer(msg(3, 1, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        take(&mut out);

        assert_eq!(
            flow.on_puback(id(9), &mut out),
            Err(FlowError::UnknownPacketId(id(9)))
        );
        assert_eq!(
            flow.on_pubrec(id(9), &mut out),
            Err(FlowError::UnknownPacketId(id(9)))
        );
        assert_eq!(
            flow.on_pubcomp(id(9), &mut out),
            Err(FlowError::UnknownPacketId(id(9)))
        );
        let expecting = |packet_id: u16, expected| FlowError::UnexpectedAck {
            packet_id: id(packet_id),
            expected,
        };
        assert_eq!(flow.on_pubrec(id(1), &mut out), Err(expecting(1, "PUBACK")));
        assert_eq!(
            flow.on_pubcomp(id(1), &mut out),
            Err(expecting(1, "PUBACK"))
        );
        assert_eq!(flow.on_puback(id(2), &mut out), Err(expecting(2, "PUBREC")));
        assert_eq!(
            flow.on_pubcomp(id(2), &mut out),
            Err(expecting(2, "PUBREC"))
        );
        flow.on_pubrec(id(2), &mut out).unwrap();
        take(&mut out);
        assert_eq!(
            flow.on_puback(id(2), &mut out),
            Err(expecting(2, "PUBCOMP"))
        );
        assert!(out.is_empty());
        assert_eq!(flow.inflight_len(), 2);
        assert_eq!(flow.queued_len(), 1);

        flow.resume(&mut out);
        assert_eq!(
            take(&mut out),
            vec![
                publish(1, msg(1, 1, QoS::AtLeastOnce), true),
                FlowAction::PubRel(id(2)),
            ]
        );
    }

    #[test]
    fn out_of_order_acks_keep_the_resend_list_bounded() {
        let mut flow = OutgoingFlow::new(limits(101, 10, 0));
        let mut out = Vec::new();
        for round in 0..50u16 {
            for _ in 0..100 {
                flow.offer(msg(1, 0, QoS::AtLeastOnce), true, &mut out)
                    .unwrap();
            }
            // Acknowledge all but the oldest, newest first, so no stale pair is at the front.
            let ids: Vec<PacketId> = take(&mut out)
                .into_iter()
                .filter_map(|action| match action {
                    FlowAction::Publish { packet_id, .. } => Some(packet_id),
                    FlowAction::PubRel(_) => None,
                })
                .collect();
            let keep = if round == 0 { 1 } else { 0 };
            for &packet_id in ids[keep..].iter().rev() {
                flow.on_puback(packet_id, &mut out).unwrap();
            }
            assert!(active(&flow).send_order.len() <= 2 * flow.inflight_len() + STALE_SLACK);
        }
        assert_eq!(flow.inflight_len(), 1);
        flow.resume(&mut out);
        assert_eq!(out, vec![publish(1, msg(1, 0, QoS::AtLeastOnce), true)]);
    }

    #[test]
    fn memory_grown_by_a_burst_is_given_back_once_drained() {
        let mut flow = OutgoingFlow::new(limits(1000, 1000, 0));
        let mut out = Vec::new();
        for _ in 0..1000 {
            flow.offer(msg(1, 0, QoS::AtLeastOnce), false, &mut out)
                .unwrap();
        }
        flow.resume(&mut out);
        assert_eq!(flow.inflight_len(), 1000);
        assert_eq!(active(&flow).queue.capacity(), 0);
        for action in take(&mut out) {
            if let FlowAction::Publish { packet_id, .. } = action {
                flow.on_puback(packet_id, &mut out).unwrap();
            }
        }
        assert_eq!(flow.inflight_len(), 0);
        assert!(active(&flow).inflight.capacity() <= SHRINK_THRESHOLD);
        assert!(active(&flow).send_order.capacity() <= SHRINK_THRESHOLD);
    }

    #[test]
    fn clear_discards_unacknowledged_and_queued_messages() {
        let mut flow = OutgoingFlow::new(limits(3, 10, 0));
        let mut out = Vec::new();
        for n in 1..=3 {
            flow.offer(msg(n, 1, QoS::ExactlyOnce), true, &mut out)
                .unwrap();
        }
        flow.offer(msg(4, 1, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        flow.offer(msg(5, 1, QoS::AtLeastOnce), false, &mut out)
            .unwrap();
        flow.on_pubrec(id(1), &mut out).unwrap();
        assert_eq!(
            flow.clear(),
            4,
            "ids 2 and 3 in flight, 2 queued; id 1 was received"
        );
        assert_eq!(flow.inflight_len(), 0);
        assert_eq!(flow.queued_len(), 0);
        assert_eq!(flow.queued_bytes(), 0);

        out.clear();
        flow.resume(&mut out);
        assert!(out.is_empty());
        flow.offer(msg(6, 1, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        assert_eq!(out, vec![publish(1, msg(6, 1, QoS::AtLeastOnce), false)]);
    }

    #[test]
    fn a_journal_records_every_change_and_restore_rebuilds_the_flow() {
        let mut flow = OutgoingFlow::new(limits(1, 10, 0));
        flow.set_journaling(true);
        let mut out = Vec::new();
        flow.offer(msg(1, 1, QoS::AtLeastOnce), true, &mut out)
            .unwrap();
        flow.offer(msg(2, 1, QoS::ExactlyOnce), true, &mut out)
            .unwrap();
        flow.on_puback(id(1), &mut out).unwrap();
        flow.on_pubrec(id(2), &mut out).unwrap();
        flow.on_pubrec(id(2), &mut out).unwrap();
        let acknowledged = |packet_id: u16, ack| FlowEvent::Acknowledged {
            packet_id: id(packet_id),
            ack,
        };
        assert_eq!(
            flow.take_journal(),
            vec![
                FlowEvent::Queued {
                    message_id: 1,
                    packet_id: Some(id(1)),
                    message: msg(1, 1, QoS::AtLeastOnce),
                },
                FlowEvent::Queued {
                    message_id: 2,
                    packet_id: None,
                    message: msg(2, 1, QoS::ExactlyOnce),
                },
                acknowledged(1, Acknowledgement::Puback),
                FlowEvent::Sent {
                    message_id: 2,
                    packet_id: id(2),
                },
                acknowledged(2, Acknowledgement::Pubrec),
            ]
        );
        assert!(flow.take_journal().is_empty());
        let (released, messages) = flow.held();
        assert_eq!(released, vec![id(2)]);
        assert!(messages.is_empty());

        let mut back = OutgoingFlow::new(limits(2, 10, 0));
        back.restore(
            [id(2)],
            vec![
                RestoredMessage {
                    message_id: 5,
                    packet_id: Some(id(3)),
                    message: msg(5, 1, QoS::AtLeastOnce),
                },
                RestoredMessage {
                    message_id: 6,
                    packet_id: None,
                    message: msg(6, 1, QoS::AtLeastOnce),
                },
            ],
            6,
            Some(id(3)),
        );
        assert!(!back.has_journal_events(), "a restore journals nothing");
        out.clear();
        back.resume(&mut out);
        assert_eq!(
            take(&mut out),
            vec![
                FlowAction::PubRel(id(2)),
                publish(3, msg(5, 1, QoS::AtLeastOnce), true),
            ]
        );
        assert_eq!(back.queued_len(), 1, "the window of 2 is full");
        back.set_journaling(true);
        back.on_pubcomp(id(2), &mut out).unwrap();
        back.offer(msg(7, 1, QoS::AtLeastOnce), false, &mut out)
            .unwrap();
        assert_eq!(
            back.take_journal(),
            vec![
                acknowledged(2, Acknowledgement::Pubcomp),
                FlowEvent::Sent {
                    message_id: 6,
                    packet_id: id(4),
                },
                FlowEvent::Queued {
                    message_id: 7,
                    packet_id: None,
                    message: msg(7, 1, QoS::AtLeastOnce),
                },
            ]
        );
    }

    #[test]
    fn errors_display_their_cause() {
        assert!(QueueFull::Messages
            .to_string()
            .contains("max_queued_messages"));
        assert!(QueueFull::Bytes.to_string().contains("max_queued_bytes"));
        let err = FlowError::UnexpectedAck {
            packet_id: id(5),
            expected: "PUBREC",
        };
        assert_eq!(
            err.to_string(),
            "unexpected acknowledgement for packet id 5: expected PUBREC"
        );
        assert!(FlowError::UnknownPacketId(id(5)).to_string().contains('5'));
    }

    #[test]
    fn limits_kept_in_32_bits_saturate() {
        let huge = FlowLimits {
            max_inflight: usize::MAX,
            max_queued_messages: 1_000,
            max_queued_bytes: usize::MAX,
        };
        let back = FlowLimits::from(UnusedLimits::from(huge));
        assert_eq!(back.max_inflight, u32::MAX as usize);
        assert_eq!(back.max_queued_messages, 1_000);
        assert_eq!(back.max_queued_bytes, u32::MAX as usize);
    }

    #[test]
    fn transferable_messages_are_the_unsent_ones_and_qos1_in_flight() {
        let group = crate::topic::TopicFilter::try_from("$share/g/t/#").unwrap();
        let mut flow = OutgoingFlow::new(limits(3, 10, 0));
        let mut ordinary = OutgoingFlow::new(limits(3, 10, 0));
        assert_eq!(flow.transferable().count(), 0);
        let mut out = Vec::new();
        // In flight: a QoS 2 one released by PUBREC, a QoS 2 one sent, a QoS 1 one sent;
        // then two queued behind the full window.
        for (n, qos) in [
            (1, QoS::ExactlyOnce),
            (2, QoS::ExactlyOnce),
            (3, QoS::AtLeastOnce),
            (4, QoS::ExactlyOnce),
            (5, QoS::AtLeastOnce),
        ] {
            let message = msg(n, 1, qos);
            flow.offer(message.through_shared_group(&group), true, &mut out)
                .unwrap();
            ordinary.offer(message, true, &mut out).unwrap();
        }
        flow.on_pubrec(id(1), &mut out).unwrap();
        let left: Vec<u8> = flow
            .transferable()
            .map(|message| message.payload[0])
            .collect();
        assert_eq!(left, [3, 4, 5]);
        assert_eq!(
            ordinary.transferable().count(),
            0,
            "no shared copy: nothing to hand on"
        );
    }
}
