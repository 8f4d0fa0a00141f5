//! The sending side of one shard's links to every other shard.
//!
//! Two ways to send, for two kinds of caller. A connection task awaits [`Peers::send`]: when a
//! peer's channel is full, or messages are already waiting for it, the publisher waits behind
//! them, which is flow control towards the client that publishes (its PUBACK waits too) and
//! keeps this core's messages to a peer in one order. A task that receives from peers must
//! never wait on a peer (two shards waiting on each other's full channels would deadlock,
//! glommio issue 555), so it uses [`Peers::post`], which never blocks: it hands the message to
//! the channel or, when that is full, to a per-peer backlog drained by a dedicated sender task.
//! Only control traffic is posted (interest, acknowledgements, session hand-overs, retained
//! replicas), whose volume follows what clients do and which must never be lost.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use glommio::channels::channel_mesh::Senders;
use glommio::{GlommioError, ResourceType};

use super::message::{ShardId, ShardMsg};
use crate::connection::{Broadcast, Notify};

/// Messages one peer's backlog may hold before further posted messages are dropped (and
/// counted). Publishes never enter the backlog, and control traffic follows client actions
/// that are themselves flow-controlled, so reaching this means a peer has stopped draining
/// its channel altogether.
pub const MAX_BACKLOG: usize = 1 << 20;

/// The links of one shard to the others.
pub struct Peers {
    me: ShardId,
    senders: Option<Senders<ShardMsg>>,
    backlogs: RefCell<Vec<VecDeque<ShardMsg>>>,
    wake: Vec<Notify>,
    /// Per peer: the drainer holds a message it is still waiting to hand to the channel.
    draining: Vec<Cell<bool>>,
    /// Per peer: woken when the backlog has emptied, for senders waiting behind it.
    drained: Vec<Broadcast>,
    dropped: Cell<u64>,
}

impl Peers {
    /// Links for shard `me` of a mesh of `count` shards (no channels when `count` is 1).
    pub fn new(me: ShardId, count: usize, senders: Option<Senders<ShardMsg>>) -> Self {
        Self {
            me,
            senders,
            backlogs: RefCell::new((0..count).map(|_| VecDeque::new()).collect()),
            wake: (0..count).map(|_| Notify::default()).collect(),
            draining: (0..count).map(|_| Cell::new(false)).collect(),
            drained: (0..count).map(|_| Broadcast::default()).collect(),
            dropped: Cell::new(0),
        }
    }

    /// Every shard but this one.
    pub fn others(&self) -> impl Iterator<Item = ShardId> + '_ {
        (0..self.wake.len()).filter(move |&peer| peer != self.me)
    }

    /// Sends to `to`, waiting while its channel is full or messages are queued for it. For
    /// connection tasks only.
    pub async fn send(&self, to: ShardId, msg: ShardMsg) {
        let Some(senders) = &self.senders else {
            return;
        };
        // Wait behind what is queued, so that this core's messages to `to` keep one order.
        while !self.backlogs.borrow()[to].is_empty() || self.draining[to].get() {
            self.drained[to].wait().await;
        }
        if senders.send_to(to, msg).await.is_err() {
            tracing::debug!(peer = to, "peer channel closed");
        }
    }

    /// Sends to `to` without ever waiting: into the channel if it has room and nothing is
    /// queued ahead, else into the peer's bounded backlog.
    pub fn post(&self, to: ShardId, msg: ShardMsg) {
        let Some(senders) = &self.senders else {
            return;
        };
        let mut backlogs = self.backlogs.borrow_mut();
        let backlog = &mut backlogs[to];
        let msg = if backlog.is_empty() && !self.draining[to].get() {
            match senders.try_send_to(to, msg) {
                Ok(()) => return,
                Err(GlommioError::WouldBlock(ResourceType::Channel(msg))) => msg,
                // The peer stopped (shutdown): nobody is left to read it.
                Err(_) => return,
            }
        } else {
            msg
        };
        if backlog.len() >= MAX_BACKLOG {
            let dropped = self.dropped.get() + 1;
            self.dropped.set(dropped);
            if dropped.is_power_of_two() {
                tracing::error!(
                    peer = to,
                    dropped,
                    "cross-core backlog full: messages dropped"
                );
            }
            return;
        }
        backlog.push_back(msg);
        self.wake[to].notify();
    }

    /// Posts a copy of a message to every other shard.
    pub fn broadcast(&self, make: impl Fn() -> ShardMsg) {
        for peer in self.others() {
            self.post(peer, make());
        }
    }

    /// Messages dropped because a backlog was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    /// Drains `to`'s backlog into its channel, waiting for room: run as one task per peer.
    pub async fn drain_backlog(self: Rc<Self>, to: ShardId) {
        let Some(senders) = &self.senders else {
            return;
        };
        loop {
            let next = self.backlogs.borrow_mut()[to].pop_front();
            match next {
                Some(msg) => {
                    self.draining[to].set(true);
                    let sent = senders.send_to(to, msg).await;
                    self.draining[to].set(false);
                    if sent.is_err() {
                        return;
                    }
                }
                None => {
                    self.drained[to].notify_all();
                    self.wake[to].notified().await;
                }
            }
        }
    }
}
