//! One client connection: the CONNECT handshake, the read/decode loop with its keep-alive, the
//! handling of each packet, and the writing of the connection's queue.
//!
//! An established connection is one task of its shard, which also holds its state: it decodes
//! every complete packet in its buffer in one pass and acts on it (routing a PUBLISH, answering
//! with acknowledgements that it queues), and between packets and while it waits it writes
//! what was queued for the client, everything gathered since the last write in one call
//! (`wire`: reads and writes are polled side by side, so neither holds up the other). An
//! error in a connection ends that connection only; an MQTT 5 client is told why with a
//! DISCONNECT carrying the reason code (`handle`).
//!
//! Each connection keeps its protocol version end to end: `handshake` accepts 3.1, 3.1.1 and 5
//! on the same listener and answers in the client's version, MQTT 5 packets are handled by the
//! same code as their 3.1.1 counterparts (their properties becoming the message's extras, their
//! topic aliases resolved by `topic_alias`), and what a client is sent is encoded for it (with
//! the topic aliases an MQTT 5 client accepts, chosen by `outgoing_alias` as it is written).

mod ack_order;
mod handle;
mod handshake;
mod notify;
mod outbound;
mod outgoing_alias;
mod peer_addr;
mod relay;
mod stream;
mod topic_alias;
mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::timer::Timer;
use smallvec::SmallVec;

pub use handle::{CloseReason, ConnHandle, FlowSent, KeepAlive, Rest};
pub use notify::{Broadcast, Notify};
pub use outbound::{Frame, OutboundQueue, QueueError, MAX_WRITE_BATCH};
pub use outgoing_alias::OutgoingAliases;
pub use peer_addr::PeerAddr;
pub use relay::{MovedTransport, RelayEnds, RelayStream};

use crate::auth::SubscriptionAccess;
use crate::listener::{ClientAccess, ListenerState, ListenerTicket};
use crate::message::{Message, MessageExtras};
use crate::metrics::{Counter, Latency};
use crate::protocol::{
    self, Ack, AckProperties, ConnAck, ConnectReturnCode, ConnectV5, Disconnect, LastWill, Packet,
    PacketId, ProtocolVersion, Publish, PublishV5, QoS, ReasonCode, RetainHandling, SubAck,
    SubAckReturnCode, SubAckV5, SubscriptionId, SubscriptionOptions, TopicFilter, UnsubAck,
    WillProperties,
};
use crate::router::{shared_filter, Routed};
use crate::session::{FlowAction, FlowError, OutgoingFlow, Subscription};
use crate::shard::{Adoption, Counters, Grant, SessionKey, Shard, ShardMsg};
use crate::topic::TopicName;
use crate::transport::Transport;
use ack_order::{AckOrder, Answers};
use handshake::{accepting_connack, check_connect, read_connect, refuse, ConnectFailure, Terms};
use stream::{ReadHalf, WriteHalf};
use topic_alias::TopicAliases;
use wire::{Event, Wire};

/// Longest wait for the CONNECT packet after a connection is accepted.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait for queued packets to be written once a connection is closing.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Bytes requested from the socket per read when no large packet is pending. A read that
/// returns this many found the socket full: what makes a client busy (`ConnHandle::heard`).
const READ_CHUNK: usize = 4096;

// A read between packets goes through the stack buffer: it must be able to return a chunk.
const _: () = assert!(stream::STACK_READ == READ_CHUNK);

/// A listener's share of the connection cap, counted across every core.
pub struct ConnectionSlots {
    /// Most simultaneous connections (0 = unlimited).
    pub max: usize,
    /// Connections open now, on every core.
    pub open: Arc<AtomicUsize>,
}

/// Holds one of a listener's connection slots; gives it back when dropped.
#[derive(Debug)]
pub struct SlotGuard {
    open: Arc<AtomicUsize>,
}

impl ConnectionSlots {
    /// Takes a slot for a new connection; also says whether the connection exceeds the cap
    /// (it is then refused after its CONNECT).
    pub fn acquire(&self) -> (SlotGuard, bool) {
        let before = self.open.fetch_add(1, Ordering::Relaxed);
        let guard = SlotGuard {
            open: self.open.clone(),
        };
        (guard, self.max != 0 && before >= self.max)
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one TCP connection accepted on `listener`: runs its transport's handshake (TLS,
/// WebSocket) and the MQTT one, then hands it to a task of its own (see `spawn_established`)
/// or to the core that holds its session.
pub async fn serve(shard: Rc<Shard>, listener: Rc<ListenerState>, stream: TcpStream) {
    if let Some(established) = handshake(shard.clone(), listener, stream).await {
        spawn_established(establish(shard, established));
    }
}

/// Parks a new plain TCP connection's socket, if its core parks (see `transport::parked`):
/// a connection starts parked, so that one whose client stays quiet never holds glommio's
/// readiness poll, whose memory, once held by every connection, would stay with the process.
fn park_new(shard: &Shard, transport: &mut Transport) {
    if let Some(lot) = shard.parking_lot() {
        if let Err(error) = transport.park(lot) {
            tracing::debug!(%error, "cannot park a new connection");
        }
    }
}

/// Opens the listener's transport on `stream`, bounded by [`CONNECT_TIMEOUT`].
async fn open_transport(
    listener: &ListenerState,
    stream: TcpStream,
    addr: SocketAddr,
) -> Option<crate::transport::Accepted> {
    let accepted = futures_lite::future::or(
        async { Some(listener.acceptor.accept(stream).await) },
        async {
            Timer::new(CONNECT_TIMEOUT).await;
            None
        },
    )
    .await;
    let protocol = listener.config.protocol;
    match accepted {
        Some(Ok(accepted)) => Some(accepted),
        Some(Err(error)) => {
            tracing::warn!(%addr, listener = %protocol, reason = %error, "closing connection");
            None
        }
        None => {
            tracing::warn!(%addr, listener = %protocol, reason = "no handshake within 10 s", "closing connection");
            None
        }
    }
}

/// Reads and checks the CONNECT and claims the session: `Some` when this core is to serve
/// the connection, `None` when it was refused, closed or handed to another core.
async fn handshake(
    shard: Rc<Shard>,
    listener: Rc<ListenerState>,
    stream: TcpStream,
) -> Option<Established> {
    let addr = match stream.peer_addr() {
        Ok(addr) => addr,
        Err(error) => {
            tracing::debug!(%error, "connection lost before it was served");
            return None;
        }
    };
    let (ticket, admission) = listener.admit(addr.ip());
    let accepted = open_transport(&listener, stream, addr).await?;
    let certificate_name = accepted.client_certificate_cn;
    let mut transport = accepted.transport;
    park_new(&shard, &mut transport);
    let (mut reader, mut writer) = stream::split(transport);
    let mut buf = BytesMut::new();
    let max_packet_size = shard.config.limits.max_packet_size;

    let connect = match read_connect(&mut reader, &mut buf, max_packet_size).await {
        Ok(connect) => connect,
        Err(ConnectFailure::Refuse {
            protocol,
            reason,
            why,
        }) => {
            tracing::warn!(%addr, client_id = "", reason = %why, "closing connection");
            refuse(&mut writer, protocol, reason).await;
            return None;
        }
        Err(ConnectFailure::Close(reason)) => {
            tracing::warn!(%addr, client_id = "", %reason, "closing connection");
            return None;
        }
    };
    let protocol = connect.connect.protocol;

    if let Some(reason) = check_connect(&shard, &connect, admission) {
        tracing::info!(
            %addr,
            client_id = %connect.connect.client_id,
            code = ?reason,
            "connection refused"
        );
        refuse(&mut writer, protocol, reason).await;
        return None;
    }
    let client_id: Arc<str> = if connect.connect.client_id.is_empty() {
        assigned_client_id(&shard)
    } else {
        Arc::from(connect.connect.client_id.as_str())
    };
    let fields = &connect.connect;
    let auth_started = Instant::now();
    let authenticated = listener
        .authenticate(
            &client_id,
            fields.username.as_deref(),
            fields.password.as_deref(),
            certificate_name.as_deref(),
        )
        .await;
    shard
        .metrics
        .record(Latency::AuthCheck, auth_started.elapsed());
    let identity = match authenticated {
        Ok(identity) => identity,
        Err(refusal) => {
            tracing::info!(
                %addr,
                %client_id,
                username = fields.username.as_deref().unwrap_or(""),
                code = ?refusal.reason_code(),
                "connection refused"
            );
            refuse(&mut writer, protocol, refusal.reason_code()).await;
            return None;
        }
    };
    let conn_id = shard.new_conn_id();
    // A clean session resumes nothing: it connects without waiting for its claim.
    let eager = connect.connect.clean_session;
    let grant = if eager {
        shard.claim_session_eagerly(client_id.clone(), conn_id);
        Some(Grant::New)
    } else {
        shard.claim_session(client_id.clone(), conn_id, false).await
    };
    let resume = match grant {
        Some(Grant::New) => false,
        Some(Grant::Resume(holder)) if holder == shard.id => true,
        Some(Grant::Resume(holder)) => {
            // The session lives on another core: the connection goes there, as its socket
            // when it is plain TCP, else as a relay of its transport's bytes.
            let moved = match reader.duplicate_socket() {
                Ok(socket) => Ok(MovedTransport::Socket(socket)),
                Err(error) if error.kind() == std::io::ErrorKind::Unsupported => Err(None),
                Err(error) => Err(Some(error)),
            };
            let moved = match moved {
                Ok(socket) => {
                    drop(reader);
                    drop(writer);
                    socket
                }
                Err(None) => MovedTransport::Relay(relay::start(reader, writer)),
                Err(Some(error)) => {
                    tracing::warn!(%addr, %client_id, %error, "cannot hand the connection to its session's core");
                    shard.peers.post(
                        holder,
                        ShardMsg::Abandon {
                            client_id,
                            conn: conn_id,
                        },
                    );
                    refuse(&mut writer, protocol, ReasonCode::ServerUnavailable).await;
                    return None;
                }
            };
            let adoption = Adoption {
                client_id,
                conn: conn_id,
                transport: moved,
                buffered: buf,
                connect,
                addr,
                ticket,
                listener: listener.index,
                identity,
            };
            shard
                .peers
                .send(holder, ShardMsg::Adopt(Box::new(adoption)))
                .await;
            return None;
        }
        Some(Grant::Superseded) => {
            tracing::info!(%addr, %client_id, "connection superseded by a newer one with the same client id");
            return None;
        }
        None => {
            tracing::warn!(%addr, %client_id, "session not available in time");
            refuse(&mut writer, protocol, ReasonCode::ServerUnavailable).await;
            return None;
        }
    };
    let access = identity.map(|identity| Rc::new(ClientAccess { identity, listener }));
    Some(Established {
        reader,
        writer,
        buf,
        connect,
        client_id,
        conn_id,
        addr,
        ticket,
        access,
        resume,
        eager,
    })
}

/// Serves a connection accepted by another core and handed to this one, which holds its
/// session.
pub fn serve_adopted(shard: Rc<Shard>, adoption: Adoption) {
    let transport = match adoption.transport {
        MovedTransport::Socket(socket) => {
            // SAFETY: the descriptor is owned by the adoption and handed over whole; nothing
            // else uses or closes it.
            Transport::Tcp(Box::new(unsafe {
                TcpStream::from_raw_fd(socket.into_raw_fd())
            }))
        }
        MovedTransport::Relay(ends) => {
            Transport::Relay(Box::new(RelayStream::new(ends, adoption.addr)))
        }
    };
    let mut transport = transport;
    park_new(&shard, &mut transport);
    let (reader, writer) = stream::split(transport);
    let listener = shard.listeners.borrow().get(adoption.listener).cloned();
    let access = match (adoption.identity, listener) {
        (Some(identity), Some(listener)) => Some(Rc::new(ClientAccess { identity, listener })),
        _ => None,
    };
    let established = establish(
        shard,
        Established {
            reader,
            writer,
            buf: adoption.buffered,
            connect: adoption.connect,
            client_id: adoption.client_id,
            conn_id: adoption.conn,
            addr: adoption.addr,
            ticket: adoption.ticket,
            access,
            resume: true,
            eager: false,
        },
    );
    spawn_established(established);
}

/// A connection whose CONNECT was accepted, about to be bound to its session.
struct Established {
    reader: ReadHalf,
    writer: WriteHalf,
    buf: BytesMut,
    connect: Box<ConnectV5>,
    client_id: Arc<str>,
    conn_id: crate::shard::ConnId,
    addr: SocketAddr,
    ticket: ListenerTicket,
    access: Option<Rc<ClientAccess>>,
    resume: bool,
    /// The claim was sent without waiting (a clean session).
    eager: bool,
}

/// Serves an established connection until it ends, in a task of its own.
///
/// Every idle connection holds this task for its lifetime, so it holds nothing else: the
/// handshake ran in a task already gone, and the connection's state and transport live in the
/// task itself (an async block keeps what it captures once, where an async fn would keep a
/// by-value argument twice).
fn spawn_established((mut connection, mut wire): (Connection, Wire)) {
    glommio::spawn_local(async move {
        let reason = connection.run(&mut wire).await;
        // Boxed: the close path is large and runs once (see `serve`).
        Box::pin(connection.finish(wire, reason)).await;
    })
    .detach();
}

/// Binds the connection to its session and answers CONNACK; returns it with its transport.
fn establish(shard: Rc<Shard>, established: Established) -> (Connection, Wire) {
    let Established {
        reader,
        writer,
        buf,
        connect,
        client_id,
        conn_id,
        addr,
        ticket,
        access,
        resume,
        eager,
    } = established;
    let limits = &shard.config.limits;
    let protocol = connect.connect.protocol;
    let terms = Terms::negotiate(&shard.config, &connect);
    let conn = Rc::new(
        ConnHandle::new(
            conn_id,
            client_id.clone(),
            protocol,
            limits.max_queued_messages,
            limits.max_queued_bytes,
            shard.keep_alive(terms.keep_alive),
            terms.client_max_packet_size,
            terms.topic_alias_max,
            shard.metrics.clone(),
        )
        .with_core_queues(shard.queue_budget.clone(), shard.pacing.clone()),
    );
    shard.metrics.increment(Counter::Connects);
    shard.metrics.increment(Counter::MessagesReceived);
    let (key, session_present) =
        shard.install_session(&conn, terms.session_expiry, resume, eager, access.clone());
    shard.connections.borrow_mut().insert(conn_id, conn.clone());
    let mut connack = BytesMut::new();
    match protocol {
        ProtocolVersion::V5 => {
            let assigned = connect.connect.client_id.is_empty().then_some(&*client_id);
            let mut packet = Packet::ConnAckV5(accepting_connack(
                &shard.config,
                &connect,
                &terms,
                assigned,
                session_present,
            ));
            // Only diagnostics could be dropped, and an accepting CONNACK has none.
            packet.fit_within(conn.max_packet_size());
            protocol::encode(&packet, &mut connack);
        }
        ProtocolVersion::V3_1 | ProtocolVersion::V3_1_1 => ConnAck {
            // MQTT 3.1 has no session-present flag.
            session_present: session_present && protocol == ProtocolVersion::V3_1_1,
            code: ConnectReturnCode::Accepted,
        }
        .encode(&mut connack),
    }
    conn.send(Frame::Encoded(connack.freeze()));
    let window = shard
        .config
        .limits
        .max_inflight_messages
        .min(usize::from(terms.client_receive_maximum));
    if shard.is_shutting_down() {
        // Shutdown began while the claim was under way: it closed the connections it knew,
        // so close this one too (after its CONNACK: a DISCONNECT may not come first).
        conn.close(CloseReason::ShuttingDown);
    }
    shard.resume_session(key, window);

    if shard.config.connection_messages {
        tracing::info!(
            client_id = %client_id,
            %addr,
            core = shard.id,
            accepted_core = conn_id.shard(),
            protocol = %protocol.as_str(),
            clean_session = connect.connect.clean_session,
            keep_alive = terms.keep_alive,
            "client connected"
        );
    }

    let wire = Wire::new(stream::join(reader, writer), buf);
    wire.record_rest(&conn);
    let ConnectV5 {
        connect: fields,
        will_properties: properties,
        ..
    } = *connect;
    let will = fields.will;
    if let Some(will) = &will {
        shard.persist_connection_will(key, will, &properties);
    }
    let connection = Connection {
        shard,
        conn,
        key,
        protocol,
        will: will.map(|will| Box::new(PendingWill { will, properties })),
        topic_aliases: TopicAliases::default(),
        acks: AckOrder::default(),
        addr: addr.into(),
        access,
        _ticket: ticket,
    };
    (connection, wire)
}

/// The PUBACK (0x40) or PUBREC (0x50) of `id`; an MQTT 5 client learns when no subscriber
/// matched.
fn publish_ack(protocol: ProtocolVersion, first_byte: u8, id: PacketId, matched: bool) -> Frame {
    if protocol == ProtocolVersion::V5 && !matched {
        Frame::ack_with_reason(first_byte, id, ReasonCode::NoMatchingSubscribers)
    } else {
        Frame::ack(first_byte, id)
    }
}

/// Appends what the socket has to `buf`; returns the byte count (0 = closed by the peer).
///
/// Memory follows activity: when `buf` holds nothing (the usual case between packets), the
/// read goes through a buffer on the stack and `buf` is given exactly the bytes that arrived,
/// so a connection waiting for its client holds no read buffer. Only a partly received packet
/// is read into `buf` directly, a chunk at a time or more when a large packet is arriving.
async fn read_more(reader: &mut ReadHalf, buf: &mut BytesMut) -> std::io::Result<usize> {
    let start = buf.len();
    if start == 0 {
        // Let go of the allocation: packets already split off keep theirs.
        *buf = BytesMut::new();
        return reader.read_appending(buf).await;
    }
    let want = READ_CHUNK.max(start);
    buf.resize(start + want, 0);
    let result = reader.read(&mut buf[start..]).await;
    buf.truncate(start + *result.as_ref().unwrap_or(&0));
    result
}

/// A client id for a client that sent an empty one: unique for the life of the process.
fn assigned_client_id(shard: &Shard) -> Arc<str> {
    let nonce = ahash::RandomState::new().hash_one(Instant::now());
    let id = format!(
        "{}{:x}-{:x}",
        shard.config.session.auto_id_prefix,
        shard.counters.connections_accepted.get() << 8 | shard.id as u64,
        nonce & 0xffff_ffff
    );
    Arc::from(id)
}

/// Writes a last packet and closes, bounded in time.
async fn write_and_close(writer: &mut WriteHalf, out: &[u8]) {
    let written = futures_lite::future::or(
        async { writer.write_all(out).await.is_ok() && writer.flush().await.is_ok() },
        async {
            Timer::new(CLOSE_FLUSH_TIMEOUT).await;
            false
        },
    )
    .await;
    if written {
        let _ = writer.close().await;
    }
}

/// An established connection's state, with everything it holds while it lives but its
/// transport (its [`Wire`]).
struct Connection {
    shard: Rc<Shard>,
    conn: Rc<ConnHandle>,
    key: SessionKey,
    protocol: ProtocolVersion,
    /// The will, until the connection ends (boxed: most clients have none).
    will: Option<Box<PendingWill>>,
    /// The topic aliases the client defined (MQTT 5; empty otherwise).
    topic_aliases: TopicAliases,
    /// Acknowledgements of the client's publishes waiting for durable copies, and those
    /// behind them.
    acks: AckOrder,
    /// The client's address, for the log lines.
    addr: PeerAddr,
    /// Who the client is for its listener's ACL (`None`: no ACL applies).
    access: Option<Rc<ClientAccess>>,
    /// The connection's place in its listener's limits, given back when it ends.
    _ticket: ListenerTicket,
}

/// The will of a connection, with its MQTT 5 properties (empty for MQTT 3.1/3.1.1).
struct PendingWill {
    will: LastWill,
    properties: WillProperties,
}

/// The rest of a packet's handling that waits for other cores (boxed: see
/// [`Connection::on_packet`]).
type PacketFuture<'a> = Pin<Box<dyn Future<Output = Result<(), CloseReason>> + 'a>>;

impl Connection {
    /// Reads and handles packets, and writes what is queued for the client, until the
    /// connection must end; returns why.
    ///
    /// A plain function returning an `async` block: an `async fn` would keep both references
    /// twice in every connection's task.
    #[allow(clippy::manual_async_fn)] // on purpose, as said above
    fn run<'a>(&'a mut self, wire: &'a mut Wire) -> impl Future<Output = CloseReason> + 'a {
        async move {
            loop {
                // Whether this read brought whole packets, a PUBLISH among them: only a client
                // whose last packets were not all acknowledgements, subscriptions and pings waits
                // while the core's readers are held back (see `Wire::pace_after_read`).
                let mut whole_packets = false;
                let mut published = false;
                loop {
                    // The handling borrows the connection: the writing needs a handle of its own.
                    let conn = self.conn.clone();
                    // The packet is handled in a block of its own, which no wait is part of: the
                    // task, which every idle connection holds, keeps no room for one.
                    let waiting = {
                        let decoded = protocol::decode_with(
                            wire.received(),
                            self.shard.config.limits.max_packet_size,
                            Some(self.protocol),
                        );
                        let packet = match decoded {
                            Ok(Some(packet)) => packet,
                            Ok(None) => break,
                            Err(error) => return CloseReason::from(error),
                        };
                        self.shard.metrics.increment(Counter::MessagesReceived);
                        whole_packets = true;
                        published |= matches!(packet, Packet::Publish(_) | Packet::PublishV5(_));
                        match self.on_packet(packet) {
                            Ok(Some(waiting)) => waiting,
                            Ok(None) => continue,
                            Err(reason) => return reason,
                        }
                    };
                    if let Err(reason) = wire.send_during(&conn, waiting).await {
                        return reason;
                    }
                    // Asked to close while the packet was handled (a takeover, a shutdown, the
                    // keep-alive): the packets after it are not handled.
                    if let Some(reason) = self.conn.close_reason() {
                        return reason;
                    }
                }
                if let Some(reason) = self.conn.close_reason() {
                    return reason;
                }
                wire.pace_after_read(whole_packets, published);
                // A publisher whose socket always has data would never give its core back (its
                // reads complete at once): let the other tasks of the core run, subscribers'
                // connections among them, between two batches.
                futures_lite::future::yield_now().await;
                // The keep-alive is enforced by the shard's clock (`Shard::tick`), which closes a
                // silent connection: the wait ends then too.
                let conn = &self.conn;
                let pacing = &self.shard.pacing;
                let parking = self.shard.parking_lot();
                let event =
                    futures_lite::future::poll_fn(|cx| wire.poll_event(conn, pacing, parking, cx))
                        .await;
                match event {
                    Event::Read(Ok(0)) => {
                        return CloseReason::ConnectionLost("closed by the client".into())
                    }
                    Event::Read(Ok(read)) => {
                        self.conn.heard(self.shard.clock(), read >= READ_CHUNK);
                        wire.unpark_if_busy(&self.conn);
                        self.shard.metrics.add(Counter::BytesReceived, read as u64);
                    }
                    Event::Read(Err(error)) => {
                        return CloseReason::ConnectionLost(error.to_string())
                    }
                    Event::Closing => {
                        if let Some(reason) = self.conn.close_reason() {
                            return reason;
                        }
                    }
                }
            }
        }
    }

    /// Handles one packet from the client; `Err` ends the connection. A packet whose handling
    /// may wait (for other cores) is answered with the future that completes it.
    ///
    /// Only PUBLISH, SUBSCRIBE and UNSUBSCRIBE may wait; their futures are boxed so that the connection's
    /// own future, which every idle connection holds, stays small.
    fn on_packet(&mut self, packet: Packet) -> Result<Option<PacketFuture<'_>>, CloseReason> {
        let done = match packet {
            Packet::Publish(publish) => return Ok(Some(Box::pin(self.on_publish(publish, None)))),
            Packet::PublishV5(publish) => {
                let (publish, extras) = self.resolve_publish(publish)?;
                return Ok(Some(Box::pin(self.on_publish(publish, extras))));
            }
            Packet::Subscribe(subscribe) => {
                let filters = subscribe
                    .filters
                    .iter()
                    .map(|(filter, qos)| (filter.clone(), SubscriptionOptions::new(*qos)))
                    .collect();
                return Ok(Some(Box::pin(self.on_subscribe(
                    subscribe.packet_id,
                    filters,
                    None,
                ))));
            }
            Packet::SubscribeV5(subscribe) => {
                return Ok(Some(Box::pin(self.on_subscribe(
                    subscribe.packet_id,
                    subscribe.filters,
                    subscribe.properties.subscription_id,
                ))))
            }
            Packet::PubAck(id) | Packet::PubAckV5(Ack { packet_id: id, .. }) => {
                self.on_ack(id, "PUBACK", OutgoingFlow::on_puback)
            }
            Packet::PubRecV5(ack) if ack.reason.is_error() => {
                self.on_ack(ack.packet_id, "PUBREC", OutgoingFlow::on_pubrec_refused)
            }
            Packet::PubRec(id) | Packet::PubRecV5(Ack { packet_id: id, .. }) => {
                self.on_ack(id, "PUBREC", OutgoingFlow::on_pubrec)
            }
            Packet::PubComp(id) | Packet::PubCompV5(Ack { packet_id: id, .. }) => {
                self.on_ack(id, "PUBCOMP", OutgoingFlow::on_pubcomp)
            }
            Packet::PubRel(id) | Packet::PubRelV5(Ack { packet_id: id, .. }) => self.on_pubrel(id),
            Packet::Unsubscribe(unsubscribe) => {
                return Ok(Some(Box::pin(
                    self.on_unsubscribe(unsubscribe.packet_id, unsubscribe.filters),
                )));
            }
            Packet::UnsubscribeV5(unsubscribe) => {
                return Ok(Some(Box::pin(
                    self.on_unsubscribe(unsubscribe.packet_id, unsubscribe.filters),
                )));
            }
            Packet::PingReq => {
                self.conn.send(Frame::ping_response());
                Ok(())
            }
            Packet::Disconnect => {
                // A DISCONNECT discards the will [MQTT-3.14.4-3].
                self.will = None;
                Err(CloseReason::ClientDisconnected)
            }
            Packet::DisconnectV5(disconnect) => self.on_disconnect(disconnect),
            Packet::Connect(_) | Packet::ConnectV5(_) => Err(CloseReason::protocol_error(
                ReasonCode::ProtocolError,
                "second CONNECT on one connection",
            )),
            // No authentication method is configured, so no exchange can have started.
            Packet::Auth(_) => Err(CloseReason::protocol_error(
                ReasonCode::ProtocolError,
                "AUTH without an authentication method",
            )),
            other => Err(CloseReason::protocol_error(
                ReasonCode::ProtocolError,
                format!("{} is not sent by clients", other.name()),
            )),
        };
        done.map(|()| None)
    }

    /// Runs `f` on this connection's session; the session may have been taken over.
    fn with_session<T>(
        &self,
        f: impl FnOnce(&mut crate::session::SessionState) -> T,
    ) -> Result<T, CloseReason> {
        let mut state = self.shard.state.borrow_mut();
        match state.sessions.get_mut(&self.key) {
            Some(slot) if slot.last_conn == self.conn.id => Ok(f(&mut slot.state)),
            _ => Err(CloseReason::TakenOver),
        }
    }

    /// The application message of an MQTT 5 PUBLISH: its topic resolved (through the
    /// connection's topic aliases) and its properties made the message's extras.
    fn resolve_publish(
        &mut self,
        publish: PublishV5,
    ) -> Result<(Publish, Option<Arc<MessageExtras>>), CloseReason> {
        publish.check_sent_by_client()?;
        let max = self.shard.config.limits.max_topic_alias;
        let topic = self.topic_aliases.resolve(publish.topic, max)?;
        let extras = MessageExtras::new(publish.properties.message, Instant::now());
        let publish = Publish {
            dup: publish.dup,
            qos: publish.qos,
            retain: publish.retain,
            topic,
            packet_id: publish.packet_id,
            payload: publish.payload,
        };
        Ok((publish, extras))
    }

    async fn on_publish(
        &mut self,
        publish: Publish,
        extras: Option<Arc<MessageExtras>>,
    ) -> Result<(), CloseReason> {
        let message = Message {
            topic: publish.topic,
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            extras,
        };
        let metrics = &self.shard.metrics;
        metrics.increment(Counter::PublishReceived);
        metrics.add(Counter::PublishBytesReceived, message.payload.len() as u64);
        let allowed = self.may_publish(&message.topic);
        match (publish.qos, publish.packet_id) {
            (QoS::AtMostOnce, _) => {
                if allowed {
                    self.shard.publish(message, self.key).await;
                }
            }
            (QoS::AtLeastOnce, Some(id)) => {
                // A publish whose PUBACK has not left yet is unacknowledged for the client.
                self.check_receive_maximum(1 + self.acks.pubacks())?;
                if !allowed {
                    let ack = self.denied_ack(0x40, id);
                    self.send_in_turn(ack, Answers::Qos1).await;
                    return Ok(());
                }
                let routed = self.shard.publish_unsettled(message, self.key).await;
                if routed.is_settled() {
                    let ack = publish_ack(self.protocol, 0x40, id, routed.is_matched());
                    self.send_in_turn(ack, Answers::Qos1).await;
                    return Ok(());
                }
                // The next packets are read and routed meanwhile; the line keeps the
                // acknowledgements in order.
                let (shard, protocol) = (self.shard.clone(), self.protocol);
                let ack = async move {
                    let matched = routed.settled(&shard).await;
                    publish_ack(protocol, 0x40, id, matched)
                };
                self.send_when_ready(ack, Answers::Qos1).await;
            }
            (QoS::ExactlyOnce, Some(id)) if !allowed && self.protocol == ProtocolVersion::V5 => {
                // A PUBREC with an error code ends the exchange: nothing awaits a PUBREL.
                let ack = self.denied_ack(0x50, id);
                self.send_in_turn(ack, Answers::Other).await;
            }
            (QoS::ExactlyOnce, Some(id)) => {
                let resent = self.with_session(|session| session.incoming.is_pending(id))?;
                if resent {
                    // A re-sent PUBLISH not yet released: acknowledged again, not delivered.
                    let ack = publish_ack(self.protocol, 0x50, id, true);
                    self.send_in_turn(ack, Answers::Other).await;
                    return Ok(());
                }
                self.check_receive_maximum(1 + self.acks.pubacks())?;
                // Recorded only once accepted: a publish that broke the receive maximum leaves
                // no id behind, which would take the client's re-send of it for a duplicate.
                self.with_session(|session| session.incoming.on_publish(id))?;
                // MQTT 3.1.1 has no way to say "denied": acknowledged, not delivered.
                let routed = match allowed {
                    true => Some(self.shard.publish_unsettled(message, self.key).await),
                    false => None,
                };
                let persisted = self.with_session(|session| session.persisted)?;
                if !persisted && routed.as_ref().map_or(true, Routed::is_settled) {
                    let matched = routed.as_ref().map_or(true, Routed::is_matched);
                    let ack = publish_ack(self.protocol, 0x50, id, matched);
                    self.send_in_turn(ack, Answers::Other).await;
                    return Ok(());
                }
                let (shard, protocol, key) = (self.shard.clone(), self.protocol, self.key);
                let ack = async move {
                    let matched = match routed {
                        Some(routed) => routed.settled(&shard).await,
                        None => true,
                    };
                    // The id is written after the copies it stands for (this core's log is
                    // sequential; other cores' copies were awaited above): on disk it never
                    // precedes them, so after a restart a re-sent PUBLISH is taken for a
                    // delivered one only when it was delivered. The session is the client's
                    // even if another connection took it over meanwhile, but once its
                    // client released the id (a re-send answered on that connection), the
                    // record would contradict the release written before it.
                    let durable = shard
                        .state
                        .borrow()
                        .sessions
                        .get(&key)
                        .filter(|slot| slot.state.incoming.is_pending(id))
                        .and_then(|slot| shard.persist_incoming_qos2(&slot.state, id, true));
                    if let Some(durable) = durable {
                        durable.wait().await;
                    }
                    publish_ack(protocol, 0x50, id, matched)
                };
                self.send_when_ready(ack, Answers::Other).await;
            }
            (_, None) => {
                return Err(CloseReason::protocol_error(
                    ReasonCode::ProtocolError,
                    "QoS 1/2 PUBLISH without packet id",
                ))
            }
        }
        Ok(())
    }

    /// Sends `frame` after the acknowledgements in the line, waiting first while the line
    /// holds as many as the receive maximum the broker announces.
    async fn send_in_turn(&mut self, frame: Frame, answers: Answers) {
        let limit = usize::from(handshake::receive_maximum(&self.shard.config));
        self.acks.send(&self.conn, limit, frame, answers).await;
    }

    /// Puts the acknowledgement `ack` resolves to in the line, waiting first while the line
    /// holds as many as the receive maximum the broker announces.
    async fn send_when_ready(
        &mut self,
        ack: impl Future<Output = Frame> + 'static,
        answers: Answers,
    ) {
        let limit = usize::from(handshake::receive_maximum(&self.shard.config));
        self.acks
            .send_when_ready(&self.conn, limit, ack, answers)
            .await;
    }

    /// Whether the listener's ACL lets this client publish on `topic`; a denied publish is
    /// logged and counted.
    ///
    /// The `$SYS` tree is the broker's own: no client may publish into it, whatever the ACL
    /// says (the specification asks servers to keep clients off `$` topics, section 4.7.2).
    fn may_publish(&self, topic: &TopicName) -> bool {
        let allowed = !topic.as_str().starts_with("$SYS")
            && self
                .access
                .as_ref()
                .map_or(true, |access| access.can_write(topic));
        if !allowed {
            Counters::add(&self.shard.counters.publish_denied, 1);
            tracing::debug!(client_id = %self.conn.client_id, %topic, "publish denied by the ACL");
        }
        allowed
    }

    /// The PUBACK (0x40) or PUBREC (0x50) of a publish the ACL denied: "not authorized" for
    /// an MQTT 5 client, a plain acknowledgement for an older one (which cannot be told).
    fn denied_ack(&self, first_byte: u8, id: PacketId) -> Frame {
        if self.protocol == ProtocolVersion::V5 {
            Frame::ack_with_reason(first_byte, id, ReasonCode::NotAuthorized)
        } else {
            Frame::ack(first_byte, id)
        }
    }

    /// Ends an MQTT 5 connection whose client has more QoS 1/2 publishes unacknowledged than
    /// the receive maximum the broker announced [MQTT-3.3.4-9]: the QoS 2 ones awaiting PUBREL
    /// plus `arriving` (the publish being handled and those whose PUBACK is not sent yet).
    fn check_receive_maximum(&self, arriving: usize) -> Result<(), CloseReason> {
        if self.protocol != ProtocolVersion::V5 {
            return Ok(());
        }
        let maximum = usize::from(handshake::receive_maximum(&self.shard.config));
        let unacknowledged = self.with_session(|session| session.incoming.len())? + arriving;
        if unacknowledged > maximum {
            return Err(CloseReason::protocol_error(
                ReasonCode::ReceiveMaximumExceeded,
                format!(
                    "{unacknowledged} QoS 1/2 publishes unacknowledged, receive maximum is {maximum}"
                ),
            ));
        }
        Ok(())
    }

    /// PUBREL: the QoS 2 exchange of `id` ends with PUBCOMP (with "Packet Identifier not
    /// found" for an MQTT 5 client when the id was not pending).
    fn on_pubrel(&mut self, id: PacketId) -> Result<(), CloseReason> {
        let shard = &self.shard;
        let (known, durable) = self.with_session(|session| {
            let known = session.incoming.on_pubrel(id);
            let durable = known
                .then(|| shard.persist_incoming_qos2(session, id, false))
                .flatten();
            (known, durable)
        })?;
        let reason = if known || self.protocol != ProtocolVersion::V5 {
            ReasonCode::Success
        } else {
            ReasonCode::PacketIdentifierNotFound
        };
        let pubcomp = Frame::ack_with_reason(0x70, id, reason);
        self.shard
            .send_when_durable(&self.conn, vec![pubcomp], durable);
        Ok(())
    }

    fn on_ack(
        &mut self,
        id: PacketId,
        packet: &'static str,
        apply: fn(&mut OutgoingFlow, PacketId, &mut Vec<FlowAction>) -> Result<(), FlowError>,
    ) -> Result<(), CloseReason> {
        let mut actions = Vec::new();
        let conn = &self.conn;
        let (result, sent) = self.with_session(|session| {
            // Only an acknowledgement while messages wait behind the window measures how
            // fast the client can go (see `session::ack_rate`): otherwise it acknowledges
            // what it was given, however little.
            let backlog = session.outgoing.queued_len() != 0;
            let result = apply(&mut session.outgoing, id, &mut actions);
            if result.is_ok() && backlog {
                session.outgoing.record_ack(self.shard.clock());
            }
            let durable = self.shard.persist_flow(session);
            self.shard.hold_pubrels(conn, &mut actions, durable);
            let sent = conn.send_flow_actions(&mut session.outgoing, &mut actions, None);
            self.shard.persist_flow(session);
            (result, sent)
        })?;
        Counters::add(&self.shard.counters.publish_dropped, sent.dropped);
        if let Err(error) = result {
            tracing::debug!(client_id = %self.conn.client_id, packet, %error, "acknowledgement ignored");
        }
        Ok(())
    }

    /// SUBSCRIBE: grants what the limits allow, answers SUBACK, then sends the retained
    /// messages the retain handling of each granted subscription asks for.
    async fn on_subscribe(
        &mut self,
        packet_id: PacketId,
        filters: SmallVec<[(TopicFilter, SubscriptionOptions); 4]>,
        id: Option<SubscriptionId>,
    ) -> Result<(), CloseReason> {
        let max = self.shard.config.limits.max_subscriptions;
        let mut held = self.with_session(|session| session.subscriptions.len())?;
        let mut granted = Vec::with_capacity(filters.len());
        let mut send_retained = Vec::with_capacity(filters.len());
        let mut reasons: SmallVec<[ReasonCode; 4]> = SmallVec::with_capacity(filters.len());
        for (filter, options) in &filters {
            let shared = match shared_filter(filter) {
                None => false,
                Some(Ok(_)) => true,
                Some(Err(invalid)) => {
                    tracing::info!(client_id = %self.conn.client_id, %filter, %invalid, "subscription refused");
                    reasons.push(ReasonCode::TopicFilterInvalid);
                    continue;
                }
            };
            let access = self
                .access
                .as_ref()
                .map_or(SubscriptionAccess::Readable, |access| {
                    access.subscription_access(filter)
                });
            if !access.is_allowed() {
                tracing::info!(client_id = %self.conn.client_id, %filter, "subscription refused: not authorized by the ACL");
                reasons.push(ReasonCode::NotAuthorized);
                continue;
            }
            let known = self.with_session(|session| session.subscriptions.contains_key(filter))?;
            if !known && held >= max {
                tracing::info!(
                    client_id = %self.conn.client_id,
                    %filter,
                    max,
                    "subscription refused: max_subscriptions reached"
                );
                reasons.push(ReasonCode::QuotaExceeded);
                continue;
            }
            let existed = known || granted.iter().any(|(f, _)| f == filter);
            held += usize::from(!existed);
            let qos = options.qos.min(QoS::ExactlyOnce);
            let subscription = Subscription {
                check_read: access == SubscriptionAccess::CheckEachMessage,
                ..Subscription::granted(qos, options, id)
            };
            // A shared subscription is sent no retained messages (section 4.8.2): its group,
            // not the member, is the subscriber.
            let retained = !shared
                && match options.retain_handling {
                    RetainHandling::SendOnSubscribe => true,
                    RetainHandling::SendOnNewSubscription => !existed,
                    RetainHandling::DoNotSend => false,
                };
            if retained {
                send_retained.push((filter.clone(), subscription));
            }
            granted.push((filter.clone(), subscription));
            reasons.push(ReasonCode::granted(qos));
        }
        self.shard.subscribe(self.key, &granted).await;
        self.shard.persist_subscriptions(self.key, &granted).await;
        if self.protocol == ProtocolVersion::V5 {
            self.conn.send_packet(Packet::SubAckV5(SubAckV5 {
                packet_id,
                properties: AckProperties::default(),
                reason_codes: reasons,
            }));
        } else {
            let return_codes = reasons
                .iter()
                .map(|reason| {
                    reason
                        .granted_qos()
                        .map_or(SubAckReturnCode::Failure, SubAckReturnCode::Success)
                })
                .collect();
            self.conn.send_packet(Packet::SubAck(SubAck {
                packet_id,
                return_codes,
            }));
        }
        for (filter, subscription) in &send_retained {
            self.shard.deliver_retained(self.key, filter, subscription);
        }
        Ok(())
    }

    /// An UNSUBSCRIBE; for a persistent session its UNSUBACK waits until the removals are as
    /// durable as `sync` promises (as a SUBACK does for its subscriptions), so that a restart
    /// never brings back a filter the client was told is gone. One that leaves a shared
    /// subscription group also waits until every core knows (as a SUBACK does): no core picks
    /// the client for a message published after its UNSUBACK, which would be lost, its
    /// subscription gone when it arrives.
    async fn on_unsubscribe(
        &mut self,
        packet_id: PacketId,
        filters: SmallVec<[TopicFilter; 4]>,
    ) -> Result<(), CloseReason> {
        self.with_session(|_| ())?;
        let mut left_a_group = false;
        let reasons: SmallVec<[ReasonCode; 4]> = filters
            .iter()
            .map(|filter| {
                if self.shard.unsubscribe(self.key, filter) {
                    left_a_group |= shared_filter(filter).is_some();
                    ReasonCode::Success
                } else {
                    ReasonCode::NoSubscriptionExisted
                }
            })
            .collect();
        // The removals are written at once (the persisting is polled first), whatever the
        // round trip waits for.
        let persisted = self.shard.persist_unsubscriptions(self.key, &filters);
        let known_everywhere = async {
            if left_a_group {
                self.shard
                    .round_trip_with_peers("shared unsubscription")
                    .await;
            }
        };
        futures_lite::future::zip(persisted, known_everywhere).await;
        if self.protocol == ProtocolVersion::V5 {
            self.conn.send_packet(Packet::UnsubAckV5(UnsubAck {
                packet_id,
                properties: AckProperties::default(),
                reason_codes: reasons,
            }));
        } else {
            self.conn.send(Frame::ack(0xB0, packet_id));
        }
        Ok(())
    }

    /// An MQTT 5 DISCONNECT: may change the session expiry interval (but not from 0
    /// [MQTT-3.14.2-2]), and keeps the will with reason 0x04.
    fn on_disconnect(&mut self, disconnect: Disconnect) -> Result<(), CloseReason> {
        if let Some(requested) = disconnect.properties.session_expiry_interval {
            let config = &self.shard.config;
            let changed = self.with_session(|session| {
                if session.ends_with_connection() && requested != 0 {
                    return false;
                }
                session.expiry_interval = handshake::session_expiry(config, requested);
                true
            })?;
            if !changed {
                return Err(CloseReason::protocol_error(
                    ReasonCode::ProtocolError,
                    "DISCONNECT sets a session expiry interval after CONNECT set none",
                ));
            }
        }
        if disconnect.reason == ReasonCode::DisconnectWithWillMessage {
            return Err(CloseReason::ClientDisconnectedWithWill);
        }
        self.will = None;
        Err(CloseReason::ClientDisconnected)
    }

    /// Ends the connection: publishes the will when due, unbinds the session, flushes what is
    /// queued (bounded in time) and logs.
    async fn finish(self, mut wire: Wire, reason: CloseReason) {
        self.conn.close(reason.clone());
        if let CloseReason::ProtocolError { why, .. } = &reason {
            tracing::warn!(
                addr = %self.addr,
                client_id = %self.conn.client_id,
                reason = %why,
                "closing connection"
            );
        }
        if reason.publishes_will() {
            if let Some(pending) = self.will {
                let PendingWill { will, properties } = *pending;
                let delay = properties.will_delay_interval.unwrap_or(0);
                let message = Message {
                    topic: will.topic,
                    payload: will.payload,
                    qos: will.qos,
                    retain: will.retain,
                    extras: MessageExtras::new(properties.message, Instant::now()),
                };
                let allowed = self
                    .access
                    .as_ref()
                    .map_or(true, |access| access.can_write(&message.topic));
                let now = match delay {
                    _ if !allowed => {
                        tracing::info!(client_id = %self.conn.client_id, topic = %message.topic, "will not published: denied by the ACL");
                        None
                    }
                    0 => Some(message),
                    delay => self
                        .shard
                        .defer_will(self.key, self.conn.id, message, delay),
                };
                if let Some(message) = now {
                    // Boxed: see `on_packet`.
                    Box::pin(self.shard.publish(message, self.key)).await;
                }
            }
        }
        self.shard.persist_will_after_close(self.key, self.conn.id);
        self.shard.detach_connection(self.key, self.conn.id);
        self.shard.connections.borrow_mut().remove(&self.conn.id);
        let flushed = futures_lite::future::or(
            async {
                wire.finish(&self.conn).await;
                true
            },
            async {
                Timer::new(CLOSE_FLUSH_TIMEOUT).await;
                false
            },
        )
        .await;
        let dropped = self.conn.dropped();
        if self.shard.config.connection_messages {
            tracing::info!(
                client_id = %self.conn.client_id,
                addr = %self.addr,
                core = self.shard.id,
                protocol = %self.protocol.as_str(),
                reason = %reason,
                "client disconnected"
            );
        }
        if dropped > 0 {
            tracing::info!(client_id = %self.conn.client_id, dropped, "client dropped messages");
        }
        if !flushed {
            tracing::debug!(client_id = %self.conn.client_id, "unsent packets discarded at close");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_idle_connections_state_stays_small() {
        // Every idle connection's task holds its `Connection` (issue 3's idle memory): what
        // only some clients need (a will, topic aliases, acknowledgements waiting for durable
        // copies, a per-address count, an IPv6 address) stays boxed, and what the core knows
        // is not copied.
        let size = std::mem::size_of::<super::Connection>();
        assert!(size <= 96, "{size} bytes");
    }
}
