//! MQTT 5 clients are told why the broker ends their connection: a DISCONNECT with the reason
//! code the specification gives the error (malformed packet 0x81, protocol error 0x82, packet
//! too large 0x95, keep-alive timeout 0x8D, ...), and a CONNECT that cannot be decoded gets an
//! MQTT 5 CONNACK with the reason. Raw bytes, because no real client misbehaves on purpose;
//! the broker's log keeps its WARN `closing connection` line.

mod common;

use std::time::Duration;

use common::raw::{self, Connect, RawClient};
use common::{Broker, LOG_TIMEOUT};

/// How long the broker may take to close a connection that broke the protocol.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// An accepted MQTT 5 raw connection.
async fn connected(broker: &Broker, client_id: &str) -> RawClient {
    RawClient::connected_v5(broker.port, &Connect::v5(client_id)).await
}

/// Asserts the broker logged a WARN `closing connection` line for `client_id` whose reason
/// contains `words`.
fn assert_logged(broker: &Broker, client_id: &str, words: &str) {
    let needle = format!("client_id={client_id} ");
    let line = broker
        .wait_for_log_where(
            |line| line.contains("closing connection") && line.contains(&needle),
            LOG_TIMEOUT,
        )
        .unwrap_or_else(|| panic!("no closing line for {client_id}"));
    assert!(line.contains(words), "{line}");
}

#[tokio::test]
async fn malformed_packet_is_answered_with_0x81() {
    let broker = Broker::start(&[]);
    let mut client = connected(&broker, "v5-malformed").await;
    // A PUBLISH with QoS 3.
    client
        .send(&raw::packet(0x36, b"\x00\x01t\x00\x01\x00"))
        .await
        .expect("send");
    assert_eq!(client.disconnect_reason(CLOSE_TIMEOUT).await, 0x81);
    assert_logged(&broker, "v5-malformed", "QoS 3");
}

#[tokio::test]
async fn second_connect_is_a_protocol_error_0x82() {
    let broker = Broker::start(&[]);
    let mut client = connected(&broker, "v5-twice").await;
    client
        .send(&Connect::v5("v5-twice").encode())
        .await
        .expect("send");
    assert_eq!(client.disconnect_reason(CLOSE_TIMEOUT).await, 0x82);
    assert_logged(&broker, "v5-twice", "second CONNECT");
}

#[tokio::test]
async fn auth_without_a_method_is_a_protocol_error_0x82() {
    let broker = Broker::start(&[]);
    let mut client = connected(&broker, "v5-auth").await;
    client.send(&[0xF0, 0x00]).await.expect("send");
    assert_eq!(client.disconnect_reason(CLOSE_TIMEOUT).await, 0x82);
}

#[tokio::test]
async fn packet_too_large_is_answered_with_0x95() {
    let broker = Broker::with_config("[limits]\nmax_packet_size = 1024\n", &[]);
    let mut client = connected(&broker, "v5-large").await;
    let payload = vec![b'x'; 2000];
    client
        .send(&raw::publish_v5(b"big", &payload, 0, 0, &[]))
        .await
        .expect("send");
    assert_eq!(client.disconnect_reason(CLOSE_TIMEOUT).await, 0x95);
    assert_logged(&broker, "v5-large", "too large");
}

#[tokio::test]
async fn subscription_identifier_from_a_client_is_a_protocol_error() {
    let broker = Broker::start(&[]);
    let mut client = connected(&broker, "v5-subid").await;
    // Property 0x0B (subscription identifier) = 1 on a PUBLISH.
    client
        .send(&raw::publish_v5(b"t", b"x", 0, 0, &[0x0B, 0x01]))
        .await
        .expect("send");
    assert_eq!(client.disconnect_reason(CLOSE_TIMEOUT).await, 0x82);
}

#[tokio::test]
async fn silent_client_is_told_keep_alive_timeout_0x8d() {
    let broker = Broker::start(&[]);
    let mut client =
        RawClient::connected_v5(broker.port, &Connect::v5("v5-ka").keep_alive(1)).await;
    assert_eq!(client.disconnect_reason(Duration::from_secs(5)).await, 0x8D);
}

#[tokio::test]
async fn undecodable_connect_gets_a_v5_connack_with_the_reason() {
    let broker = Broker::start(&[]);
    // Session expiry interval (0x11) twice: a protocol error.
    let twice = Connect::v5("v5-bad-props").properties(&[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2]);
    let (_, body) = RawClient::handshake_v5(broker.port, &twice).await;
    assert_eq!(
        body[..2],
        [0x00, 0x82],
        "CONNACK flags and reason: {body:02x?}"
    );

    // The reserved connect flag: malformed.
    let mut reserved = Connect::v5("v5-bad-flags");
    reserved.extra_flags = 0x01;
    let (_, body) = RawClient::handshake_v5(broker.port, &reserved).await;
    assert_eq!(
        body[..2],
        [0x00, 0x81],
        "CONNACK flags and reason: {body:02x?}"
    );

    // Larger than max_packet_size.
    let broker = Broker::with_config("[limits]\nmax_packet_size = 64\n", &[]);
    let long = Connect::v5(&"x".repeat(100));
    let (_, body) = RawClient::handshake_v5(broker.port, &long).await;
    assert_eq!(
        body[..2],
        [0x00, 0x95],
        "CONNACK flags and reason: {body:02x?}"
    );
}

#[tokio::test]
async fn shutdown_tells_v5_clients_server_shutting_down_0x8b() {
    let mut broker = Broker::start(&[]);
    let mut client = connected(&broker, "v5-shutdown").await;
    broker.sigterm();
    assert_eq!(client.disconnect_reason(CLOSE_TIMEOUT).await, 0x8B);
    assert!(broker.wait_exit(Duration::from_secs(10)).is_some());
}

#[tokio::test]
async fn takeover_tells_the_old_connection_session_taken_over_0x8e() {
    let broker = Broker::start(&[]);
    let mut old = connected(&broker, "v5-taken").await;
    let _new = connected(&broker, "v5-taken").await;
    assert_eq!(old.disconnect_reason(CLOSE_TIMEOUT).await, 0x8E);
}

#[tokio::test]
async fn v311_clients_are_still_closed_without_a_disconnect() {
    let broker = Broker::start(&[]);
    let mut client = RawClient::connected(broker.port, &Connect::v311("v311-malformed")).await;
    client
        .send(&raw::packet(0x36, b"\x00\x01t\x00\x01\x00"))
        .await
        .expect("send");
    let (_, packets) = client
        .read_until_closed(CLOSE_TIMEOUT)
        .await
        .expect("closed");
    assert!(packets.is_empty(), "{packets:?}");
}
