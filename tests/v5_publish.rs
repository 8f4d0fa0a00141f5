//! MQTT 5 PUBLISH flow control and topic aliases at the byte level, where a real client would
//! not misbehave: topic alias misuse is closed with 0x94, a client exceeding the receive
//! maximum hydrant announced is closed with 0x93, the broker keeps to a subscriber's receive
//! maximum, a PUBREC refusing a message ends its exchange, and a QoS 2 publish nobody
//! subscribes to is answered PUBREC 0x10.

mod common;

use std::time::Duration;

use common::raw::{self, Connect, Incoming, RawClient, RawPublish};
use common::{client, Broker, QUIET};

/// How long the broker may take to close a connection that broke the protocol.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Property identifiers used below.
const TOPIC_ALIAS: u8 = 0x23;
const RECEIVE_MAXIMUM: u8 = 0x21;
const SESSION_EXPIRY: u8 = 0x11;

/// An accepted MQTT 5 raw connection with these CONNECT properties.
async fn connected(broker: &Broker, client_id: &str, properties: &[u8]) -> RawClient {
    RawClient::connected_v5(broker.port, &Connect::v5(client_id).properties(properties)).await
}

/// The application payload of an MQTT 5 PUBLISH read by the raw 3.1.1 parser (which leaves
/// the property block in front of it); properties shorter than 128 bytes.
fn v5_payload(publish: &RawPublish) -> &[u8] {
    let properties = usize::from(publish.payload[0]);
    &publish.payload[1 + properties..]
}

/// The next packet, which must be a PUBLISH.
async fn next_publish(client: &mut RawClient) -> RawPublish {
    match client.recv(raw::PACKET_TIMEOUT).await {
        Ok(Incoming::Publish(publish)) => publish,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

/// Reads a PUBREC for `id` (with or without a success reason code such as 0x10: these
/// publishes have no subscriber).
async fn expect_pubrec(client: &mut RawClient, id: u16) {
    let [hi, lo] = id.to_be_bytes();
    match client.recv(raw::PACKET_TIMEOUT).await {
        Ok(Incoming::PubRec(acked)) => assert_eq!(acked, id),
        Ok(Incoming::Other(0x50, body)) => {
            assert_eq!(body[..2], [hi, lo]);
            assert!(body[2] < 0x80, "PUBREC reason {:#04x}", body[2]);
        }
        other => panic!("expected PUBREC {id}, got {other:?}"),
    }
}

/// A raw MQTT 5 subscriber to `filter` at `options` (the options byte).
async fn subscribe(client: &mut RawClient, filter: &str, options: u8) {
    client
        .send(&raw::subscribe_v5(1, &[(filter, options)], &[]))
        .await
        .expect("send SUBSCRIBE");
    match client.recv(raw::PACKET_TIMEOUT).await {
        Ok(Incoming::SubAck { codes, .. }) => assert_eq!(codes, [0, options & 3]),
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

#[tokio::test]
async fn topic_alias_above_the_maximum_is_closed_with_0x94() {
    let broker = Broker::start(&[]);
    let mut client = connected(&broker, "alias-high", &[]).await;
    client
        .send(&raw::publish_v5(b"t", b"x", 0, 0, &[TOPIC_ALIAS, 0, 11]))
        .await
        .expect("send");
    assert_eq!(client.disconnect_reason(CLOSE_TIMEOUT).await, 0x94);
}

#[tokio::test]
async fn unknown_topic_alias_with_an_empty_topic_is_closed_with_0x94() {
    let broker = Broker::start(&[]);
    let mut client = connected(&broker, "alias-unknown", &[]).await;
    client
        .send(&raw::publish_v5(b"a/b", b"x", 0, 0, &[TOPIC_ALIAS, 0, 1]))
        .await
        .expect("send");
    client
        .send(&raw::publish_v5(b"", b"x", 0, 0, &[TOPIC_ALIAS, 0, 2]))
        .await
        .expect("send");
    assert_eq!(client.disconnect_reason(CLOSE_TIMEOUT).await, 0x94);
}

#[tokio::test]
async fn topic_alias_zero_is_closed_with_0x94() {
    let broker = Broker::start(&[]);
    let mut client = connected(&broker, "alias-zero", &[]).await;
    client
        .send(&raw::publish_v5(b"t", b"x", 0, 0, &[TOPIC_ALIAS, 0, 0]))
        .await
        .expect("send");
    assert_eq!(client.disconnect_reason(CLOSE_TIMEOUT).await, 0x94);
}

#[tokio::test]
async fn topic_alias_when_none_are_allowed_is_closed_with_0x94() {
    let broker = Broker::with_config("[limits]\nmax_topic_alias = 0\n", &[]);
    let (mut client, connack) =
        RawClient::handshake_v5(broker.port, &Connect::v5("alias-none")).await;
    assert!(
        !connack.contains(&TOPIC_ALIAS),
        "no topic alias maximum is announced: {connack:02x?}"
    );
    client
        .send(&raw::publish_v5(b"t", b"x", 0, 0, &[TOPIC_ALIAS, 0, 1]))
        .await
        .expect("send");
    assert_eq!(client.disconnect_reason(CLOSE_TIMEOUT).await, 0x94);
}

#[tokio::test]
async fn client_exceeding_the_receive_maximum_is_closed_with_0x93() {
    let broker = Broker::with_config("[limits]\nmax_inflight_messages = 2\n", &[]);
    let (mut client, connack) =
        RawClient::handshake_v5(broker.port, &Connect::v5("recvmax-over")).await;
    let announced = connack
        .windows(3)
        .find(|w| w[0] == RECEIVE_MAXIMUM)
        .map(|w| u16::from_be_bytes([w[1], w[2]]));
    assert_eq!(announced, Some(2), "CONNACK {connack:02x?}");
    // Two QoS 2 publishes left unreleased (no PUBREL) fill the receive maximum.
    for id in 1..=2u16 {
        client
            .send(&raw::publish_v5(b"t", b"x", 2, id, &[]))
            .await
            .expect("send");
        expect_pubrec(&mut client, id).await;
    }
    client
        .send(&raw::publish_v5(b"t", b"x", 2, 3, &[]))
        .await
        .expect("send");
    assert_eq!(client.disconnect_reason(CLOSE_TIMEOUT).await, 0x93);
    let line = broker
        .wait_for_log("client_id=recvmax-over reason=", common::LOG_TIMEOUT)
        .expect("closing line");
    assert!(line.contains("receive maximum is 2"), "{line}");
}

#[tokio::test]
async fn a_qos2_publish_refused_for_the_receive_maximum_is_delivered_when_sent_again() {
    let broker = Broker::with_config("[limits]\nmax_inflight_messages = 2\n", &[]);
    // A persistent session (expiry 60 s) keeps its QoS 2 ids across connections.
    let connect =
        Connect::v5("recvmax-resend")
            .clean(false)
            .properties(&[SESSION_EXPIRY, 0, 0, 0, 60]);
    let mut publisher = RawClient::connected_v5(broker.port, &connect).await;
    for id in 1..=2u16 {
        publisher
            .send(&raw::publish_v5(b"recvmax/t", b"x", 2, id, &[]))
            .await
            .expect("send");
        expect_pubrec(&mut publisher, id).await;
    }
    publisher
        .send(&raw::publish_v5(b"recvmax/t", b"third", 2, 3, &[]))
        .await
        .expect("send");
    assert_eq!(publisher.disconnect_reason(CLOSE_TIMEOUT).await, 0x93);

    let mut subscriber = connected(&broker, "recvmax-resend-sub", &[]).await;
    subscribe(&mut subscriber, "recvmax/t", 0).await;
    let (mut publisher, connack) = RawClient::handshake_v5(broker.port, &connect).await;
    assert_eq!(connack[..2], [1, 0], "session present, accepted");
    for id in 1..=2u16 {
        publisher.send(&raw::pubrel(id)).await.expect("send");
        match publisher.recv(raw::PACKET_TIMEOUT).await {
            Ok(Incoming::PubComp(acked)) => assert_eq!(acked, id),
            other => panic!("expected PUBCOMP {id}, got {other:?}"),
        }
    }
    // The refused publish was never received: sent again, it is a new one.
    publisher
        .send(&raw::publish_v5(b"recvmax/t", b"third", 2, 3, &[]))
        .await
        .expect("send");
    expect_pubrec(&mut publisher, 3).await;
    let delivered = next_publish(&mut subscriber).await;
    assert_eq!(v5_payload(&delivered), b"third");
}

#[tokio::test]
async fn qos1_beyond_a_full_receive_maximum_is_closed_with_0x93() {
    let broker = Broker::with_config("[limits]\nmax_inflight_messages = 1\n", &[]);
    let mut client = connected(&broker, "recvmax-qos1", &[]).await;
    client
        .send(&raw::publish_v5(b"t", b"x", 2, 1, &[]))
        .await
        .expect("send");
    expect_pubrec(&mut client, 1).await;
    client
        .send(&raw::publish_v5(b"t", b"x", 1, 2, &[]))
        .await
        .expect("send");
    assert_eq!(client.disconnect_reason(CLOSE_TIMEOUT).await, 0x93);
}

#[tokio::test]
async fn within_the_receive_maximum_nothing_happens() {
    let broker = Broker::with_config("[limits]\nmax_inflight_messages = 1\n", &[]);
    let mut client = connected(&broker, "recvmax-ok", &[]).await;
    for id in 1..=3u16 {
        client
            .send(&raw::publish_v5(b"t", b"x", 2, id, &[]))
            .await
            .expect("send");
        expect_pubrec(&mut client, id).await;
        client.send(&raw::pubrel(id)).await.expect("send");
        assert!(matches!(
            client.recv(raw::PACKET_TIMEOUT).await,
            Ok(Incoming::PubComp(acked)) if acked == id
        ));
    }
}

#[tokio::test]
async fn qos2_publish_without_subscribers_gets_pubrec_0x10() {
    let broker = Broker::start(&[]);
    let mut client = connected(&broker, "nomatch-qos2", &[]).await;
    client
        .send(&raw::publish_v5(b"nobody/here", b"x", 2, 7, &[]))
        .await
        .expect("send");
    match client.recv(raw::PACKET_TIMEOUT).await {
        Ok(Incoming::Other(0x50, body)) => assert_eq!(body, [0, 7, 0x10]),
        other => panic!("expected PUBREC with a reason code, got {other:?}"),
    }
}

#[tokio::test]
async fn broker_keeps_to_the_subscribers_receive_maximum() {
    let broker = Broker::start(&[]);
    let mut subscriber = connected(&broker, "window-sub", &[RECEIVE_MAXIMUM, 0, 1]).await;
    subscribe(&mut subscriber, "window/t", 1).await;
    let mut publisher = client::connect(broker.port, "window-pub").await;
    for n in 0..3 {
        publisher
            .publish("window/t", 1, false, format!("m{n}"))
            .await;
    }
    for n in 0..3 {
        let publish = next_publish(&mut subscriber).await;
        assert_eq!(v5_payload(&publish), format!("m{n}").as_bytes());
        // One at a time: nothing more until this one is acknowledged.
        assert!(
            subscriber.recv(QUIET).await.is_err(),
            "a second message arrived inside a window of 1"
        );
        let id = publish.packet_id.expect("QoS 1");
        subscriber.send(&raw::puback(id)).await.expect("send");
    }
}

#[tokio::test]
async fn pubrec_with_a_failure_ends_the_exchange_without_pubrel() {
    let broker = Broker::start(&[]);
    let mut subscriber = connected(&broker, "refuse-sub", &[RECEIVE_MAXIMUM, 0, 1]).await;
    subscribe(&mut subscriber, "refuse/t", 2).await;
    let mut publisher = client::connect(broker.port, "refuse-pub").await;
    publisher.publish("refuse/t", 2, false, "first").await;
    publisher.publish("refuse/t", 2, false, "second").await;

    let first = next_publish(&mut subscriber).await;
    assert_eq!(v5_payload(&first), b"first");
    let id = first.packet_id.expect("QoS 2");
    // PUBREC "Unspecified error": no PUBREL follows, and the window is free again.
    let [hi, lo] = id.to_be_bytes();
    subscriber
        .send(&raw::packet(0x50, &[hi, lo, 0x80]))
        .await
        .expect("send");
    let second = next_publish(&mut subscriber).await;
    assert_eq!(v5_payload(&second), b"second");
}
