//! Read and write halves of one connection's [`Transport`], so that its reads and writes are
//! polled side by side by the connection's one task without a lock: each half borrows the
//! transport only for the duration of one non-blocking poll. (A parked transport relies on
//! that one task: see `transport::parked`.)
//!
//! A TLS or WebSocket transport may keep written bytes in its own buffer when the socket is
//! full: the writer must `flush` after each batch (a no-op for plain TCP) and `close` at the
//! end.

use std::cell::RefCell;
use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures_lite::{ready, AsyncRead, AsyncWrite};

use crate::transport::parked::recv_now;
use crate::transport::Transport;

/// Most bytes [`ReadHalf::read_appending`] takes per read.
pub const STACK_READ: usize = 4096;

/// Splits `stream` into halves that can be driven by two tasks of the same shard.
pub fn split(stream: Transport) -> (ReadHalf, WriteHalf) {
    let shared = Rc::new(RefCell::new(stream));
    (ReadHalf(shared.clone()), WriteHalf(shared))
}

/// The transport `split` divided, whole again: an established connection drives both
/// directions from its one task.
pub fn join(reader: ReadHalf, writer: WriteHalf) -> Transport {
    drop(writer);
    match Rc::try_unwrap(reader.0) {
        Ok(stream) => stream.into_inner(),
        // The two halves are the only holders of the `Rc` (`split` makes exactly two, neither
        // can be cloned, and the field is private to this module): with the writer dropped,
        // the reader's is the last one.
        Err(_) => unreachable!("a stream half outlived its pair"),
    }
}

/// A borrow failure would mean two polls of one stream at once, which a single-threaded
/// executor cannot do; it is reported as an I/O error rather than a panic all the same.
fn busy() -> io::Error {
    io::Error::other("stream polled re-entrantly")
}

/// The receiving half.
pub struct ReadHalf(Rc<RefCell<Transport>>);

impl ReadHalf {
    /// A second descriptor for the socket, so that it outlives this stream (to hand the
    /// connection to another core). Only a plain TCP connection can be handed over: a TLS or
    /// WebSocket one keeps its protocol state in this core's memory.
    pub fn duplicate_socket(&self) -> io::Result<OwnedFd> {
        let transport = self.0.try_borrow().map_err(|_| busy())?;
        let Some(socket) = transport.tcp_socket() else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "a {} connection cannot be handed to another core",
                    transport.kind()
                ),
            ));
        };
        socket.try_clone_to_owned()
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

    /// Appends to `buf` what the socket of a plain TCP connection holds already, without
    /// waiting: `None` when nothing is there yet (or the transport is not plain TCP).
    ///
    /// For the first read of a connection: glommio arms a readiness poll for each new socket
    /// and waits for that poll's completion before it reads, even when the bytes are there
    /// already, which costs a turn of the core's event loop where this costs one `recv`; and
    /// a new connection's first bytes are there when it is accepted (see `listener::bind`).
    pub fn read_now(&mut self, buf: &mut BytesMut) -> Option<io::Result<usize>> {
        let transport = self.0.try_borrow().ok()?;
        let socket = transport.tcp_socket()?;
        let mut chunk = [0u8; STACK_READ];
        let read = recv_now(socket, &mut chunk)?;
        if let Ok(count) = read {
            buf.extend_from_slice(&chunk[..count]);
        }
        Some(read)
    }
}

/// The sending half.
pub struct WriteHalf(Rc<RefCell<Transport>>);

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

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::os::fd::{AsRawFd, BorrowedFd};
    use std::rc::Rc;
    use std::time::Duration;

    use async_tungstenite::tungstenite::Message;
    use async_tungstenite::WebSocketStream;
    use futures_lite::{AsyncReadExt, AsyncWriteExt, StreamExt};
    use glommio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::transport::testing::{run, within, ws_connect};
    use crate::transport::{Acceptor, WebSocketSettings};

    /// Bytes the writer sends: far more than the socket buffers hold.
    const TOTAL: usize = 1 << 20;
    /// Bytes per write.
    const WRITE: usize = 64 * 1024;

    /// Makes a socket's send buffer as small as the kernel allows, so that it fills quickly.
    fn shrink_send_buffer(stream: &TcpStream) {
        // SAFETY: the descriptor belongs to `stream`, alive for this whole call.
        let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
        socket2::SockRef::from(&fd)
            .set_send_buffer_size(4096)
            .expect("set the send buffer size");
    }

    /// A WebSocket client connected to a server transport whose send buffer is small.
    async fn websocket_pair() -> (WebSocketStream<TcpStream>, Transport) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let server = glommio::spawn_local(async move {
            let stream = listener.accept().await.expect("accept");
            shrink_send_buffer(&stream);
            Acceptor::websocket(WebSocketSettings::default())
                .accept(stream)
                .await
        });
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (client, _) = within(ws_connect(stream, "/mqtt", &["mqtt"], None))
            .await
            .expect("client upgrade");
        let transport = within(server).await.expect("server upgrade").transport;
        (client, transport)
    }

    #[test]
    fn only_a_plain_tcp_socket_can_be_duplicated() {
        run(|| async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("address");
            let _client = TcpStream::connect(addr).await.expect("connect");
            let stream = listener.accept().await.expect("accept");
            let (reader, _writer) = split(Transport::Tcp(Box::new(stream)));
            assert!(reader.duplicate_socket().is_ok());

            let (_client, transport) = websocket_pair().await;
            let (reader, _writer) = split(transport);
            let error = reader.duplicate_socket().err();
            assert_eq!(
                error.map(|e| e.to_string()),
                Some("a ws connection cannot be handed to another core".to_owned())
            );
        });
    }

    /// A connection accepted from `listener::bind` has TCP_NODELAY, and its first bytes are
    /// there at once; `read_now` takes them without waiting, says `None` once nothing is left,
    /// and sees the peer's close.
    #[test]
    fn read_now_takes_what_a_new_connection_sent() {
        run(|| async {
            let listener =
                crate::listener::bind("127.0.0.1:0".parse().expect("address")).expect("bind");
            let addr = listener.local_addr().expect("address");
            let mut client = TcpStream::connect(addr).await.expect("connect");
            client.write_all(b"\x10\x0c").await.expect("send");
            let stream = within(listener.accept()).await.expect("accept");
            assert!(stream.nodelay().expect("TCP_NODELAY"));
            let (mut reader, _writer) = split(Transport::Tcp(Box::new(stream)));
            let mut buf = BytesMut::new();
            assert_eq!(
                reader.read_now(&mut buf).map(|read| read.ok()),
                Some(Some(2))
            );
            assert_eq!(&buf[..], b"\x10\x0c");
            assert!(reader.read_now(&mut buf).is_none());
            drop(client);
            let mut closed = None;
            for _ in 0..100 {
                closed = reader.read_now(&mut buf);
                if closed.is_some() {
                    break;
                }
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(closed.map(|read| read.ok()), Some(Some(0)));

            let (_client, transport) = websocket_pair().await;
            let (mut reader, _writer) = split(transport);
            assert!(reader.read_now(&mut buf).is_none());
        });
    }

    /// The writer task blocks on a full socket while the reader task must answer a ping on
    /// the same socket: both get going again once the client reads.
    #[test]
    fn websocket_halves_share_a_full_socket_between_two_tasks() {
        run(|| async {
            let (mut client, transport) = websocket_pair().await;
            let (mut reader, mut writer) = split(transport);

            let written_all = Rc::new(Cell::new(false));
            let done = written_all.clone();
            let writer_task = glommio::spawn_local(async move {
                for index in 0..TOTAL / WRITE {
                    let chunk = vec![index as u8; WRITE];
                    writer.write_all(&chunk).await.expect("write");
                }
                writer.flush().await.expect("flush");
                done.set(true);
                writer
            });
            let reader_task = glommio::spawn_local(async move {
                let mut received = Vec::new();
                let end = reader.read_to_end(&mut received).await;
                (end, received)
            });

            glommio::timer::sleep(Duration::from_millis(50)).await;
            assert!(
                !written_all.get(),
                "the writer should be blocked on a full socket"
            );
            client
                .send(Message::Ping(b"still there?".to_vec()))
                .await
                .expect("ping");
            client
                .send(Message::Binary(vec![0xc0, 0x00]))
                .await
                .expect("send");
            // The reader now owes a pong it cannot send yet.
            glommio::timer::sleep(Duration::from_millis(50)).await;

            let mut data = Vec::new();
            let mut pong = false;
            while data.len() < TOTAL || !pong {
                match within(client.next()).await {
                    Some(Ok(Message::Binary(bytes))) => data.extend_from_slice(&bytes),
                    Some(Ok(Message::Pong(payload))) => {
                        assert_eq!(payload, b"still there?");
                        pong = true;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            let expected: Vec<u8> = (0..TOTAL / WRITE)
                .flat_map(|index| vec![index as u8; WRITE])
                .collect();
            assert!(data == expected, "the data arrived whole and in order");
            let mut writer = within(writer_task).await;
            assert!(written_all.get());

            // The server closes: its Close frame, then the client's answer (sent as it reads
            // on) ends the reader.
            writer.close().await.expect("close");
            assert!(matches!(
                within(client.next()).await,
                Some(Ok(Message::Close(_)))
            ));
            assert!(within(client.next()).await.is_none());
            let (end, received) = within(reader_task).await;
            assert_eq!(end.ok(), Some(2));
            assert_eq!(received, [0xc0, 0x00]);
        });
    }
}
