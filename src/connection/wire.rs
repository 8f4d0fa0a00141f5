//! An established connection's transport, driven in both directions by the connection's one
//! task: the bytes received and not yet decoded, and the batch of queued packets on its way
//! out.
//!
//! Reads and writes are polled side by side, never one after the other: a write waiting for
//! a full socket does not stop the broker from reading the client's packets (a client that
//! does not read is found out by its queue's limits, see `OutboundQueue`), and a read waiting
//! for the client does not hold up what is queued for it. Everything gathered in the queue
//! since the last write goes out in one call. An idle connection holds no buffer in either
//! direction, and no task but its own.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures_lite::{ready, AsyncRead, AsyncWrite, AsyncWriteExt};

use super::handle::{CloseReason, ConnHandle, Rest};
use super::outbound::Drained;
use super::stream::STACK_READ;
use super::READ_CHUNK;
use crate::pacing::{Pacing, WaitTicket};
use crate::protocol::PacketType;
use crate::transport::parked::ParkingLot;
use crate::transport::Transport;

/// The transport of an established connection and the bytes in flight on it.
pub(super) struct Wire {
    transport: Transport,
    /// Received bytes not yet decoded (see [`Wire::received`]), followed, while a read into
    /// `buf` waits for the socket, by the zeroed room it will fill.
    buf: BytesMut,
    /// Bytes at the end of `buf` that are room for the pending read, not received bytes: kept
    /// from one wake-up of the task to the next, so that the room is zeroed once per read.
    room: usize,
    /// The batch being written, while one is on its way (boxed: an idle connection, which
    /// has none, keeps one pointer in its task rather than the batch's 80 bytes).
    batch: Option<Box<Batch>>,
    /// A write failed: the connection is closing and nothing more is written.
    broken: bool,
    /// The client's reads wait while the core's readers are held back (see `pacing`): true
    /// unless the last packets it sent included no PUBLISH (see [`Wire::pace_after_read`]).
    paced: bool,
    /// Where the connection stands in its core's wait for a client that keeps up (see
    /// `pacing`).
    ticket: WaitTicket,
}

/// Packets drained from the connection's queue, on their way to the socket.
struct Batch {
    /// The packets, encoded.
    out: BytesMut,
    /// Bytes of `out` already written.
    written: usize,
    /// What `out` holds, for the core's counters once it is written.
    drained: Drained,
}

/// What ends a connection's wait for its client.
pub(super) enum Event {
    /// The client sent bytes, appended to the received bytes (see [`Wire::received`]): their
    /// count, 0 when it closed the connection.
    Read(io::Result<usize>),
    /// The connection was asked to close (see [`ConnHandle::close`]).
    Closing,
}

impl Wire {
    /// The wire of `transport`, with the bytes already received after the CONNECT.
    pub(super) fn new(transport: Transport, buf: BytesMut) -> Self {
        Self {
            transport,
            buf,
            room: 0,
            batch: None,
            broken: false,
            paced: true,
            ticket: WaitTicket::default(),
        }
    }

    /// The received bytes not yet decoded.
    pub(super) fn received(&mut self) -> &mut BytesMut {
        // Only a read still waiting leaves room (the connection is then closing): give it up.
        self.buf.truncate(self.buf.len() - self.room);
        self.room = 0;
        &mut self.buf
    }

    /// Waits for the client to send something or for the connection to be asked to close,
    /// writing what `conn` queues meanwhile. While `pacing` holds the core's readers back,
    /// nothing is read.
    ///
    /// Asked to park (see [`ConnHandle::ask_to_park`]), it parks its socket in `parking`
    /// first.
    pub(super) fn poll_event(
        &mut self,
        conn: &ConnHandle,
        pacing: &Pacing,
        parking: Option<&Rc<ParkingLot>>,
        cx: &mut Context<'_>,
    ) -> Poll<Event> {
        loop {
            if conn.rest() == Rest::Asked {
                self.park(conn, parking);
            }
            self.poll_send(conn, cx);
            if conn.is_closing() {
                self.ticket.leave();
                return Poll::Ready(Event::Closing);
            }
            // A client whose queue is what holds the core back is never held itself: what
            // it reads (its acknowledgements) is what lets its queue catch up.
            let held = self.paced && !conn.is_holding_for_acks();
            if !held {
                self.ticket.leave();
            }
            if !held || pacing.poll_go(cx, &mut self.ticket).is_ready() {
                if let Poll::Ready(read) = self.poll_read_more(cx) {
                    return Poll::Ready(Event::Read(read));
                }
            }
            // Registers for the next frame queued or close request; one that came since the
            // checks above is seen by going round again.
            if conn.poll_wake(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }

    /// Parks the socket in `parking`, as the shard asked: only a plain TCP one can be.
    fn park(&mut self, conn: &ConnHandle, parking: Option<&Rc<ParkingLot>>) {
        let rest = match parking.map(|lot| self.transport.park(lot)) {
            Some(Ok(true)) => Rest::Parked,
            Some(Ok(false)) | None => Rest::Unparkable,
            Some(Err(error)) => {
                // Out of descriptors: it stays with glommio, which serves it the same, rather
                // than be asked again at every tick while the table is full.
                tracing::debug!(client_id = %conn.client_id, %error, "cannot park a connection");
                Rest::Unparkable
            }
        };
        conn.set_rest(rest);
    }

    /// Records where a new connection stands with parking: its socket was parked when it
    /// was accepted, if its core parks and it is plain TCP.
    pub(super) fn record_rest(&self, conn: &ConnHandle) {
        if self.transport.is_parked() {
            conn.set_rest(Rest::Parked);
        }
    }

    /// Gives a parked socket back to glommio once its client is busy (see
    /// [`ConnHandle::is_busy`]): called after each read.
    pub(super) fn unpark_if_busy(&mut self, conn: &ConnHandle) {
        if !self.transport.is_parked() || !conn.is_busy() {
            return;
        }
        match self.transport.unpark() {
            Ok(()) => conn.set_rest(Rest::Awake),
            // It works parked too; the next read tries again.
            Err(error) => {
                tracing::debug!(client_id = %conn.client_id, %error, "cannot unpark a connection")
            }
        }
    }

    /// Says, after the packets of one read were handled, whether the client's next read waits
    /// while the core's readers are held back: only a client whose last packets included a
    /// PUBLISH (or the start of one) adds to what the core routes. One that only acknowledges,
    /// subscribes or pings is never held: its acknowledgements are what lets a QoS 1/2 queue
    /// behind a window drain, and it routes nothing. `whole_packets` says whether the read
    /// completed any, `published` whether a PUBLISH was among them. What is left in the buffer
    /// is the start of the next packet, and a PUBLISH partly received counts as one, so that
    /// the rest of a large one is read under the same rule as a whole one.
    pub(super) fn pace_after_read(&mut self, whole_packets: bool, published: bool) {
        if let Some(paced) = paced_after_read(whole_packets, published, self.received()) {
            self.paced = paced;
        }
    }

    /// Completes `work` (the handling of a packet, which may wait for other cores), writing
    /// what `conn` queues meanwhile.
    ///
    /// `work` is polled again whenever the task is woken for `conn` (a frame queued, a close
    /// requested): a close ends its wait for room in the acknowledgement line (see `AckOrder`),
    /// whose acknowledgements may be long in coming.
    ///
    /// A plain function rather than an `async fn`, which would keep `work` twice in the
    /// connection's task.
    pub(super) fn send_during<'a, F: Future + Unpin + 'a>(
        &'a mut self,
        conn: &'a ConnHandle,
        mut work: F,
    ) -> impl Future<Output = F::Output> + 'a {
        futures_lite::future::poll_fn(move |cx| loop {
            if let Poll::Ready(output) = Pin::new(&mut work).poll(cx) {
                return Poll::Ready(output);
            }
            self.poll_send(conn, cx);
            if conn.poll_wake(cx).is_pending() {
                return Poll::Pending;
            }
        })
    }

    /// Writes what is still queued (an MQTT 5 client's DISCONNECT among it), then closes the
    /// sending side of the transport (TLS close_notify, the WebSocket Close frame).
    pub(super) async fn finish(&mut self, conn: &ConnHandle) {
        futures_lite::future::poll_fn(|cx| {
            self.poll_send(conn, cx);
            // With a batch left, the socket is full and will wake the task.
            if self.broken || self.batch.is_none() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        if !self.broken {
            let _ = self.transport.close().await;
        }
    }

    /// Writes what `conn` queues until its queue is empty or the socket is full (the task of
    /// `cx` is then woken when it has room); a failure closes the connection.
    fn poll_send(&mut self, conn: &ConnHandle, cx: &mut Context<'_>) {
        if self.broken {
            return;
        }
        if let Err(error) = self.try_send(conn, cx) {
            self.broken = true;
            self.batch = None;
            conn.close(CloseReason::ConnectionLost(error.to_string()));
        }
    }

    fn try_send(&mut self, conn: &ConnHandle, cx: &mut Context<'_>) -> io::Result<()> {
        if self.batch.is_none() {
            let mut out = BytesMut::new();
            let drained = conn.drain_into(&mut out);
            if out.is_empty() {
                // Nothing is queued: the client keeps up.
                conn.with_outbound(|queue| queue.record_write(true));
                return Ok(());
            }
            self.batch = Some(Box::new(Batch {
                out,
                written: 0,
                drained,
            }));
        }
        // Set just above when there was none.
        let Some(batch) = self.batch.as_mut() else {
            return Ok(());
        };
        loop {
            while batch.written < batch.out.len() {
                let unwritten = &batch.out[batch.written..];
                match Pin::new(&mut self.transport).poll_write(cx, unwritten) {
                    Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                    Poll::Ready(Ok(written)) => batch.written += written,
                    Poll::Ready(Err(error)) => return Err(error),
                    Poll::Pending => {
                        // The socket is full: the client does not keep up.
                        conn.with_outbound(|queue| queue.record_write(false));
                        return Ok(());
                    }
                }
            }
            // The flush is what sends a TLS record or WebSocket frame (a no-op for plain TCP);
            // a transport that buffered the batch waits here when the socket is full.
            if Pin::new(&mut self.transport).poll_flush(cx)?.is_pending() {
                conn.with_outbound(|queue| queue.record_write(false));
                return Ok(());
            }
            conn.record_written(batch.drained, batch.out.len());
            // The next batch reuses the buffer.
            batch.out.clear();
            batch.written = 0;
            batch.drained = conn.drain_into(&mut batch.out);
            if batch.out.is_empty() {
                // Everything queued was written: the client keeps up. Give an idle
                // connection's batch and buffer back.
                self.batch = None;
                conn.with_outbound(|queue| queue.record_write(true));
                return Ok(());
            }
        }
    }

    /// Appends what the socket has to `buf`; returns the byte count (0 = closed by the peer).
    ///
    /// Memory follows activity: when `buf` holds nothing (the usual case between packets),
    /// the read goes through a buffer on the stack and `buf` is given exactly the bytes that
    /// arrived, so a connection waiting for its client holds no read buffer. Only a partly
    /// received packet is read into `buf` directly, a chunk at a time or more when a large
    /// packet is arriving. The room for that read is zeroed once, when the read starts, and
    /// kept while it waits: the task is woken for every frame queued for the client, and a
    /// large packet arriving slowly would otherwise cost a memset of its size per wake-up.
    fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let start = self.buf.len() - self.room;
        if start == 0 {
            // Let go of the allocation: packets already split off keep theirs.
            self.buf = BytesMut::new();
            let mut chunk = [0u8; STACK_READ];
            let read = ready!(Pin::new(&mut self.transport).poll_read(cx, &mut chunk));
            if let Ok(count) = read {
                self.buf.extend_from_slice(&chunk[..count]);
            }
            return Poll::Ready(read);
        }
        if self.room == 0 {
            self.room = READ_CHUNK.max(start);
            self.buf.resize(start + self.room, 0);
        }
        let read = ready!(Pin::new(&mut self.transport).poll_read(cx, &mut self.buf[start..]));
        let count = *read.as_ref().unwrap_or(&0);
        self.buf.truncate(start + count);
        self.room = 0;
        Poll::Ready(read)
    }
}

/// Whether a connection's next read waits while its core's readers are held back, after a
/// read that completed `whole_packets` (a PUBLISH among them if `published`) and left `unread`
/// in the buffer; `None` when the read completed nothing and began no PUBLISH, which leaves the
/// rule as the packets before set it.
fn paced_after_read(whole_packets: bool, published: bool, unread: &[u8]) -> Option<bool> {
    let publish_begun = unread
        .first()
        .is_some_and(|&first| first >> 4 == PacketType::Publish as u8);
    (whole_packets || publish_begun).then_some(published || publish_begun)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PUBACK, a PUBLISH's first byte at QoS 1, and a PINGREQ, as a client sends them.
    const PUBACK: [u8; 4] = [0x40, 0x02, 0x00, 0x01];
    const PUBLISH_QOS1: u8 = 0x32;
    const PINGREQ_FIRST: u8 = 0xC0;

    #[test]
    fn a_client_that_only_acknowledges_is_not_held() {
        assert_eq!(paced_after_read(true, false, &[]), Some(false));
        // Part of the next acknowledgement is in: still only acknowledging.
        assert_eq!(paced_after_read(true, false, &PUBACK[..2]), Some(false));
    }

    #[test]
    fn a_client_whose_read_brought_a_publish_is_held() {
        assert_eq!(paced_after_read(true, true, &[]), Some(true));
        assert_eq!(paced_after_read(true, true, &PUBACK[..1]), Some(true));
    }

    #[test]
    fn a_publish_partly_received_counts_as_one() {
        // Acknowledgements, then the start of a large PUBLISH whose rest is still to come.
        assert_eq!(
            paced_after_read(true, false, &[PUBLISH_QOS1, 0x80]),
            Some(true)
        );
        // A read that brought only more of that PUBLISH.
        assert_eq!(
            paced_after_read(false, false, &[PUBLISH_QOS1, 0x80, 0x40]),
            Some(true)
        );
    }

    #[test]
    fn a_read_that_completes_nothing_else_keeps_the_rule() {
        assert_eq!(paced_after_read(false, false, &[]), None);
        assert_eq!(paced_after_read(false, false, &[PINGREQ_FIRST]), None);
    }

    #[test]
    fn an_idle_wire_keeps_no_batch_inline() {
        // Every idle connection's task holds its wire (issue 3's idle memory): besides the
        // transport, only the read buffer's handle, one pointer for the batch, its place among
        // the readers held back by pacing and a few counters; the batch's buffer and counters
        // must not come back inline.
        let own = std::mem::size_of::<Wire>() - std::mem::size_of::<Transport>();
        assert!(own <= 72, "{own} bytes besides the transport");
    }
}
