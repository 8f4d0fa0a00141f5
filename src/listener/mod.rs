//! Listeners: every shard binds every configured address itself (SO_REUSEPORT, so the kernel
//! spreads accepted connections over the shards) and serves what it accepts, in the
//! listener's transport and under its access rules ([`ListenerState`]), which SIGHUP reloads
//! ([`files`]).

pub mod files;
mod per_ip;
mod state;

use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpListener;

pub use files::{AccessFiles, ListenerFileError, ListenerFileProblem, ListenerFiles, ReloadSource};
pub use per_ip::{PerIpGuard, PerIpLimits, PerIpRefusal};
pub use state::{Admission, ClientAccess, ListenerState, ListenerTicket};

use crate::connection;
use crate::shard::{Counters, Shard};

/// How often an idle accept loop checks for shutdown.
const SHUTDOWN_POLL: Duration = Duration::from_millis(100);

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
