//! A client's acknowledgements in the order its publishes arrived, while some of them wait
//! for durable copies [MQTT-4.6.0-2, MQTT-4.6.0-3].
//!
//! With persistence, the PUBACK of a QoS 1 message waits until the copy queued for every
//! persistent session it reached is as durable as `sync` promises (a PUBREC also for the
//! record of its packet id). The connection does not wait with it: it goes on reading and
//! routing the client's next publishes, whose acknowledgements line up here behind the one
//! still waiting. A publisher with many messages
//! in flight is then paced by group commits, not held to one disk round trip per message.
//! The line is bounded (whatever joins it waits for room first), and each entry is a frame or
//! a slot for one.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};

use super::handle::ConnHandle;
use super::outbound::Frame;

/// The acknowledgements of one connection not yet handed to its queue, oldest first.
///
/// Empty and unallocated for a connection none of whose acknowledgements ever waited.
#[derive(Default)]
pub struct AckOrder {
    line: Option<Rc<RefCell<Line>>>,
}

/// What an acknowledgement answers: the client counts its QoS 1 publishes as unacknowledged
/// until their PUBACK, and the broker counts its QoS 2 ones by their packet ids.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Answers {
    /// A PUBACK.
    Qos1,
    /// Anything else (PUBREC).
    Other,
}

/// One acknowledgement in the line.
struct Entry {
    /// `None`: still waiting.
    frame: Option<Frame>,
    answers: Answers,
}

/// The shared state of an [`AckOrder`]: the connection and the tasks that wait for
/// durability both reach it.
#[derive(Default)]
struct Line {
    /// The sequence number of the front entry.
    front: u64,
    entries: VecDeque<Entry>,
    /// Entries that are PUBACKs.
    pubacks: usize,
    /// The connection, waiting for room in the line.
    room: Option<Waker>,
}

impl AckOrder {
    /// PUBACKs in the line: QoS 1 publishes the client still counts as unacknowledged.
    pub fn pubacks(&self) -> usize {
        self.line.as_ref().map_or(0, |line| line.borrow().pubacks)
    }

    /// Sends `frame` now when nothing waits ahead of it, or puts it behind what does, first
    /// waiting while `limit` acknowledgements are in the line.
    pub async fn send(&mut self, conn: &ConnHandle, limit: usize, frame: Frame, answers: Answers) {
        let Some(line) = self
            .line
            .as_ref()
            .filter(|line| !line.borrow().entries.is_empty())
        else {
            conn.send(frame);
            return;
        };
        let line = Rc::clone(line);
        room(&line, limit, conn).await;
        let mut state = line.borrow_mut();
        if state.entries.is_empty() {
            conn.send(frame);
        } else {
            state.push(Some(frame), answers);
        }
    }

    /// Sends the frame `ack` resolves to once it does, after every acknowledgement ahead of
    /// it; first waits while `limit` acknowledgements are in the line.
    pub async fn send_when_ready(
        &mut self,
        conn: &Rc<ConnHandle>,
        limit: usize,
        ack: impl Future<Output = Frame> + 'static,
        answers: Answers,
    ) {
        let line = self.line.get_or_insert_with(Rc::default).clone();
        room(&line, limit, conn).await;
        let sequence = {
            let mut state = line.borrow_mut();
            state.push(None, answers);
            state.front + state.entries.len() as u64 - 1
        };
        let conn = Rc::clone(conn);
        glommio::spawn_local(async move {
            let frame = ack.await;
            line.borrow_mut().settle(sequence, frame, &conn);
        })
        .detach();
    }
}

/// Waits while `line` holds `limit` acknowledgements (at least one is always let in), unless
/// `conn` is closing: it sends nothing more then (see [`ConnHandle::send`]), so nothing needs
/// room, and its task, which a close wakes (`Wire::send_during`), must not wait for
/// acknowledgements that may be up to `ACK_TIMEOUT` away to end the connection.
async fn room(line: &RefCell<Line>, limit: usize, conn: &ConnHandle) {
    futures_lite::future::poll_fn(|cx| {
        let mut line = line.borrow_mut();
        if line.entries.len() < limit.max(1) || conn.is_closing() {
            Poll::Ready(())
        } else {
            line.room = Some(cx.waker().clone());
            Poll::Pending
        }
    })
    .await;
}

impl Line {
    fn push(&mut self, frame: Option<Frame>, answers: Answers) {
        self.pubacks += usize::from(answers == Answers::Qos1);
        self.entries.push_back(Entry { frame, answers });
    }

    /// Fills slot `sequence` with `frame`, then sends every filled entry at the front.
    fn settle(&mut self, sequence: u64, frame: Frame, conn: &ConnHandle) {
        // The slot exists: entries leave only from the front, and only once filled, so a slot
        // not yet filled is still in the line.
        let index = (sequence - self.front) as usize;
        if let Some(entry) = self.entries.get_mut(index) {
            entry.frame = Some(frame);
        }
        while self
            .entries
            .front()
            .is_some_and(|entry| entry.frame.is_some())
        {
            if let Some(Entry {
                frame: Some(frame),
                answers,
            }) = self.entries.pop_front()
            {
                self.pubacks -= usize::from(answers == Answers::Qos1);
                conn.send(frame);
            }
            self.front += 1;
        }
        if let Some(waker) = self.room.take() {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::BytesMut;

    use super::*;
    use crate::connection::{CloseReason, KeepAlive};
    use crate::metrics::CoreMetrics;
    use crate::protocol::{PacketId, ProtocolVersion};
    use crate::shard::ConnId;

    fn ack(raw: u16) -> Frame {
        Frame::ack(0x40, PacketId::new(raw).expect("a non-zero packet id"))
    }

    #[test]
    fn a_closing_connection_does_not_wait_for_room() {
        let joined = crate::testing::run(|| async {
            let keep_alive = KeepAlive { ticks: 0, now: 0 };
            let core = Rc::new(CoreMetrics::new(0));
            let conn = Rc::new(ConnHandle::new(
                ConnId::new(0, 1),
                Arc::from("c"),
                ProtocolVersion::V3_1_1,
                100,
                0,
                keep_alive,
                u32::MAX,
                0,
                core,
            ));
            let mut acks = AckOrder::default();
            // A line of one, filled by an acknowledgement that never settles.
            let never = futures_lite::future::pending::<Frame>();
            acks.send_when_ready(&conn, 1, never, Answers::Qos1).await;
            conn.close(CloseReason::ShuttingDown);
            let joined = futures_lite::future::or(
                async {
                    acks.send(&conn, 1, ack(2), Answers::Qos1).await;
                    true
                },
                async {
                    glommio::timer::sleep(Duration::from_secs(10)).await;
                    false
                },
            )
            .await;
            let mut out = BytesMut::new();
            conn.drain_into(&mut out);
            (joined, out.is_empty())
        });
        assert_eq!(joined, (true, true), "(stopped waiting, sent nothing)");
    }
}
