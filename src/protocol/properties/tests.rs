//! Property identifiers, where each may appear, and the validation of property blocks,
//! exercised through whole packets so that every failure is checked with its reason code.

use super::*;
use crate::protocol::testing::{decode_error_v5, decode_one_v5, packet_bytes, text, user};
use crate::protocol::{Packet, ReasonCode};
use crate::topic::TopicError;

/// The table of [MQTT-2.2.2.2], written out independently of `places`: each property with the
/// packets (and "will") that may carry it.
const SPEC_TABLE: [(u8, &[&str]); 27] = [
    (0x01, &["PUBLISH", "will"]),
    (0x02, &["PUBLISH", "will"]),
    (0x03, &["PUBLISH", "will"]),
    (0x08, &["PUBLISH", "will"]),
    (0x09, &["PUBLISH", "will"]),
    (0x0B, &["PUBLISH", "SUBSCRIBE"]),
    (0x11, &["CONNECT", "CONNACK", "DISCONNECT"]),
    (0x12, &["CONNACK"]),
    (0x13, &["CONNACK"]),
    (0x15, &["CONNECT", "CONNACK", "AUTH"]),
    (0x16, &["CONNECT", "CONNACK", "AUTH"]),
    (0x17, &["CONNECT"]),
    (0x18, &["will"]),
    (0x19, &["CONNECT"]),
    (0x1A, &["CONNACK"]),
    (0x1C, &["CONNACK", "DISCONNECT"]),
    (
        0x1F,
        &[
            "CONNACK",
            "PUBACK",
            "PUBREC",
            "PUBREL",
            "PUBCOMP",
            "SUBACK",
            "UNSUBACK",
            "DISCONNECT",
            "AUTH",
        ],
    ),
    (0x21, &["CONNECT", "CONNACK"]),
    (0x22, &["CONNECT", "CONNACK"]),
    (0x23, &["PUBLISH"]),
    (0x24, &["CONNACK"]),
    (0x25, &["CONNACK"]),
    (
        0x26,
        &[
            "CONNECT",
            "CONNACK",
            "PUBLISH",
            "will",
            "PUBACK",
            "PUBREC",
            "PUBREL",
            "PUBCOMP",
            "SUBSCRIBE",
            "SUBACK",
            "UNSUBSCRIBE",
            "UNSUBACK",
            "DISCONNECT",
            "AUTH",
        ],
    ),
    (0x27, &["CONNECT", "CONNACK"]),
    (0x28, &["CONNACK"]),
    (0x29, &["CONNACK"]),
    (0x2A, &["CONNACK"]),
];

#[test]
fn identifiers_match_the_specification_table() {
    assert_eq!(ALL_PROPERTY_IDS.len(), SPEC_TABLE.len());
    for (property, (id, places)) in ALL_PROPERTY_IDS.iter().zip(SPEC_TABLE) {
        assert_eq!(property.id(), id);
        assert_eq!(PropertyId::from_id(u32::from(id)), Some(*property));
        assert!(!property.name().is_empty());
        for value in 1..=15u8 {
            let packet = PacketType::from_u8(value).unwrap();
            assert_eq!(
                property.allowed_in(packet),
                places.contains(&packet.name()),
                "{} in {}",
                property.name(),
                packet.name()
            );
        }
        assert_eq!(property.allowed_in_will(), places.contains(&"will"));
    }
    for unknown in [0u32, 4, 10, 0x2B, 0x80, 300] {
        assert_eq!(PropertyId::from_id(unknown), None);
    }
    assert!(PropertyId::UserProperty.may_repeat_in(PacketType::Connect));
    assert!(PropertyId::SubscriptionIdentifier.may_repeat_in(PacketType::Publish));
    assert!(!PropertyId::SubscriptionIdentifier.may_repeat_in(PacketType::Subscribe));
    assert_eq!(
        PropertyId::SubscriptionIdentifier.value_type(),
        PropertyType::VariableByteInteger
    );
    assert_eq!(
        PropertyId::UserProperty.value_type(),
        PropertyType::Utf8StringPair
    );
}

/// An MQTT 5 DISCONNECT (reason 0x00) carrying the property bytes `properties`.
fn disconnect_with(properties: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, u8::try_from(properties.len()).unwrap()];
    body.extend_from_slice(properties);
    packet_bytes(0xE0, &body)
}

/// An MQTT 5 CONNECT (client id "a") whose properties are `properties`.
fn connect_with(properties: &[u8]) -> Vec<u8> {
    let mut body = b"\x00\x04MQTT\x05\x02\x00\x3c".to_vec();
    body.push(u8::try_from(properties.len()).unwrap());
    body.extend_from_slice(properties);
    body.extend_from_slice(b"\x00\x01a");
    packet_bytes(0x10, &body)
}

/// A QoS 0 MQTT 5 PUBLISH to "t" whose properties are `properties`.
fn publish_with(properties: &[u8]) -> Vec<u8> {
    let mut body = b"\x00\x01t".to_vec();
    body.push(u8::try_from(properties.len()).unwrap());
    body.extend_from_slice(properties);
    body.extend_from_slice(b"payload");
    packet_bytes(0x30, &body)
}

#[test]
fn a_property_out_of_place_is_a_malformed_packet() {
    let cases: [(Vec<u8>, &str, PropertyId); 4] = [
        (
            disconnect_with(b"\x23\x00\x01"),
            "DISCONNECT",
            PropertyId::TopicAlias,
        ),
        (connect_with(b"\x24\x01"), "CONNECT", PropertyId::MaximumQoS),
        (
            publish_with(b"\x1f\x00\x01x"),
            "PUBLISH",
            PropertyId::ReasonString,
        ),
        (
            connect_with(b"\x18\x00\x00\x00\x01"),
            "CONNECT",
            PropertyId::WillDelayInterval,
        ),
    ];
    for (wire, packet, property) in cases {
        let error = decode_error_v5(&wire);
        assert_eq!(error, DecodeError::PropertyNotAllowed { packet, property });
        assert_eq!(error.reason_code(), ReasonCode::MalformedPacket);
    }
}

#[test]
fn unknown_identifiers_and_bad_lengths_are_malformed_packets() {
    let cases: [(Vec<u8>, DecodeError); 5] = [
        (
            disconnect_with(b"\x04\x00"),
            DecodeError::UnknownProperty {
                packet: "DISCONNECT",
                id: 4,
            },
        ),
        (
            disconnect_with(b"\x80\x01"),
            DecodeError::UnknownProperty {
                packet: "DISCONNECT",
                id: 128,
            },
        ),
        // A reason string whose length runs past the property block.
        (
            disconnect_with(b"\x1f\x00\x05ab"),
            DecodeError::Truncated {
                packet: "DISCONNECT",
            },
        ),
        // A property length past the end of the packet.
        (
            packet_bytes(0xE0, b"\x00\x05\x1f\x00"),
            DecodeError::Truncated {
                packet: "DISCONNECT",
            },
        ),
        (
            packet_bytes(0xE0, b"\x00\xff\xff\xff\xff\x01"),
            DecodeError::MalformedVariableByteInteger {
                packet: "DISCONNECT",
            },
        ),
    ];
    for (wire, expected) in cases {
        let error = decode_error_v5(&wire);
        assert_eq!(error, expected, "{wire:x?}");
        assert_eq!(error.reason_code(), ReasonCode::MalformedPacket);
    }
}

#[test]
fn a_repeated_single_property_is_a_protocol_error() {
    let cases: [(Vec<u8>, &str, PropertyId); 4] = [
        (
            disconnect_with(b"\x1f\x00\x01a\x1f\x00\x01b"),
            "DISCONNECT",
            PropertyId::ReasonString,
        ),
        (
            connect_with(b"\x21\x00\x01\x21\x00\x02"),
            "CONNECT",
            PropertyId::ReceiveMaximum,
        ),
        (
            publish_with(b"\x23\x00\x01\x23\x00\x01"),
            "PUBLISH",
            PropertyId::TopicAlias,
        ),
        (
            publish_with(b"\x01\x00\x01\x01"),
            "PUBLISH",
            PropertyId::PayloadFormatIndicator,
        ),
    ];
    for (wire, packet, property) in cases {
        let error = decode_error_v5(&wire);
        assert_eq!(error, DecodeError::DuplicateProperty { packet, property });
        assert_eq!(error.reason_code(), ReasonCode::ProtocolError);
    }
    // Repeatable ones are kept, in order.
    let Packet::PublishV5(publish) = decode_one_v5(&publish_with(
        b"\x26\x00\x01k\x00\x011\x0b\x05\x26\x00\x01k\x00\x012\x0b\x80\x01",
    )) else {
        panic!("not a PUBLISH");
    };
    assert_eq!(
        publish.properties.message.user_properties,
        [user("k", "1"), user("k", "2")]
    );
    let ids: Vec<u32> = publish
        .properties
        .subscription_ids
        .iter()
        .map(|id| id.get())
        .collect();
    assert_eq!(ids, [5, 128]);
}

#[test]
fn values_out_of_range_are_refused_with_their_reason_code() {
    let cases: [(Vec<u8>, &str, PropertyId, u32, ReasonCode); 9] = [
        (
            connect_with(b"\x21\x00\x00"),
            "CONNECT",
            PropertyId::ReceiveMaximum,
            0,
            ReasonCode::ProtocolError,
        ),
        (
            connect_with(b"\x27\x00\x00\x00\x00"),
            "CONNECT",
            PropertyId::MaximumPacketSize,
            0,
            ReasonCode::ProtocolError,
        ),
        (
            connect_with(b"\x17\x02"),
            "CONNECT",
            PropertyId::RequestProblemInformation,
            2,
            ReasonCode::ProtocolError,
        ),
        (
            connect_with(b"\x19\xff"),
            "CONNECT",
            PropertyId::RequestResponseInformation,
            255,
            ReasonCode::ProtocolError,
        ),
        (
            publish_with(b"\x01\x02"),
            "PUBLISH",
            PropertyId::PayloadFormatIndicator,
            2,
            ReasonCode::ProtocolError,
        ),
        (
            publish_with(b"\x0b\x00"),
            "PUBLISH",
            PropertyId::SubscriptionIdentifier,
            0,
            ReasonCode::ProtocolError,
        ),
        (
            publish_with(b"\x23\x00\x00"),
            "PUBLISH",
            PropertyId::TopicAlias,
            0,
            ReasonCode::TopicAliasInvalid,
        ),
        (
            packet_bytes(0x20, b"\x00\x00\x02\x24\x02"),
            "CONNACK",
            PropertyId::MaximumQoS,
            2,
            ReasonCode::ProtocolError,
        ),
        (
            packet_bytes(0x20, b"\x00\x00\x02\x25\x03"),
            "CONNACK",
            PropertyId::RetainAvailable,
            3,
            ReasonCode::ProtocolError,
        ),
    ];
    for (wire, packet, property, value, reason) in cases {
        let error = decode_error_v5(&wire);
        assert_eq!(
            error,
            DecodeError::InvalidPropertyValue {
                packet,
                property,
                value
            }
        );
        assert_eq!(error.reason_code(), reason, "{error}");
    }
}

#[test]
fn strings_and_topics_in_properties_are_validated() {
    let error = decode_error_v5(&disconnect_with(b"\x1f\x00\x01\xff"));
    assert_eq!(
        error,
        DecodeError::InvalidUtf8 {
            field: "Reason String"
        }
    );
    assert_eq!(error.reason_code(), ReasonCode::MalformedPacket);
    let error = decode_error_v5(&disconnect_with(b"\x26\x00\x01k\x00\x01\x00"));
    assert_eq!(
        error,
        DecodeError::NullCharacter {
            field: "User Property"
        }
    );
    let error = decode_error_v5(&publish_with(b"\x08\x00\x03a/#"));
    assert_eq!(
        error,
        DecodeError::InvalidResponseTopic {
            packet: "PUBLISH",
            error: TopicError::WildcardInName
        }
    );
    assert_eq!(error.reason_code(), ReasonCode::ProtocolError);
    let error = decode_error_v5(&publish_with(b"\x08\x00\x01\x00"));
    assert_eq!(
        error,
        DecodeError::NullCharacter {
            field: "Response Topic"
        }
    );
    assert_eq!(error.reason_code(), ReasonCode::MalformedPacket);
}

#[test]
fn authentication_data_needs_a_method() {
    let error = decode_error_v5(&connect_with(b"\x16\x00\x01d"));
    assert_eq!(
        error,
        DecodeError::AuthenticationDataWithoutMethod { packet: "CONNECT" }
    );
    assert_eq!(error.reason_code(), ReasonCode::ProtocolError);
    assert_eq!(
        decode_error_v5(&packet_bytes(0xF0, b"\x18\x04\x16\x00\x01d")),
        DecodeError::AuthenticationDataWithoutMethod { packet: "AUTH" }
    );
    let Packet::ConnectV5(connect) = decode_one_v5(&connect_with(b"\x15\x00\x01m\x16\x00\x01d"))
    else {
        panic!("not a CONNECT");
    };
    assert_eq!(connect.properties.authentication_method, Some(text("m")));
}

#[test]
fn encoded_sizes_match_the_bytes_written() {
    let properties = ConnAckProperties {
        assigned_client_identifier: Some(text("id")),
        maximum_packet_size: NonZeroU32::new(1 << 20),
        user_properties: vec![user("a", "b")],
        ..ConnAckProperties::default()
    };
    let mut out = BytesMut::new();
    write_block(&properties, &mut out);
    assert_eq!(properties.encoded_len(), out.len());
    assert_eq!(
        &out[..],
        b"\x11\x27\x00\x10\x00\x00\x12\x00\x02id\x26\x00\x01a\x00\x01b"
    );
    assert!(!properties.is_empty());
    assert!(AckProperties::default().is_empty());
    assert_eq!(AckProperties::default().encoded_len(), 1);
    // A block over 127 bytes takes a two-byte length.
    let long = AckProperties {
        reason_string: Some(text(&"r".repeat(200))),
        user_properties: Vec::new(),
    };
    assert_eq!(long.encoded_len(), 2 + 3 + 200);
    // Maximum QoS 2 is the default and is never sent.
    let qos2 = ConnAckProperties {
        maximum_qos: Some(QoS::ExactlyOnce),
        ..ConnAckProperties::default()
    };
    assert!(qos2.is_empty());
}

#[test]
fn subscription_ids_span_the_variable_byte_integer_range() {
    assert_eq!(SubscriptionId::new(0), None);
    assert_eq!(SubscriptionId::new(SubscriptionId::MAX + 1), None);
    assert_eq!(
        SubscriptionId::new(SubscriptionId::MAX).map(SubscriptionId::get),
        Some(SubscriptionId::MAX)
    );
}

#[test]
fn defaults_of_absent_properties() {
    let connect = ConnectProperties::default();
    assert_eq!(connect.session_expiry(), 0);
    assert_eq!(connect.receive_maximum_or_default(), u16::MAX);
    assert!(connect.problem_information_requested());
    let message = MessageProperties {
        payload_format: Some(PayloadFormat::Utf8),
        ..MessageProperties::default()
    };
    assert!(message.payload_format_mismatch(b"\xff"));
    assert!(!message.payload_format_mismatch("é".as_bytes()));
    assert!(!MessageProperties::default().payload_format_mismatch(b"\xff"));
}
