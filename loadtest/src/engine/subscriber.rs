//! A long-lived subscriber: connect, subscribe, then read, decode, account and acknowledge
//! every delivery until the run stops.

use std::collections::HashSet;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future;
use glommio::sync::StaticPermit;
use hydrant::protocol::{Packet, PacketId, QoS};

use super::executor::Executor;
use super::shared::bump;
use crate::client::{ClientError, Connection};
use crate::payload::Header;

/// How long a closing client waits for the broker to close its side.
pub const DISCONNECT_LINGER: Duration = Duration::from_millis(500);

/// Runs subscriber `global` (slot `local` of its executor).
pub async fn run(executor: Rc<Executor>, local: usize, global: usize, permit: StaticPermit) {
    let who = format!("subscriber {global}");
    let plan = &executor.plan.subscribers[global];
    let options = &executor.plan.target.connect;
    let setup = async {
        let (mut connection, took) = Connection::open_session(
            options,
            executor.client_id("s", global),
            !options.persistent_subscribers,
        )
        .await?;
        executor.record_connect(took);
        let granted = connection
            .subscribe(&plan.filter, plan.qos, options.timeout)
            .await?;
        Ok::<_, ClientError>((connection, granted))
    };
    let started = future::or(async { Some(setup.await) }, async {
        executor.stop.wait().await;
        None
    })
    .await;
    drop(permit);
    let mut connection = match started {
        None => return,
        Some(Err(error)) => {
            executor.client_error(&who, &error, true);
            return;
        }
        Some(Ok((connection, granted))) => {
            if let Some(record) = executor.subscribers.borrow_mut().get_mut(local) {
                record.granted_qos = Some(granted as u8);
            }
            bump(&executor.progress().subscribers_ready, 1);
            connection
        }
    };
    match receive(&executor, local, &mut connection).await {
        Ok(()) => connection.disconnect(DISCONNECT_LINGER).await,
        Err(error) => {
            if let Some(record) = executor.subscribers.borrow_mut().get_mut(local) {
                record.dropped = true;
            }
            executor.client_error(&who, &error, false);
        }
    }
}

/// What ended a wait of the receive loop.
enum Event {
    /// Bytes arrived (or the connection failed).
    Input(Result<usize, ClientError>),
    /// The run stops.
    Stop,
    /// A keep-alive ping is due.
    Ping,
}

/// The receive loop; returns when the run stops.
async fn receive(
    executor: &Executor,
    local: usize,
    connection: &mut Connection,
) -> Result<(), ClientError> {
    let target = executor.plan.subscriber_target;
    let clock = executor.shared.clock;
    let mut awaiting_release: HashSet<PacketId> = HashSet::new();
    let ping_interval = executor.plan.target.connect.ping_interval();
    let mut next_ping = ping_interval.map(|interval| Instant::now() + interval);
    loop {
        // Looked at first: under a flood the read below is always ready and would win the race.
        if executor.stop.is_raised() {
            return Ok(());
        }
        let event = future::or(
            async { Event::Input(connection.fill().await) },
            future::or(
                async {
                    executor.stop.wait().await;
                    Event::Stop
                },
                async {
                    match next_ping {
                        Some(at) => {
                            glommio::timer::sleep(at.saturating_duration_since(Instant::now()))
                                .await
                        }
                        None => future::pending::<()>().await,
                    }
                    Event::Ping
                },
            ),
        )
        .await;
        match event {
            Event::Stop => return Ok(()),
            Event::Ping => {
                connection.queue(&Packet::PingReq);
                next_ping = ping_interval.map(|interval| Instant::now() + interval);
                continue;
            }
            Event::Input(result) => {
                result?;
            }
        }
        let now = clock.now_ns();
        let (window_start, window_end) = executor.shared.window();
        let mut delivered = 0u64;
        let mut in_window = 0u64;
        let arrived_in_window = now >= window_start && now < window_end;
        {
            let mut records = executor.subscribers.borrow_mut();
            let Some(record) = records.get_mut(local) else {
                return Ok(());
            };
            let mut latency = executor.latency.borrow_mut();
            let mut interval = executor.interval.borrow_mut();
            while let Some(packet) = connection.next_packet()? {
                let publish = match packet {
                    Packet::Publish(publish) => publish,
                    Packet::PubRel(id) => {
                        awaiting_release.remove(&id);
                        connection.queue(&Packet::PubComp(id));
                        continue;
                    }
                    Packet::PingResp => continue,
                    other => return Err(ClientError::Unexpected(other.name())),
                };
                match (publish.qos, publish.packet_id) {
                    (QoS::AtLeastOnce, Some(id)) => connection.queue(&Packet::PubAck(id)),
                    (QoS::ExactlyOnce, Some(id)) => {
                        connection.queue(&Packet::PubRec(id));
                        // A QoS 2 PUBLISH repeated before its PUBREL is the same delivery.
                        if !awaiting_release.insert(id) {
                            continue;
                        }
                    }
                    _ => {}
                }
                delivered += 1;
                record.delivered_total += 1;
                if arrived_in_window {
                    record.arrived_in_window += 1;
                }
                record.first_delivery_ns.get_or_insert(now);
                if target == Some(record.delivered_total) {
                    record.target_reached_ns = Some(clock.now_ns());
                }
                match Header::read(&publish.payload) {
                    Some(header) => {
                        let took = now.saturating_sub(header.sent_at_ns).max(1);
                        interval.saturating_record(took);
                        if header.sent_at_ns >= window_start && header.sent_at_ns < window_end {
                            in_window += 1;
                            record.ledger.record(header.stream, header.seq);
                            latency.saturating_record(took);
                        }
                    }
                    None => {
                        in_window += 1;
                        record.ledger.untracked += 1;
                    }
                }
            }
        }
        let progress = executor.progress();
        bump(&progress.delivered, delivered);
        bump(&progress.delivered_in_window, in_window);
        // Acknowledgements queued above go out with the next `fill`, which writes while it
        // waits for input.
        glommio::yield_if_needed().await;
    }
}
