//! Listeners: every shard binds every configured address itself (SO_REUSEPORT, so the kernel
//! spreads accepted connections over the shards) and serves what it accepts.

use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpListener;

use crate::connection::{self, ConnectionSlots};
use crate::shard::{Counters, Shard};

/// How often an idle accept loop checks for shutdown.
const SHUTDOWN_POLL: Duration = Duration::from_millis(100);

/// Accepts connections on `listener` until the broker shuts down, serving each in its own task.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, slots: Rc<ConnectionSlots>) {
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
                let slot = slots.acquire();
                glommio::spawn_local(connection::serve(shard.clone(), stream, slot)).detach();
            }
            Some(Err(error)) => {
                // Typically EMFILE: back off briefly instead of spinning.
                tracing::warn!(%error, "accept failed");
                glommio::timer::sleep(SHUTDOWN_POLL).await;
            }
        }
    }
}
