//! Helpers shared by the codec's wire-byte tests.

use bytes::{Bytes, BytesMut};
use smallvec::smallvec;

use std::num::{NonZeroU16, NonZeroU32};

use super::{
    decode_with, encode, Ack, AckProperties, Auth, AuthProperties, ConnAck, ConnAckProperties,
    ConnAckV5, Connect, ConnectProperties, ConnectReturnCode, ConnectV5, DecodeError, Disconnect,
    DisconnectProperties, LastWill, MessageProperties, MqttString, Packet, PacketId, PayloadFormat,
    ProtocolVersion, Publish, PublishProperties, PublishTopic, PublishV5, QoS, ReasonCode,
    RetainHandling, SubAck, SubAckReturnCode, SubAckV5, Subscribe, SubscribeProperties,
    SubscribeV5, SubscriptionId, SubscriptionOptions, TopicAlias, TopicFilter, TopicName, UnsubAck,
    Unsubscribe, UnsubscribeProperties, UnsubscribeV5, UserProperty, WillProperties,
};

/// Checks that `packet` encodes to exactly `wire`, that `wire` decodes to exactly `packet`
/// (leaving what follows it in the buffer), that every proper prefix of `wire` is reported
/// incomplete without consuming anything, and that a limit one byte short refuses the packet
/// as soon as its fixed header is in.
pub(crate) fn assert_wire(packet: &Packet, wire: &[u8]) {
    assert_wire_with(None, packet, wire);
}

/// [`assert_wire`] on an MQTT 5 connection.
pub(crate) fn assert_wire_v5(packet: &Packet, wire: &[u8]) {
    assert_wire_with(Some(ProtocolVersion::V5), packet, wire);
}

/// Checks every sample of a connection of version `protocol` (`None`: before CONNECT):
/// each round-trips byte for byte at every split point, and all of them encoded back to back
/// decode in order from one buffer, leaving it empty.
pub(crate) fn assert_samples_round_trip(protocol: Option<ProtocolVersion>, packets: &[Packet]) {
    let mut stream = BytesMut::new();
    for packet in packets {
        let mut wire = BytesMut::new();
        encode(packet, &mut wire);
        assert_wire_with(protocol, packet, &wire);
        stream.extend_from_slice(&wire);
    }
    for expected in packets {
        assert_eq!(
            decode_with(&mut stream, 1 << 20, protocol).as_ref(),
            Ok(&Some(expected.clone()))
        );
    }
    assert!(stream.is_empty());
    assert_eq!(decode_with(&mut stream, 1 << 20, protocol), Ok(None));
}

/// [`assert_wire`] on a connection of version `protocol`.
fn assert_wire_with(protocol: Option<ProtocolVersion>, packet: &Packet, wire: &[u8]) {
    let mut out = BytesMut::new();
    encode(packet, &mut out);
    assert_eq!(&out[..], wire, "encoding of {}", packet.name());
    assert_eq!(
        packet.encoded_len(),
        wire.len(),
        "size of {}",
        packet.name()
    );

    for split in 0..wire.len() {
        let mut buf = BytesMut::from(&wire[..split]);
        assert_eq!(
            decode_with(&mut buf, wire.len(), protocol),
            Ok(None),
            "{} cut at {split}",
            packet.name()
        );
        assert_eq!(&buf[..], &wire[..split], "nothing consumed");
    }

    let mut buf = BytesMut::from(wire);
    buf.extend_from_slice(&[0xC0]);
    assert_eq!(
        decode_with(&mut buf, wire.len(), protocol),
        Ok(Some(packet.clone()))
    );
    assert_eq!(&buf[..], &[0xC0], "only {} was consumed", packet.name());

    let header_len = wire[1..]
        .iter()
        .position(|byte| byte & 0x80 == 0)
        .map_or(wire.len(), |at| at + 2);
    let mut buf = BytesMut::from(&wire[..header_len]);
    assert_eq!(
        decode_with(&mut buf, wire.len() - 1, protocol),
        Err(DecodeError::PacketTooLarge {
            size: wire.len(),
            max: wire.len() - 1
        })
    );
}

/// Decodes `wire`, which must hold exactly one valid packet.
pub(crate) fn decode_one(wire: &[u8]) -> Packet {
    decode_one_with(None, wire)
}

/// Decodes `wire` on an MQTT 5 connection; it must hold exactly one valid packet.
pub(crate) fn decode_one_v5(wire: &[u8]) -> Packet {
    decode_one_with(Some(ProtocolVersion::V5), wire)
}

fn decode_one_with(protocol: Option<ProtocolVersion>, wire: &[u8]) -> Packet {
    let mut buf = BytesMut::from(wire);
    match decode_with(&mut buf, usize::MAX, protocol) {
        Ok(Some(packet)) if buf.is_empty() => packet,
        other => panic!("{wire:x?} did not decode to one packet: {other:?}, left {buf:x?}"),
    }
}

/// Decodes `wire`, which must be refused; returns why.
pub(crate) fn decode_error(wire: &[u8]) -> DecodeError {
    decode_error_with(None, wire)
}

/// Decodes `wire` on an MQTT 5 connection; it must be refused; returns why.
pub(crate) fn decode_error_v5(wire: &[u8]) -> DecodeError {
    decode_error_with(Some(ProtocolVersion::V5), wire)
}

fn decode_error_with(protocol: Option<ProtocolVersion>, wire: &[u8]) -> DecodeError {
    match decode_with(&mut BytesMut::from(wire), usize::MAX, protocol) {
        Err(error) => error,
        other => panic!("{wire:x?} was not refused: {other:?}"),
    }
}

/// Wraps `body` in a fixed header with `first_byte`.
pub(crate) fn packet_bytes(first_byte: u8, body: &[u8]) -> Vec<u8> {
    let mut wire = BytesMut::new();
    wire.extend_from_slice(&[first_byte]);
    super::fields::put_var_int(&mut wire, body.len());
    wire.extend_from_slice(body);
    wire.to_vec()
}

/// A user property from text.
pub(crate) fn user(name: &str, value: &str) -> UserProperty {
    UserProperty::new(name, value).unwrap()
}

/// An MQTT string from text.
pub(crate) fn text(value: &str) -> MqttString {
    MqttString::try_from(value).unwrap()
}

/// One or more instances of each MQTT 5 packet type, in type order, with properties.
pub(crate) fn sample_packets_v5() -> Vec<Packet> {
    let id = |value| PacketId::new(value).unwrap();
    let topic = TopicName::try_from("gerrit/openstack/nova/change-merged").unwrap();
    let alias = TopicAlias::new(3).unwrap();
    let message = MessageProperties {
        payload_format: Some(PayloadFormat::Utf8),
        message_expiry_interval: Some(3600),
        content_type: Some(text("application/json")),
        response_topic: Some(TopicName::try_from("replies/1").unwrap()),
        correlation_data: Some(Bytes::from_static(b"\x00\x01")),
        user_properties: vec![user("a", "1"), user("a", "2")],
    };
    let diagnostics = AckProperties {
        reason_string: Some(text("why")),
        user_properties: vec![user("k", "v")],
    };
    vec![
        Packet::ConnectV5(Box::new(ConnectV5 {
            connect: Connect {
                protocol: ProtocolVersion::V5,
                clean_session: false,
                keep_alive: 30,
                client_id: "subscriber-1".to_owned(),
                will: Some(LastWill {
                    topic: topic.clone(),
                    payload: Bytes::from_static(b"{\"gone\":true}"),
                    qos: QoS::AtLeastOnce,
                    retain: true,
                }),
                username: None,
                password: Some(Bytes::from_static(b"token")),
            },
            properties: ConnectProperties {
                session_expiry_interval: Some(600),
                receive_maximum: NonZeroU16::new(20),
                maximum_packet_size: NonZeroU32::new(1 << 20),
                topic_alias_maximum: Some(10),
                request_response_information: Some(true),
                request_problem_information: Some(false),
                user_properties: vec![user("client", "hydrant")],
                authentication_method: Some(text("SCRAM-SHA-1")),
                authentication_data: Some(Bytes::from_static(b"client-first")),
            },
            will_properties: WillProperties {
                will_delay_interval: Some(5),
                message: message.clone(),
            },
        })),
        Packet::ConnAckV5(ConnAckV5 {
            session_present: true,
            reason: ReasonCode::Success,
            properties: ConnAckProperties {
                session_expiry_interval: Some(60),
                receive_maximum: NonZeroU16::new(100),
                maximum_qos: Some(QoS::AtLeastOnce),
                retain_available: Some(false),
                maximum_packet_size: NonZeroU32::new(65_536),
                assigned_client_identifier: Some(text("auto-1")),
                topic_alias_maximum: Some(16),
                reason_string: Some(text("welcome")),
                user_properties: vec![user("server", "hydrant")],
                wildcard_subscription_available: Some(true),
                subscription_identifiers_available: Some(true),
                shared_subscription_available: Some(false),
                server_keep_alive: Some(120),
                response_information: Some(text("replies/")),
                server_reference: Some(text("other:1883")),
                authentication_method: Some(text("SCRAM-SHA-1")),
                authentication_data: Some(Bytes::from_static(b"server-final")),
            },
        }),
        Packet::PublishV5(PublishV5 {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: PublishTopic::Name(topic.clone()),
            packet_id: None,
            properties: PublishProperties::default(),
            payload: Bytes::from(vec![b'x'; 1500]),
        }),
        Packet::PublishV5(PublishV5 {
            dup: true,
            qos: QoS::ExactlyOnce,
            retain: true,
            topic: PublishTopic::NameWithAlias(topic.clone(), alias),
            packet_id: Some(id(42)),
            properties: PublishProperties {
                message,
                subscription_ids: vec![
                    SubscriptionId::new(1).unwrap(),
                    SubscriptionId::new(SubscriptionId::MAX).unwrap(),
                ],
            },
            payload: Bytes::from_static(b"{}"),
        }),
        Packet::PublishV5(PublishV5 {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: PublishTopic::Alias(alias),
            packet_id: Some(id(43)),
            properties: PublishProperties::default(),
            payload: Bytes::new(),
        }),
        Packet::PubAckV5(Ack::success(id(1))),
        Packet::PubRecV5(Ack {
            packet_id: id(2),
            reason: ReasonCode::NoMatchingSubscribers,
            properties: AckProperties::default(),
        }),
        Packet::PubRelV5(Ack {
            packet_id: id(3),
            reason: ReasonCode::PacketIdentifierNotFound,
            properties: diagnostics.clone(),
        }),
        Packet::PubCompV5(Ack {
            packet_id: id(4),
            reason: ReasonCode::Success,
            properties: diagnostics.clone(),
        }),
        Packet::SubscribeV5(SubscribeV5 {
            packet_id: id(5),
            properties: SubscribeProperties {
                subscription_id: SubscriptionId::new(200),
                user_properties: vec![user("s", "t")],
            },
            filters: smallvec![
                (
                    TopicFilter::try_from("gerrit/#").unwrap(),
                    SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        no_local: true,
                        retain_as_published: true,
                        retain_handling: RetainHandling::DoNotSend,
                    }
                ),
                (
                    TopicFilter::try_from("$share/group/zuul/+").unwrap(),
                    SubscriptionOptions {
                        retain_handling: RetainHandling::SendOnNewSubscription,
                        ..SubscriptionOptions::new(QoS::AtMostOnce)
                    }
                ),
            ],
        }),
        Packet::SubAckV5(SubAckV5 {
            packet_id: id(5),
            properties: diagnostics.clone(),
            reason_codes: smallvec![
                ReasonCode::GrantedQoS2,
                ReasonCode::SharedSubscriptionsNotSupported
            ],
        }),
        Packet::UnsubscribeV5(UnsubscribeV5 {
            packet_id: id(6),
            properties: UnsubscribeProperties {
                user_properties: vec![user("u", "")],
            },
            filters: smallvec![TopicFilter::try_from("gerrit/#").unwrap()],
        }),
        Packet::UnsubAckV5(UnsubAck {
            packet_id: id(6),
            properties: AckProperties::default(),
            reason_codes: smallvec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted],
        }),
        Packet::PingReq,
        Packet::PingResp,
        Packet::DisconnectV5(Disconnect {
            reason: ReasonCode::ServerMoved,
            properties: DisconnectProperties {
                session_expiry_interval: None,
                reason_string: Some(text("moved")),
                user_properties: vec![user("x", "y")],
                server_reference: Some(text("new:1883")),
            },
        }),
        Packet::DisconnectV5(Disconnect::new(ReasonCode::NormalDisconnection)),
        Packet::Auth(Auth {
            reason: ReasonCode::ContinueAuthentication,
            properties: AuthProperties {
                authentication_method: Some(text("SCRAM-SHA-1")),
                authentication_data: Some(Bytes::from_static(b"client-final")),
                reason_string: None,
                user_properties: Vec::new(),
            },
        }),
    ]
}

/// One or more instances of each of the 14 packet types, in type order.
pub(crate) fn sample_packets() -> Vec<Packet> {
    let id = |value| PacketId::new(value).unwrap();
    let topic = TopicName::try_from("gerrit/openstack/nova/change-merged").unwrap();
    vec![
        Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V3_1_1,
            clean_session: true,
            keep_alive: 30,
            client_id: "subscriber-1".to_owned(),
            will: None,
            username: None,
            password: None,
        })),
        Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V3_1,
            clean_session: false,
            keep_alive: 0,
            client_id: "pub".to_owned(),
            will: Some(LastWill {
                topic: topic.clone(),
                payload: Bytes::from_static(b"{\"gone\":true}"),
                qos: QoS::AtLeastOnce,
                retain: true,
            }),
            username: Some("infra".to_owned()),
            password: Some(Bytes::from_static(b"secret")),
        })),
        Packet::ConnAck(ConnAck {
            session_present: false,
            code: ConnectReturnCode::NotAuthorized,
        }),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: topic.clone(),
            packet_id: None,
            payload: Bytes::from(vec![b'x'; 1500]),
        }),
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::ExactlyOnce,
            retain: true,
            topic,
            packet_id: Some(id(42)),
            payload: Bytes::from_static(b"{}"),
        }),
        Packet::PubAck(id(1)),
        Packet::PubRec(id(2)),
        Packet::PubRel(id(3)),
        Packet::PubComp(id(4)),
        Packet::Subscribe(Subscribe {
            packet_id: id(5),
            filters: smallvec![
                (TopicFilter::try_from("gerrit/#").unwrap(), QoS::ExactlyOnce),
                (TopicFilter::try_from("$SYS/#").unwrap(), QoS::AtMostOnce),
            ],
        }),
        Packet::SubAck(SubAck {
            packet_id: id(5),
            return_codes: smallvec![
                SubAckReturnCode::Success(QoS::AtLeastOnce),
                SubAckReturnCode::Failure
            ],
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: id(6),
            filters: smallvec![TopicFilter::try_from("gerrit/#").unwrap()],
        }),
        Packet::UnsubAck(id(6)),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect,
    ]
}
