//! Sessions: persistent sessions queue QoS 1/2 while offline, clean sessions start and end
//! empty, unacknowledged messages are resent with DUP, and a second connection with the same
//! client id takes the session over (also from another core).

mod common;

use std::time::Duration;

use common::broker::field;
use common::client::{self, connect_persistent, level, options};
use common::{Broker, LOG_TIMEOUT, QUIET};

/// Attempts at getting two connections of one client id onto different cores.
const TAKEOVER_ATTEMPTS: usize = 16;

fn payloads(publishes: &[rumqttc::Publish]) -> Vec<String> {
    publishes
        .iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_session_gets_qos1_and_qos2_published_while_away() {
    let broker = Broker::start(&[]);
    let (mut sub, present) = connect_persistent(broker.port, "away", false).await;
    assert!(
        !present,
        "a new client id has no session: session_present=false"
    );
    sub.subscribe("sess/away", 2).await;
    sub.disconnect().await;
    broker
        .wait_disconnected("away", LOG_TIMEOUT)
        .expect("`client disconnected client_id=away`");

    let mut publisher = client::connect(broker.port, "away-pub").await;
    publisher
        .publish("sess/away", 0, false, "q0 while away")
        .await;
    publisher
        .publish("sess/away", 1, false, "q1 while away")
        .await;
    publisher
        .publish("sess/away", 2, false, "q2 while away")
        .await;
    // The QoS 0 one reached the offline session (and was not queued) before it returns.
    publisher.sync_cores().await;

    let (mut sub, present) = connect_persistent(broker.port, "away", false).await;
    assert!(
        present,
        "returning persistent session: session_present=true"
    );
    let mut got = sub.collect_publishes(2).await;
    tokio::time::sleep(QUIET).await;
    got.extend(sub.drain_publishes(common::SETTLED).await);
    assert_eq!(
        payloads(&got),
        ["q1 while away", "q2 while away"],
        "queued QoS 1 and 2 delivered in order; QoS 0 is not queued offline (contract)"
    );
    assert_eq!(level(got[0].qos), 1);
    assert_eq!(level(got[1].qos), 2);

    publisher.publish("sess/away", 1, false, "live again").await;
    let p = sub
        .next_publish("the subscription survived: live message without re-subscribing")
        .await;
    assert_eq!(&p.payload[..], b"live again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_session_starts_empty_and_discards_the_old_session() {
    let broker = Broker::start(&[]);
    let (mut sub, _) = connect_persistent(broker.port, "cleaner", false).await;
    sub.subscribe("sess/clean", 1).await;
    sub.disconnect().await;
    broker
        .wait_disconnected_nth("cleaner", 0, LOG_TIMEOUT)
        .expect("first disconnect line");

    let mut publisher = client::connect(broker.port, "cleaner-pub").await;
    publisher
        .publish("sess/clean", 1, false, "queued for the old session")
        .await;

    let (mut clean, present) = client::connect_with(options(broker.port, "cleaner")).await;
    assert!(
        !present,
        "clean_session=1: session_present=false (MQTT-3.2.2-1)"
    );
    clean
        .expect_no_publish(QUIET, "a clean session gets nothing queued for the old one")
        .await;
    publisher
        .publish("sess/clean", 1, false, "after clean connect")
        .await;
    clean
        .expect_no_publish(QUIET, "a clean session has no subscriptions")
        .await;
    clean.disconnect().await;
    broker
        .wait_disconnected_nth("cleaner", 1, LOG_TIMEOUT)
        .expect("second disconnect line");

    let (_again, present) = connect_persistent(broker.port, "cleaner", false).await;
    assert!(
        !present,
        "the clean session's end discards state: a persistent reconnect has no session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_messages_are_resent_with_dup_on_reconnect() {
    let broker = Broker::start(&[]);
    let (mut sub, _) = connect_persistent(broker.port, "dupper", true).await;
    sub.subscribe("sess/dup", 2).await;
    let mut publisher = client::connect(broker.port, "dupper-pub").await;
    publisher.publish("sess/dup", 1, false, "unacked q1").await;
    publisher.publish("sess/dup", 2, false, "unacked q2").await;

    let first_q1 = sub.next_publish("QoS 1, first delivery").await;
    let first_q2 = sub.next_publish("QoS 2, first delivery").await;
    assert_eq!(&first_q1.payload[..], b"unacked q1");
    assert_eq!(&first_q2.payload[..], b"unacked q2");
    assert!(
        !first_q1.dup && !first_q2.dup,
        "first deliveries are not DUP"
    );
    sub.drop_connection().await;
    broker
        .wait_disconnected("dupper", LOG_TIMEOUT)
        .expect("`client disconnected client_id=dupper` after the socket closed");

    let (mut sub, present) = connect_persistent(broker.port, "dupper", true).await;
    assert!(present);
    let again_q1 = sub.next_publish("QoS 1 resent after reconnect").await;
    let again_q2 = sub.next_publish("QoS 2 resent after reconnect").await;
    for (first, again, qos) in [(&first_q1, &again_q1, 1), (&first_q2, &again_q2, 2)] {
        assert_eq!(again.payload, first.payload, "resent payload intact");
        assert_eq!(again.topic, first.topic);
        assert!(
            again.dup,
            "a resent PUBLISH has DUP=1 (MQTT-3.3.1-1): {again:?}"
        );
        assert_eq!(level(again.qos), qos);
        assert_eq!(
            again.pkid, first.pkid,
            "resent with the original packet id (MQTT-4.4.0-1)"
        );
    }
    sub.ack(&again_q1).await;
    sub.ack(&again_q2).await;

    publisher.publish("sess/dup", 1, false, "fresh").await;
    let fresh = sub.next_publish("a new message after the acks").await;
    assert_eq!(&fresh.payload[..], b"fresh");
    assert!(!fresh.dup);
    sub.ack(&fresh).await;
    sub.expect_no_publish(QUIET, "acknowledged messages are not resent")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_across_cores_closes_the_old_connection_and_keeps_the_session() {
    let broker = Broker::start(&[]);
    let mut publisher = client::connect(broker.port, "takeover-pub").await;
    let mut cores_seen = Vec::new();
    for attempt in 0..TAKEOVER_ATTEMPTS {
        let id = format!("takeover-{attempt}");
        let topic = format!("takeover/{attempt}");
        let (mut first, _) = connect_persistent(broker.port, &id, true).await;
        first.subscribe(&topic, 1).await;
        let first_core = broker.core_of_nth(&id, 0, LOG_TIMEOUT);
        publisher
            .publish(&topic, 1, false, "inflight at takeover")
            .await;
        let unacked = first.next_publish("delivery before the takeover").await;

        let (mut second, present) = connect_persistent(broker.port, &id, true).await;
        // The session stays on its core: a second connection accepted elsewhere is handed
        // there. `accepted_core` is the core whose listener accepted it.
        let second_line = broker
            .wait_event_nth("client connected", &id, 1, LOG_TIMEOUT)
            .expect("connect line of the second connection");
        let second_core: usize = field(&second_line, "accepted_core")
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("accepted_core=K in {second_line}"));
        assert_eq!(
            broker.core_of_nth(&id, 1, LOG_TIMEOUT),
            first_core,
            "served on the session's core: {second_line}"
        );
        cores_seen.push((first_core, second_core));
        assert!(
            first.wait_closed(Duration::from_secs(5)).await.is_some(),
            "attempt {attempt} (cores {first_core}->{second_core}): the first connection must be closed by the takeover"
        );
        assert!(
            present,
            "takeover of a persistent session: session_present=true"
        );
        let line = broker
            .wait_disconnected(&id, LOG_TIMEOUT)
            .expect("a `client disconnected` line for the replaced connection");
        assert!(
            field(&line, "reason")
                .unwrap_or_default()
                .contains("session taken over"),
            "reason of the replaced connection: {line}"
        );

        let resent = second
            .next_publish("the unacknowledged message, resent to the new connection")
            .await;
        assert_eq!(resent.payload, unacked.payload);
        assert!(resent.dup, "resent after takeover with DUP=1: {resent:?}");
        second.ack(&resent).await;

        publisher.publish(&topic, 1, false, "after takeover").await;
        let live = second
            .next_publish("the subscription continues on the new connection")
            .await;
        assert_eq!(&live.payload[..], b"after takeover");
        second.ack(&live).await;
        second.expect_no_publish(QUIET, "nothing else").await;

        if first_core != second_core {
            println!(
                "takeover moved client {id} from core {first_core} to core {second_core} (attempt {attempt})"
            );
            return;
        }
        second.disconnect().await;
    }
    panic!(
        "in {TAKEOVER_ATTEMPTS} attempts the two connections never landed on different cores: {cores_seen:?}"
    );
}
