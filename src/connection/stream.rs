//! Read and write halves of one TCP stream, so that a connection's reader task and writer task
//! run side by side on their shard without a lock: both halves live on the same thread and
//! each borrows the stream only for the duration of one non-blocking poll.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures_lite::{ready, AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

/// Most bytes [`ReadHalf::read_appending`] takes per read.
pub const STACK_READ: usize = 4096;

/// Splits `stream` into halves that can be driven by two tasks of the same shard.
pub fn split(stream: TcpStream) -> (ReadHalf, WriteHalf) {
    let shared = Rc::new(RefCell::new(stream));
    (ReadHalf(shared.clone()), WriteHalf(shared))
}

/// A borrow failure would mean two polls of one stream at once, which a single-threaded
/// executor cannot do; it is reported as an I/O error rather than a panic all the same.
fn busy() -> io::Error {
    io::Error::other("stream polled re-entrantly")
}

/// The receiving half.
pub struct ReadHalf(Rc<RefCell<TcpStream>>);

impl ReadHalf {
    /// A second descriptor for the socket, so that it outlives this stream (to hand the
    /// connection to another core).
    pub fn duplicate_socket(&self) -> io::Result<OwnedFd> {
        let stream = self.0.try_borrow().map_err(|_| busy())?;
        // SAFETY: the descriptor belongs to `stream`, which is alive for this whole call;
        // it is only duplicated, not taken.
        let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
        fd.try_clone_to_owned()
    }
}

impl ReadHalf {
    /// Appends to `buf` what one read of at most [`STACK_READ`] bytes returns (0 = closed by
    /// the peer).
    ///
    /// The bytes land in a buffer on the stack of the poll and are copied out only when they
    /// arrive, so a connection waiting for its client holds no read buffer at all: glommio
    /// waits for readiness without one and reads only once data is there.
    pub async fn read_appending(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        futures_lite::future::poll_fn(|cx| {
            let mut chunk = [0u8; STACK_READ];
            let read = ready!(Pin::new(&mut *self).poll_read(cx, &mut chunk));
            if let Ok(n) = read {
                buf.extend_from_slice(&chunk[..n]);
            }
            Poll::Ready(read)
        })
        .await
    }
}

/// The sending half.
pub struct WriteHalf(Rc<RefCell<TcpStream>>);

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.0.try_borrow_mut() {
            Ok(mut stream) => Pin::new(&mut *stream).poll_read(cx, buf),
            Err(_) => Poll::Ready(Err(busy())),
        }
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.0.try_borrow_mut() {
            Ok(mut stream) => Pin::new(&mut *stream).poll_write(cx, buf),
            Err(_) => Poll::Ready(Err(busy())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.0.try_borrow_mut() {
            Ok(mut stream) => Pin::new(&mut *stream).poll_flush(cx),
            Err(_) => Poll::Ready(Err(busy())),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.0.try_borrow_mut() {
            Ok(mut stream) => Pin::new(&mut *stream).poll_close(cx),
            Err(_) => Poll::Ready(Err(busy())),
        }
    }
}
