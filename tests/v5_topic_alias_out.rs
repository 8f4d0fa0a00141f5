//! Topic aliases from hydrant to an MQTT 5 subscriber, on the wire: a topic is sent with its
//! name and an alias the first time, then as the alias alone (empty topic name); aliases stay
//! within the client's Topic Alias Maximum and `max_topic_alias_out`, the least recently used
//! one is reassigned when all are taken, none are sent to a client that announced no maximum,
//! and a new connection (a resumed session's too) starts over with full topic names.

mod common;

use common::raw::{self, Connect, Incoming, RawClient, RawPublish};
use common::{client, Broker};

/// Property identifiers used below.
const TOPIC_ALIAS: u8 = 0x23;
const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
const SESSION_EXPIRY: u8 = 0x11;

/// How a received PUBLISH named its topic.
#[derive(Debug, PartialEq, Eq)]
struct Named {
    /// The topic name field (empty when only the alias is sent).
    topic: String,
    /// The Topic Alias property, if any.
    alias: Option<u16>,
    /// The application payload.
    payload: String,
}

/// What `publish` carries. The publishers below send no properties, so the only property a
/// delivery may hold is the topic alias, which must then be the whole block.
fn named(publish: &RawPublish) -> Named {
    let length = usize::from(publish.payload[0]);
    let properties = &publish.payload[1..1 + length];
    let alias = match properties {
        [] => None,
        [TOPIC_ALIAS, hi, lo] => Some(u16::from_be_bytes([*hi, *lo])),
        other => panic!("unexpected properties {other:02x?}"),
    };
    Named {
        topic: String::from_utf8(publish.topic.clone()).expect("UTF-8 topic"),
        alias,
        payload: String::from_utf8(publish.payload[1 + length..].to_vec()).expect("UTF-8"),
    }
}

fn expect(topic: &str, alias: Option<u16>, payload: &str) -> Named {
    Named {
        topic: topic.to_owned(),
        alias,
        payload: payload.to_owned(),
    }
}

/// The next packet, which must be a PUBLISH.
async fn next_publish(client: &mut RawClient) -> RawPublish {
    match client.recv(raw::PACKET_TIMEOUT).await {
        Ok(Incoming::Publish(publish)) => publish,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

/// Subscribes a raw MQTT 5 client to `filter` at `qos`.
async fn subscribe(client: &mut RawClient, filter: &str, qos: u8) {
    client
        .send(&raw::subscribe_v5(1, &[(filter, qos)], &[]))
        .await
        .expect("send SUBSCRIBE");
    match client.recv(raw::PACKET_TIMEOUT).await {
        Ok(Incoming::SubAck { codes, .. }) => assert_eq!(codes, [0, qos]),
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// Publishes `(topic, payload)` pairs at QoS 1 from an MQTT 3.1.1 client, in order.
async fn publish_all(broker: &Broker, id: &str, messages: &[(&str, &str)]) {
    let mut publisher = client::connect(broker.port, id).await;
    for (topic, payload) in messages {
        publisher
            .publish(topic, 1, false, payload.to_string())
            .await;
    }
    publisher.disconnect().await;
}

#[tokio::test]
async fn topics_are_aliased_after_their_first_publish_within_the_clients_maximum() {
    let broker = Broker::start(&[]);
    let mut subscriber = RawClient::connected_v5(
        broker.port,
        &Connect::v5("alias-out-sub").properties(&[TOPIC_ALIAS_MAXIMUM, 0, 2]),
    )
    .await;
    subscribe(&mut subscriber, "gerrit/#", 0).await;
    let (a, b, c) = (
        "gerrit/openstack/nova/comment-added",
        "gerrit/openstack/nova/patchset-created",
        "gerrit/openstack/neutron/change-merged",
    );
    publish_all(
        &broker,
        "alias-out-pub",
        &[
            (a, "1"),
            (b, "2"),
            (a, "3"),
            (c, "4"),
            (a, "5"),
            (b, "6"),
            (c, "7"),
        ],
    )
    .await;
    let mut received = Vec::new();
    for _ in 0..7 {
        received.push(named(&next_publish(&mut subscriber).await));
    }
    // Two aliases: when both are taken, the least recently used one goes to the new topic,
    // whose PUBLISH carries the name again.
    assert_eq!(
        received,
        [
            expect(a, Some(1), "1"),
            expect(b, Some(2), "2"),
            expect("", Some(1), "3"),
            expect(c, Some(2), "4"),
            expect("", Some(1), "5"),
            expect(b, Some(2), "6"),
            expect(c, Some(1), "7"),
        ]
    );
}

#[tokio::test]
async fn aliases_stay_within_max_topic_alias_out() {
    let broker = Broker::with_config("[limits]\nmax_topic_alias_out = 3\n", &[]);
    let mut subscriber = RawClient::connected_v5(
        broker.port,
        &Connect::v5("alias-cap-sub").properties(&[TOPIC_ALIAS_MAXIMUM, 0, 100]),
    )
    .await;
    subscribe(&mut subscriber, "cap/#", 0).await;
    let topics: Vec<String> = (0..6).map(|n| format!("cap/topic/{n}")).collect();
    let messages: Vec<(&str, &str)> = topics
        .iter()
        .chain(topics.iter())
        .map(|topic| (topic.as_str(), "x"))
        .collect();
    publish_all(&broker, "alias-cap-pub", &messages).await;
    for (topic, _) in &messages {
        let got = named(&next_publish(&mut subscriber).await);
        let alias = got.alias.expect("every delivery uses an alias");
        assert!((1..=3).contains(&alias), "alias {alias} above the cap");
        // Six topics cycling through three aliases: each one is new again when it comes back.
        assert_eq!(got.topic, *topic);
    }
}

#[tokio::test]
async fn no_aliases_for_a_client_that_announced_no_maximum() {
    let broker = Broker::start(&[]);
    let mut subscriber = RawClient::connected_v5(broker.port, &Connect::v5("alias-none-sub")).await;
    subscribe(&mut subscriber, "plain/#", 0).await;
    publish_all(
        &broker,
        "alias-none-pub",
        &[("plain/a", "1"), ("plain/a", "2"), ("plain/a", "3")],
    )
    .await;
    for payload in ["1", "2", "3"] {
        let got = named(&next_publish(&mut subscriber).await);
        assert_eq!(got, expect("plain/a", None, payload));
    }
}

#[tokio::test]
async fn a_new_connection_starts_with_full_topics_and_redeliveries_carry_theirs() {
    let broker = Broker::start(&[]);
    let connect = Connect::v5("alias-resume-sub").clean(false).properties(&[
        SESSION_EXPIRY,
        0,
        0,
        0x0e,
        0x10,
        TOPIC_ALIAS_MAXIMUM,
        0,
        5,
    ]);
    let topic = "resume/some/long/topic";
    let mut subscriber = RawClient::connected_v5(broker.port, &connect).await;
    subscribe(&mut subscriber, "resume/#", 1).await;
    publish_all(&broker, "alias-resume-pub1", &[(topic, "1"), (topic, "2")]).await;
    let first = next_publish(&mut subscriber).await;
    assert_eq!(named(&first), expect(topic, Some(1), "1"));
    subscriber
        .send(&raw::puback(first.packet_id.expect("QoS 1")))
        .await
        .expect("send PUBACK");
    let second = next_publish(&mut subscriber).await;
    assert_eq!(named(&second), expect("", Some(1), "2"));
    // The broker handles a connection's packets in order: its PINGRESP means the PUBACK
    // was handled before the reset (which would discard unread bytes).
    subscriber
        .send(&raw::pingreq())
        .await
        .expect("send PINGREQ");
    match subscriber.recv(raw::PACKET_TIMEOUT).await {
        Ok(raw::Incoming::PingResp) => {}
        other => panic!("PINGRESP expected, got {other:?}"),
    }
    // Left unacknowledged: the resumed session sends it again.
    subscriber.reset();

    let mut subscriber = RawClient::connected_v5(broker.port, &connect).await;
    let again = next_publish(&mut subscriber).await;
    assert!(again.dup, "a re-delivery");
    assert_eq!(named(&again), expect(topic, Some(1), "2"));
    subscriber
        .send(&raw::puback(again.packet_id.expect("QoS 1")))
        .await
        .expect("send PUBACK");
    publish_all(&broker, "alias-resume-pub2", &[(topic, "3")]).await;
    let third = next_publish(&mut subscriber).await;
    assert_eq!(named(&third), expect("", Some(1), "3"));
}
