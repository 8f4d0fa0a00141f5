//! A `std::io` view of an async stream, for tungstenite (whose WebSocket state machine reads
//! and writes through `Read` and `Write`, and resumes after `WouldBlock`).
//!
//! Two tasks drive one WebSocket: the connection's reader (which also writes, to answer a
//! ping or a Close frame) and its writer. glommio keeps one waker per direction of a socket,
//! the last registered, so a reader waiting to send a pong would silently unregister a writer
//! waiting for the same socket to drain. The stream is therefore always polled with proxy
//! wakers: read readiness wakes the reader, write readiness wakes both tasks, each of which
//! records its own waker here before every call.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use futures_lite::{AsyncRead, AsyncWrite};

/// The wakers of the tasks waiting on one stream: the last poller on each side.
#[derive(Default)]
struct TaskWakers {
    /// The task that reads messages (and answers control frames).
    reader: Mutex<Option<Waker>>,
    /// The task that writes messages.
    writer: Mutex<Option<Waker>>,
}

/// Locks a waker slot; a poisoned slot (a panic while holding it, which only a waker's own
/// code could cause) still holds a usable value.
fn lock(slot: &Mutex<Option<Waker>>) -> MutexGuard<'_, Option<Waker>> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Records `waker` in `slot` unless it is already there.
fn record(slot: &Mutex<Option<Waker>>, waker: &Waker) {
    let mut slot = lock(slot);
    if !slot.as_ref().is_some_and(|held| held.will_wake(waker)) {
        *slot = Some(waker.clone());
    }
}

/// Wakes the task recorded in `slot`, if any (it records itself again when it polls).
fn wake(slot: &Mutex<Option<Waker>>) {
    if let Some(waker) = lock(slot).take() {
        waker.wake();
    }
}

/// The waker handed to the stream's reads: data arrived, the reader may go on.
struct ReadReady(Arc<TaskWakers>);

impl Wake for ReadReady {
    fn wake(self: Arc<Self>) {
        wake(&self.0.reader);
    }
}

/// The waker handed to the stream's writes: room to write, whoever waited for it may go on.
struct WriteReady(Arc<TaskWakers>);

impl Wake for WriteReady {
    fn wake(self: Arc<Self>) {
        wake(&self.0.reader);
        wake(&self.0.writer);
    }
}

/// An async stream seen as a non-blocking `Read + Write` (`Pending` becomes `WouldBlock`).
pub(super) struct SyncIo<S> {
    inner: S,
    wakers: Arc<TaskWakers>,
    read_ready: Waker,
    write_ready: Waker,
    /// Bytes that may still be read before reads fail (bounds an upgrade request's size).
    read_budget: Option<usize>,
}

impl<S> SyncIo<S> {
    /// Wraps `inner`.
    pub(super) fn new(inner: S) -> SyncIo<S> {
        let wakers = Arc::new(TaskWakers::default());
        SyncIo {
            inner,
            read_ready: Waker::from(Arc::new(ReadReady(wakers.clone()))),
            write_ready: Waker::from(Arc::new(WriteReady(wakers.clone()))),
            wakers,
            read_budget: None,
        }
    }

    /// Records the reading task's waker before it calls in.
    pub(super) fn register_reader(&self, waker: &Waker) {
        record(&self.wakers.reader, waker);
    }

    /// Records the writing task's waker before it calls in.
    pub(super) fn register_writer(&self, waker: &Waker) {
        record(&self.wakers.writer, waker);
    }

    /// Limits the bytes further reads may return (`None`: no limit).
    pub(super) fn limit_reads(&mut self, budget: Option<usize>) {
        self.read_budget = budget;
    }

    /// The wrapped stream.
    pub(super) fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// The outcome of a poll as the result of a non-blocking call.
fn would_block<T>(poll: Poll<io::Result<T>>) -> io::Result<T> {
    match poll {
        Poll::Ready(result) => result,
        Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}

impl<S: AsyncWrite + Unpin> SyncIo<S> {
    /// Closes the wrapped stream's sending side.
    pub(super) fn poll_close(&mut self) -> Poll<io::Result<()>> {
        let mut cx = Context::from_waker(&self.write_ready);
        Pin::new(&mut self.inner).poll_close(&mut cx)
    }
}

impl<S: AsyncRead + Unpin> Read for SyncIo<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let allowed = match self.read_budget {
            Some(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "request too large",
                ))
            }
            Some(budget) => budget.min(buf.len()),
            None => buf.len(),
        };
        let mut cx = Context::from_waker(&self.read_ready);
        let read = would_block(Pin::new(&mut self.inner).poll_read(&mut cx, &mut buf[..allowed]))?;
        if let Some(budget) = &mut self.read_budget {
            *budget = budget.saturating_sub(read);
        }
        Ok(read)
    }
}

impl<S: AsyncWrite + Unpin> Write for SyncIo<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut cx = Context::from_waker(&self.write_ready);
        would_block(Pin::new(&mut self.inner).poll_write(&mut cx, buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut cx = Context::from_waker(&self.write_ready);
        would_block(Pin::new(&mut self.inner).poll_flush(&mut cx))
    }
}
