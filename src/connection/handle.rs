//! The part of a connection that the rest of its shard may touch: its outgoing queue, the
//! wake-up of its writer, and the request to close it.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::Arc;

use super::notify::Notify;
use super::outbound::{Frame, OutboundQueue, QueueError};
use crate::protocol::{EncodedPublish, ProtocolVersion};
use crate::session::FlowAction;
use crate::shard::ConnId;

/// Why a connection ended; printed as the `reason=` of the disconnect log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent DISCONNECT.
    ClientDisconnected,
    /// The socket closed or failed.
    ConnectionLost(String),
    /// Nothing arrived within 1.5 times the keep-alive.
    KeepAliveTimeout,
    /// The client broke the protocol (malformed or out-of-order packet, broken limit).
    ProtocolError(String),
    /// Another connection with the same client id took the session.
    TakenOver,
    /// The broker is stopping.
    ShuttingDown,
    /// The client stopped reading while the broker had to send it acknowledgements.
    NotReading,
}

impl CloseReason {
    /// Whether the will message must be published (every end but DISCONNECT and shutdown).
    pub fn publishes_will(&self) -> bool {
        !matches!(
            self,
            CloseReason::ClientDisconnected | CloseReason::ShuttingDown
        )
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::ClientDisconnected => f.write_str("client disconnected"),
            CloseReason::ConnectionLost(why) => write!(f, "connection lost: {why}"),
            CloseReason::KeepAliveTimeout => f.write_str("keep-alive timeout"),
            CloseReason::ProtocolError(why) => write!(f, "protocol error: {why}"),
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

/// A live connection as seen by the shard's fan-out and session code.
pub struct ConnHandle {
    /// The connection's broker-wide id.
    pub id: ConnId,
    /// The client id it connected with.
    pub client_id: Arc<str>,
    /// Its protocol version (decides the wire layout of what it is sent).
    pub protocol: ProtocolVersion,
    outbound: RefCell<OutboundQueue>,
    writer_wake: Notify,
    close_wake: Notify,
    close_reason: RefCell<Option<CloseReason>>,
    /// Whether the last message offered to this client was dropped (it is lagging now).
    lagging: Cell<bool>,
    /// QoS 1/2 messages dropped because the session queue was full (QoS 0 drops are counted
    /// by the outgoing queue).
    flow_dropped: Cell<u64>,
    /// Shard clock ticks of silence after which the client is gone (0 = no keep-alive).
    keep_alive_ticks: u32,
    /// The shard clock tick in which the client was last heard from.
    last_heard: Cell<u32>,
}

impl ConnHandle {
    /// A handle whose queue holds at most `max_messages` QoS 0 publishes and `max_bytes`.
    pub fn new(
        id: ConnId,
        client_id: Arc<str>,
        protocol: ProtocolVersion,
        max_messages: usize,
        max_bytes: usize,
        keep_alive: KeepAlive,
    ) -> Self {
        Self {
            id,
            client_id,
            protocol,
            outbound: RefCell::new(OutboundQueue::new(max_messages, max_bytes)),
            writer_wake: Notify::default(),
            close_wake: Notify::default(),
            close_reason: RefCell::new(None),
            lagging: Cell::new(false),
            flow_dropped: Cell::new(0),
            keep_alive_ticks: keep_alive.ticks,
            last_heard: Cell::new(keep_alive.now),
        }
    }

    /// Records that the client sent something during shard clock tick `now`.
    pub fn heard(&self, now: u32) {
        self.last_heard.set(now);
    }

    /// Whether the client has been silent for longer than its keep-alive allows at shard
    /// clock tick `now`. Never early: the tick of the last packet counts as silence only once
    /// it is over.
    pub fn keep_alive_expired(&self, now: u32) -> bool {
        self.keep_alive_ticks != 0
            && now.wrapping_sub(self.last_heard.get()) > self.keep_alive_ticks
    }

    /// Queues a packet the protocol requires and wakes the writer; a client that does not
    /// read at all is closed instead.
    pub fn send(&self, frame: Frame) {
        let pushed = self.outbound.borrow_mut().push(frame);
        match pushed {
            Ok(()) => self.writer_wake.notify(),
            Err(_) => self.close(CloseReason::NotReading),
        }
    }

    /// Queues a QoS 0 publish, or drops it when the client's queue is full. Returns whether it
    /// was queued.
    pub fn send_droppable(&self, frame: Frame) -> bool {
        let pushed = self.outbound.borrow_mut().push_droppable(frame);
        match pushed {
            Ok(()) => {
                self.lagging.set(false);
                self.writer_wake.notify();
                true
            }
            Err(QueueError::Full | QueueError::NotReading) => {
                self.note_lagging();
                false
            }
        }
    }

    /// Records a QoS 1/2 message dropped because the client's session queue was full.
    pub fn record_flow_drop(&self) {
        self.flow_dropped.set(self.flow_dropped.get() + 1);
        self.note_lagging();
    }

    /// Records that a message for this client was queued: it is keeping up again.
    pub fn record_queued(&self) {
        self.lagging.set(false);
    }

    /// Logs once per episode when the client starts losing messages.
    fn note_lagging(&self) {
        if !self.lagging.replace(true) {
            tracing::warn!(client_id = %self.client_id, "dropping messages for slow client");
        }
    }

    /// Queues what a session flow asked for. `shared` is the encoding of the message for its
    /// layout when the caller has one (fan-out); otherwise it is encoded here.
    pub fn send_flow_action(&self, action: FlowAction, shared: Option<&EncodedPublish>) {
        match action {
            FlowAction::Publish {
                packet_id,
                message,
                dup,
            } => {
                let packet = match shared {
                    Some(packet) => packet.clone(),
                    None => EncodedPublish::new(
                        &message.topic,
                        &message.payload,
                        message.qos,
                        message.retain,
                    ),
                };
                self.send(Frame::Publish {
                    packet,
                    packet_id: Some(packet_id),
                    dup,
                });
            }
            FlowAction::PubRel(id) => self.send(Frame::ack(0x62, id)),
        }
    }

    /// Asks the connection's tasks to end (the first reason given wins).
    pub fn close(&self, reason: CloseReason) {
        let mut current = self.close_reason.borrow_mut();
        if current.is_none() {
            *current = Some(reason);
        }
        drop(current);
        self.close_wake.notify();
        self.writer_wake.notify();
    }

    /// The reason given to [`ConnHandle::close`], if any.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close_reason.borrow().clone()
    }

    /// Resolves when someone asks the connection to close.
    pub async fn closed(&self) {
        self.close_wake.notified().await;
    }

    /// Resolves when there is something to write (or the connection is closing).
    pub async fn writable(&self) {
        self.writer_wake.notified().await;
    }

    /// Runs `f` on the outgoing queue.
    pub fn with_outbound<T>(&self, f: impl FnOnce(&mut OutboundQueue) -> T) -> T {
        f(&mut self.outbound.borrow_mut())
    }

    /// Messages (any QoS) dropped for this client so far.
    pub fn dropped(&self) -> u64 {
        self.outbound.borrow().dropped() + self.flow_dropped.get()
    }
}
