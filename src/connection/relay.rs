//! Serving a connection on the core that holds its session when its transport cannot move
//! there: a TLS session or a WebSocket lives in the accepting core's memory, unlike a bare TCP
//! socket, whose descriptor can be handed over.
//!
//! The accepting core keeps the transport and runs a pump task that moves bytes both ways over
//! a pair of bounded glommio shared channels; the session's core serves the connection as usual
//! over a [`RelayStream`], which reads and writes those channels. Either side ending closes
//! the channels, which ends the other side.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::{ready, AsyncRead, AsyncWrite, AsyncWriteExt, Stream};
use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};

use super::stream::{ReadHalf, WriteHalf};

/// Chunks in flight in each direction of one relayed connection.
const RELAY_CHANNEL_CAPACITY: usize = 64;

/// Longest the pump waits for the session's core to take its ends.
const RELAY_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How a connection travels to the core that holds its session.
#[derive(Debug)]
pub enum MovedTransport {
    /// A plain TCP socket (a duplicate descriptor; the accepting core closed its own).
    Socket(OwnedFd),
    /// A TLS or WebSocket transport stays on the accepting core, which relays its bytes.
    Relay(RelayEnds),
}

/// The session core's ends of a relay, sent to it with the connection.
#[derive(Debug)]
pub struct RelayEnds {
    /// What the client sends.
    from_client: SharedReceiver<Bytes>,
    /// What goes to the client.
    to_client: SharedSender<Bytes>,
}

/// Starts relaying the transport behind `reader` and `writer` (on this core) and returns the
/// ends the session's core serves the connection through.
pub fn start(reader: ReadHalf, writer: WriteHalf) -> RelayEnds {
    let (to_session, from_client) = shared_channel::new_bounded(RELAY_CHANNEL_CAPACITY);
    let (to_client, from_session) = shared_channel::new_bounded(RELAY_CHANNEL_CAPACITY);
    glommio::spawn_local(pump(reader, writer, to_session, from_session)).detach();
    RelayEnds {
        from_client,
        to_client,
    }
}

/// Moves bytes between the transport and the session's core until either side ends.
async fn pump(
    mut reader: ReadHalf,
    mut writer: WriteHalf,
    to_session: SharedSender<Bytes>,
    from_session: SharedReceiver<Bytes>,
) {
    let connected = futures_lite::future::or(
        async { Some((to_session.connect().await, from_session.connect().await)) },
        async {
            glommio::timer::sleep(RELAY_CONNECT_TIMEOUT).await;
            None
        },
    )
    .await;
    let Some((to_session, from_session)) = connected else {
        tracing::warn!("relayed connection dropped: its session's core did not take it");
        return;
    };
    let upstream = async {
        loop {
            let mut chunk = BytesMut::new();
            match reader.read_appending(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if to_session.send(chunk.freeze()).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let downstream = async {
        while let Some(bytes) = from_session.recv().await {
            if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
                return;
            }
        }
        let _ = writer.close().await;
    };
    futures_lite::future::or(upstream, downstream).await;
}

/// A channel end that connects to its peer on first use.
enum Lazy<T> {
    Connecting(Pin<Box<dyn Future<Output = T>>>),
    Connected(T),
}

impl<T> Lazy<T> {
    fn poll_connected(&mut self, cx: &mut Context<'_>) -> Poll<&mut T> {
        if let Lazy::Connecting(connecting) = self {
            let connected = ready!(connecting.as_mut().poll(cx));
            *self = Lazy::Connected(connected);
        }
        match self {
            Lazy::Connected(end) => Poll::Ready(end),
            // Not reachable: a connecting end became connected just above or returned.
            Lazy::Connecting(_) => Poll::Pending,
        }
    }
}

/// A sending end shared by the stream and its send in progress.
type Sender = Rc<ConnectedSender<Bytes>>;

/// The session core's side of a relayed connection: a byte stream over the relay's channels.
pub struct RelayStream {
    from_client: Lazy<ConnectedReceiver<Bytes>>,
    /// Received but not yet read.
    unread: Bytes,
    to_client: Lazy<Sender>,
    /// A chunk accepted by `poll_write` and still on its way into the channel.
    sending: Option<Pin<Box<dyn Future<Output = bool>>>>,
    peer: SocketAddr,
}

impl RelayStream {
    /// The stream over `ends` for the client at `peer`; the channels connect on first use.
    pub fn new(ends: RelayEnds, peer: SocketAddr) -> Self {
        let RelayEnds {
            from_client,
            to_client,
        } = ends;
        Self {
            from_client: Lazy::Connecting(Box::pin(from_client.connect())),
            unread: Bytes::new(),
            to_client: Lazy::Connecting(Box::pin(
                async move { Rc::new(to_client.connect().await) },
            )),
            sending: None,
            peer,
        }
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Completes the send in progress, if any.
    fn poll_sent(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(sending) = &mut self.sending {
            let sent = ready!(sending.as_mut().poll(cx));
            self.sending = None;
            if !sent {
                return Poll::Ready(Err(closed()));
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// The relay's other side has ended.
fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "relayed connection closed")
}

impl AsyncRead for RelayStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.unread.is_empty() {
            let receiver = ready!(this.from_client.poll_connected(cx));
            match ready!(Pin::new(receiver).poll_next(cx)) {
                Some(bytes) => this.unread = bytes,
                None => return Poll::Ready(Ok(0)),
            }
        }
        let n = buf.len().min(this.unread.len());
        buf[..n].copy_from_slice(&this.unread.split_to(n));
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for RelayStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_sent(cx))?;
        let sender = ready!(this.to_client.poll_connected(cx)).clone();
        let chunk = Bytes::copy_from_slice(buf);
        let mut sending: Pin<Box<dyn Future<Output = bool>>> =
            Box::pin(async move { sender.send(chunk).await.is_ok() });
        match sending.as_mut().poll(cx) {
            Poll::Ready(false) => return Poll::Ready(Err(closed())),
            Poll::Ready(true) => {}
            Poll::Pending => this.sending = Some(sending),
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_sent(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_sent(cx)
    }
}
