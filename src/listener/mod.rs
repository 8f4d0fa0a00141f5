//! Listeners: every shard binds every configured address itself (SO_REUSEPORT, so the kernel
//! spreads accepted connections over the shards) and serves what it accepts, in the
//! listener's transport and under its access rules ([`ListenerState`]), which SIGHUP reloads
//! ([`files`]).

pub mod files;
mod per_ip;
mod state;

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};

pub use files::{AccessFiles, ListenerFileError, ListenerFileProblem, ListenerFiles, ReloadSource};
pub use per_ip::{PerIpGuard, PerIpLimits, PerIpRefusal};
pub use state::{Admission, ClientAccess, ListenerState, ListenerTicket};

use crate::connection;
use crate::shard::{Counters, Shard};

/// How often an idle accept loop checks for shutdown.
const SHUTDOWN_POLL: Duration = Duration::from_millis(100);

/// Seconds the kernel holds a new connection back from `accept` until its first bytes
/// arrive (`TCP_DEFER_ACCEPT`; a connection still silent then is accepted anyway).
const DEFER_ACCEPT_SECS: libc::c_int = 1;

/// Connections the kernel queues for `accept` per core (glommio's own `bind` uses the same).
const LISTEN_BACKLOG: i32 = 1024;

/// Binds one core's socket for a listener at `addr`, as glommio's own `bind` does
/// (SO_REUSEPORT, so that every core binds the address, and a backlog of 1,024), with
/// TCP_NODELAY for every connection it accepts, and defers accepting each connection until
/// its first bytes arrive.
///
/// Every client of every transport speaks first (CONNECT, a TLS ClientHello, an HTTP
/// upgrade), so `TCP_DEFER_ACCEPT` costs nobody a round trip: the accept and the first read
/// then happen in one wake-up of the core instead of two, a large part of the cost of a
/// client that connects, publishes once and leaves.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_port(true)?;
    // Accepted connections inherit it: no option to set on each one.
    socket.set_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    let seconds = DEFER_ACCEPT_SECS;
    // SAFETY: the descriptor belongs to `socket`, alive for this call, and the option's
    // value is a c_int of the size passed.
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            std::ptr::addr_of!(seconds).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if set != 0 {
        // An optimisation only: the listener works the same without it.
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot set TCP_DEFER_ACCEPT");
    }
    // SAFETY: the descriptor is a bound, listening TCP socket, handed over whole.
    Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
}

/// Accepts connections on `listener` until the broker shuts down, serving each in its own task.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, state: Rc<ListenerState>) {
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            while !shard.is_shutting_down() {
                glommio::timer::sleep(SHUTDOWN_POLL).await;
            }
            None
        })
        .await;
        match accepted {
            None => return,
            Some(Ok(stream)) => {
                Counters::add(&shard.counters.connections_accepted, 1);
                glommio::spawn_local(connection::serve(shard.clone(), state.clone(), stream))
                    .detach();
            }
            Some(Err(error)) => {
                // Typically EMFILE: back off briefly instead of spinning.
                tracing::warn!(%error, "accept failed");
                glommio::timer::sleep(SHUTDOWN_POLL).await;
            }
        }
    }
}
