//! Idle connections: opened at a given rate once the run starts, then held, silent, until it
//! stops, to measure connection rate and the broker's memory per connection.

use std::rc::Rc;

use futures_lite::future;
use glommio::sync::Semaphore;

use super::executor::{owned, Executor, Pacer};
use super::shared::bump;
use super::subscriber::DISCONNECT_LINGER;
use hydrant::protocol::Packet;

use crate::client::Connection;
use crate::plan::IdlePlan;

/// Connections one executor has in set-up at once.
const CONNECT_CONCURRENCY: u64 = 128;

/// Opens this executor's share of the idle connections and holds them.
pub async fn run(executor: Rc<Executor>, idle: IdlePlan) {
    future::or(executor.running.wait(), executor.stop.wait()).await;
    let cores = executor.plan.cores;
    let mut pacer = Pacer::new(idle.connect_rate.map(|r| r / cores as f64));
    let permits = Rc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut held = Vec::new();
    for global in owned(executor.index, cores, idle.connections) {
        let paced = future::or(
            async {
                pacer.next().await;
                true
            },
            async {
                executor.stop.wait().await;
                false
            },
        )
        .await;
        if !paced {
            break;
        }
        let Ok(permit) = permits.acquire_static_permit(1).await else {
            break;
        };
        let executor = executor.clone();
        let task = glommio::spawn_local(async move {
            let who = format!("connection {global}");
            let options = &executor.plan.target.connect;
            let opened = future::or(
                async { Some(Connection::open(options, executor.client_id("c", global)).await) },
                async {
                    executor.stop.wait().await;
                    None
                },
            )
            .await;
            drop(permit);
            match opened {
                None => {}
                Some(Err(error)) => executor.client_error(&who, &error, false),
                Some(Ok((mut connection, took))) => {
                    executor.record_connect(took);
                    bump(&executor.progress().idle_open, 1);
                    hold(&executor, &mut connection).await;
                    connection.disconnect(DISCONNECT_LINGER).await;
                }
            }
        });
        held.push(task.detach());
    }
    for task in &mut held {
        task.await;
    }
}

/// Holds an idle connection until the run stops, pinging when keep-alive asks for it.
async fn hold(executor: &Executor, connection: &mut Connection) {
    let Some(interval) = executor.plan.target.connect.ping_interval() else {
        executor.stop.wait().await;
        return;
    };
    loop {
        let stopped = future::or(
            async {
                executor.stop.wait().await;
                true
            },
            async {
                glommio::timer::sleep(interval).await;
                false
            },
        )
        .await;
        if stopped {
            return;
        }
        connection.queue(&Packet::PingReq);
        let pinged = future::or(async { connection.flush().await.is_ok() }, async {
            executor.stop.wait().await;
            false
        })
        .await;
        if !pinged {
            return;
        }
        // Answers (PINGRESP) are read and dropped so they never pile up.
        while let Some(Ok(_)) = future::poll_once(connection.fill()).await {
            connection.discard_input();
        }
    }
}
