//! hydrant: a thread-per-core MQTT broker on io_uring, built to be an infrastructure's event
//! firehose (few publishers, many subscribers, heavy connection churn). It speaks MQTT 3.1,
//! 3.1.1 and 5.0 on the same listeners; each connection keeps its own version, and a message is
//! encoded for each subscriber's version (MQTT 5 properties are left out for older clients).
//!
//! # The path of a PUBLISH
//!
//! One glommio executor runs per core (a *shard*, [`shard`]); each binds every listener with
//! SO_REUSEPORT and owns the connections the kernel hands it, with their sessions, its
//! subscription trie and its counters. Nothing is shared between cores but immutable `Bytes`.
//!
//! 1. [`listener`] accepts the socket on some core and opens the listener's [`transport`]
//!    (TLS, WebSocket); [`connection`] checks the CONNECT against the listener's access rules
//!    ([`auth`]) and runs one task for it on that core, which reads and writes side by side.
//!    A plain TCP socket waits in its core's epoll set while its client is quiet, and in
//!    glommio while it is busy ([`transport::parked`]), which saves memory per idle connection.
//! 2. The connection reads into one buffer and [`protocol`] (an I/O-free codec) decodes every
//!    complete packet in it. A PUBLISH's topic and payload are zero-copy `Bytes` slices of that
//!    buffer: the message is received into memory once.
//! 3. [`router`] routes the [`message::Message`]: a retained one goes to the topic's owner core
//!    (by topic hash), which orders it and replicates it to every core's retained store.
//! 4. Other cores: each core announces which filters it has subscribers for, so the router
//!    sends the message (sharing its `Bytes`) once to each core with a match, over glommio's
//!    lock-free channel mesh ([`shard::ShardMsg`] is the whole cross-core vocabulary). Each
//!    channel is FIFO, so per (publisher, topic) order holds on every core.
//! 5. This core (and each receiving core) matches the topic in its [`topic::SubscriptionTrie`],
//!    encodes the PUBLISH once per wire layout (version x QoS x retain x properties) and
//!    appends that shared encoding to each matching connection's bounded outgoing queue: QoS 0
//!    directly (dropped and counted when the queue is full), QoS 1/2 through the session's
//!    inflight window ([`session`]).
//! 6. Each connection's task, woken when its queue stops being empty, writes all it gathered
//!    with a single call (TCP_NODELAY; the batching is ours).
//! 7. QoS 1/2 acknowledgements from subscribers advance their windows; the publisher got its
//!    PUBACK/PUBREC as soon as the message was handed to every core.
//!
//! Sessions never move between cores: the owner core of a client id (by hash) keeps a
//! directory and serialises claims on it; a client reconnecting on another core has its socket
//! handed to the core that holds its session, and the old connection is closed there.
//!
//! A connection whose session is on another core moves there: a plain TCP socket as its
//! descriptor, a TLS or WebSocket one as a relay of its bytes from the accepting core. Each
//! listener's files (passwords, ACL, certificates) are reloaded on SIGHUP without
//! disconnecting anyone ([`listener::files`]).
//!
//! [`metrics`] turns every core's counters and latency histograms into `$SYS` and `/metrics`:
//! each core snapshots its own figures and sends them to one core, which publishes them.
//! [`persist`] logs each core's durable state (retained messages, persistent sessions with
//! their subscriptions, queued and in-flight messages, and wills) to its own files and reads
//! it back at start-up.
//!
//! [`queue_budget`] bounds the bytes queued on each core, all clients together, and
//! [`pacing`] holds a core's readers back while a client that keeps up waits for its turn to
//! write.

pub mod auth;
pub mod config;
pub mod connection;
pub mod listener;
pub mod message;
pub mod metrics;
pub mod pacing;
pub mod persist;
pub mod protocol;
pub mod queue_budget;
pub mod router;
pub mod session;
pub mod shard;
#[cfg(test)]
mod testing;
pub mod topic;
pub mod transport;
