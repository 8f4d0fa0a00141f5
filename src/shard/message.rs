//! The cross-core vocabulary: every message one shard may send another.
//!
//! Shards share nothing; they cooperate only through these messages, carried by glommio's
//! lock-free mesh channels. Each variant is small: payloads travel as `bytes::Bytes`, so a
//! message crossing cores shares its payload with the publisher's core instead of copying it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use crate::auth::ClientIdentity;
use crate::connection::MovedTransport;
use crate::listener::ListenerTicket;
use crate::message::Message;
use crate::metrics::MetricsSnapshot;
use crate::protocol::ConnectV5;
use crate::router::{MemberState, SharedDelivery};
use crate::shard::SessionKey;
use crate::topic::TopicFilter;

/// Index of a shard (one glommio executor, one core) in the mesh.
pub type ShardId = usize;

/// Identifies one connection across the whole broker: the accepting shard in the high 16 bits,
/// a per-shard counter below. Sessions use it to tell a current connection from a stale one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId(u64);

impl ConnId {
    /// The `seq`-th connection accepted by `shard`.
    pub fn new(shard: ShardId, seq: u64) -> Self {
        Self(((shard as u64) << 48) | (seq & ((1 << 48) - 1)))
    }

    /// The shard that accepted the connection.
    pub fn shard(self) -> ShardId {
        (self.0 >> 48) as ShardId
    }
}

/// A message from one shard to another.
#[derive(Debug)]
pub enum ShardMsg {
    /// A publish for the receiving shard's local subscribers. Sent only to shards that declared
    /// interest in a matching filter; per (publisher, topic) order is the channel's FIFO order.
    Publish {
        /// The message.
        message: Message,
        /// When the publishing core read it, for a fan-out it times: the receiving core's
        /// publish-to-delivery samples then include the hop between cores.
        received: Option<Instant>,
        /// With persistence, for a QoS 1/2 message: answer `Ack { token }` once the records
        /// of the persistent sessions it was queued for here are durable (its publisher's
        /// PUBACK waits for them).
        durable: Option<u64>,
    },
    /// The sender now has (`present`) or no longer has local subscribers for `filter`.
    Interest {
        /// The filter whose local subscriber count crossed zero.
        filter: TopicFilter,
        /// Whether the filter is now subscribed on the sender.
        present: bool,
    },
    /// Answered with `Ack { token }` once everything the sender sent before it is processed.
    /// A SUBSCRIBE waits for this from every core before its SUBACK: the other cores then
    /// know its filters, and its core holds every retained update acknowledged before.
    Barrier {
        /// Identifies the waiting request.
        token: u64,
    },
    /// Acknowledges a `Barrier`, a `RetainRequest`, or a durable `Publish` or `SharedPublish`.
    Ack {
        /// The token of the acknowledged request.
        token: u64,
    },
    /// A retained publish, sent to the shard that owns the topic (by topic hash), which orders
    /// every retained update of that topic, replicates it, then answers `Ack { token }`.
    RetainRequest {
        /// The retained message (an empty payload deletes).
        message: Message,
        /// Identifies the waiting publisher.
        token: u64,
    },
    /// A retained update ordered by the topic's owner, applied to every shard's replica of the
    /// retained store. An empty payload deletes.
    RetainApply(Message),
    /// The sender's session `key` joined, left, or changed presence in the shared subscription
    /// group of `filter` (`$share/...`); every core keeps every group's members.
    SharedMember {
        /// The group's whole filter.
        filter: TopicFilter,
        /// The member's session on the sender.
        key: SessionKey,
        /// Its new state in the group.
        state: MemberState,
    },
    /// A message for the member of a shared subscription group the sender chose, on the
    /// receiving core (boxed: rare, and larger than the other messages). With a `durable`
    /// token, answered like a `Publish`'s once the member's persistent copy is durable.
    SharedPublish(Box<SharedDelivery>),
    /// To the owner of `client_id` (by hash): a connection on `conn.shard()` wants the session.
    Claim {
        /// The client id being connected.
        client_id: Arc<str>,
        /// The connection that wants it.
        conn: ConnId,
        /// Whether the new connection asked for a clean session (the old one is then ended).
        clean_session: bool,
        /// The claimant did not wait: a clean-session connection already runs a new session
        /// (see `session::takeover`); the owner only has to end the old one and record it.
        eager: bool,
    },
    /// From the owner to the core holding `client_id`'s session: close its connection, then
    /// end the session or reserve it for connection `to`, and answer `to` with a `Grant`.
    Evict {
        /// The client id taken over.
        client_id: Arc<str>,
        /// The connection taking it over.
        to: ConnId,
        /// Whether that connection discards the session.
        clean_session: bool,
        /// The connection the owner knows holds the session, when `to` is an eager claim:
        /// the holder ends that one's session and answers the owner with `Settled` instead of
        /// granting anything to `to`.
        eager_over: Option<ConnId>,
    },
    /// To the core of connection `to`: the outcome of its claim.
    Grant {
        /// The client id claimed.
        client_id: Arc<str>,
        /// The claiming connection.
        to: ConnId,
        /// What it may do.
        grant: Grant,
    },
    /// To the core holding a session: the socket of the connection that takes it over, to be
    /// served there.
    Adopt(Box<Adoption>),
    /// To the core holding a session reserved for `conn`: that connection gave up.
    Abandon {
        /// The client id.
        client_id: Arc<str>,
        /// The connection the session was reserved for.
        conn: ConnId,
    },
    /// To the owner of `client_id`: the claim of `conn` has ended, with the session now on
    /// `holder` (`None`: no session).
    Settled {
        /// The client id.
        client_id: Arc<str>,
        /// The claiming connection.
        conn: ConnId,
        /// The core now holding the session.
        holder: Option<ShardId>,
    },
    /// To the owner of `client_id`: the session last bound to `conn` has ended.
    Released {
        /// The client id whose session ended.
        client_id: Arc<str>,
        /// The connection that last held it.
        conn: ConnId,
    },
    /// To the owner of `client_id`: a persistent session read back from the sender's files at
    /// start-up waits offline on the sender, last bound to `conn`.
    Restored {
        /// The client id of the session.
        client_id: Arc<str>,
        /// The connection id the sender gave the restored session.
        conn: ConnId,
    },
    /// To the aggregating core (`metrics::AGGREGATOR_CORE`), once per snapshot period: the
    /// sender's counters, gauges, latency histograms and slow clients (boxed: large, and
    /// rare).
    Metrics(Box<MetricsSnapshot>),
}

impl ShardMsg {
    /// Whether the message hands a publish to the receiving core's clients: only those wait
    /// for the core's pacing (see `pacing`); replies and the other requests between cores
    /// never do.
    pub fn is_delivery(&self) -> bool {
        matches!(self, ShardMsg::Publish { .. } | ShardMsg::SharedPublish(_))
    }
}

/// The outcome of a claim on a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// No session to continue: start a new one on the claimant's core.
    New,
    /// The session is reserved for the claimant on this core: serve the connection there.
    Resume(ShardId),
    /// A later connection with the same client id claimed the session first.
    Superseded,
}

/// A connection handed to the core holding its session: the socket and everything already
/// read from it.
#[derive(Debug)]
pub struct Adoption {
    /// The client id.
    pub client_id: Arc<str>,
    /// The connection's id (allocated by the accepting core).
    pub conn: ConnId,
    /// The socket, or the relay of a transport that stays on the accepting core.
    pub transport: MovedTransport,
    /// Bytes read after the CONNECT packet.
    pub buffered: BytesMut,
    /// The CONNECT packet (an MQTT 3.1/3.1.1 one without properties).
    pub connect: Box<ConnectV5>,
    /// The client's address.
    pub addr: SocketAddr,
    /// The connection's place in its listener's limits.
    pub ticket: ListenerTicket,
    /// The listener it came in through (its index in `config.listener`).
    pub listener: usize,
    /// Who the client is for that listener's ACL (`None`: the listener has no ACL).
    pub identity: Option<ClientIdentity>,
}
