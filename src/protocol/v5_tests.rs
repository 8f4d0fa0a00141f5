//! Tests across the MQTT 5 packet families: every sample round-trips byte for byte, packets
//! decode back to back, a connection's version selects the layout, every decoding failure
//! maps to a reason code a DISCONNECT or CONNACK may carry, and fitting to a maximum packet
//! size never produces a packet over it.

use bytes::BytesMut;

use super::testing::{assert_samples_round_trip, sample_packets_v5, text, user};
use super::*;

#[test]
fn every_v5_packet_type_has_a_name() {
    let names: Vec<&str> = sample_packets_v5().iter().map(Packet::name).collect();
    assert_eq!(
        names,
        [
            "CONNECT",
            "CONNACK",
            "PUBLISH",
            "PUBLISH",
            "PUBLISH",
            "PUBACK",
            "PUBREC",
            "PUBREL",
            "PUBCOMP",
            "SUBSCRIBE",
            "SUBACK",
            "UNSUBSCRIBE",
            "UNSUBACK",
            "PINGREQ",
            "PINGRESP",
            "DISCONNECT",
            "DISCONNECT",
            "AUTH",
        ]
    );
}

#[test]
fn every_v5_sample_round_trips_and_decodes_back_to_back() {
    assert_samples_round_trip(Some(ProtocolVersion::V5), &sample_packets_v5());
}

#[test]
fn the_connection_version_selects_the_layout() {
    // The same bytes are a 3.1.1 PUBACK or an MQTT 5 one.
    let wire = [0x40, 0x02, 0x00, 0x05];
    let id = PacketId::new(5).unwrap();
    let v311 = decode_with(
        &mut BytesMut::from(&wire[..]),
        16,
        Some(ProtocolVersion::V3_1_1),
    );
    assert_eq!(v311, Ok(Some(Packet::PubAck(id))));
    let v5 = decode_with(
        &mut BytesMut::from(&wire[..]),
        16,
        Some(ProtocolVersion::V5),
    );
    assert_eq!(v5, Ok(Some(Packet::PubAckV5(Ack::success(id)))));
    // The same PUBLISH bytes carry payload "\0x" in 3.1.1 and, after an empty property
    // block, "x" in MQTT 5.
    let v311_publish = b"\x30\x05\x00\x01t\x00x";
    let Ok(Some(Packet::PublishV5(publish))) = decode_with(
        &mut BytesMut::from(&v311_publish[..]),
        64,
        Some(ProtocolVersion::V5),
    ) else {
        panic!("not an MQTT 5 PUBLISH");
    };
    assert_eq!(&publish.payload[..], b"x");
    // Before CONNECT, a CONNECT of either version decodes.
    let mut buf = BytesMut::new();
    for packet in [&sample_packets_v5()[0], &testing::sample_packets()[0]] {
        encode(packet, &mut buf);
    }
    assert!(matches!(
        decode(&mut buf, 1 << 20),
        Ok(Some(Packet::ConnectV5(_)))
    ));
    assert!(matches!(
        decode(&mut buf, 1 << 20),
        Ok(Some(Packet::Connect(_)))
    ));
}

#[test]
fn every_decode_error_maps_to_a_code_its_answer_may_carry() {
    let errors = [
        DecodeError::PacketTooLarge { size: 2, max: 1 },
        DecodeError::MalformedRemainingLength,
        DecodeError::ReservedPacketType(0),
        DecodeError::InvalidProtocolName,
        DecodeError::UnsupportedProtocolLevel(6),
        DecodeError::ZeroPacketId { packet: "PUBLISH" },
        DecodeError::EmptySubscribe,
        DecodeError::InvalidPropertyValue {
            packet: "PUBLISH",
            property: PropertyId::TopicAlias,
            value: 0,
        },
        DecodeError::Truncated { packet: "PUBLISH" },
    ];
    let expected = [
        ReasonCode::PacketTooLarge,
        ReasonCode::MalformedPacket,
        ReasonCode::MalformedPacket,
        ReasonCode::UnsupportedProtocolVersion,
        ReasonCode::UnsupportedProtocolVersion,
        ReasonCode::ProtocolError,
        ReasonCode::ProtocolError,
        ReasonCode::TopicAliasInvalid,
        ReasonCode::MalformedPacket,
    ];
    for (error, reason) in errors.iter().zip(expected) {
        assert_eq!(error.reason_code(), reason, "{error}");
        let answer = if reason == ReasonCode::UnsupportedProtocolVersion {
            PacketType::ConnAck
        } else {
            PacketType::Disconnect
        };
        assert!(reason.allowed_in(answer), "{error}");
    }
}

#[test]
fn fitting_never_leaves_a_packet_over_the_limit() {
    for mut packet in sample_packets_v5() {
        let full = packet.encoded_len();
        for max in [full, full - 1, full / 2, 8, 2] {
            if packet.fit_within(max) {
                assert!(packet.encoded_len() <= max, "{}", packet.name());
                let mut wire = BytesMut::new();
                encode(&packet, &mut wire);
                assert_eq!(wire.len(), packet.encoded_len());
            }
        }
    }
    let mut suback = Packet::SubAckV5(SubAckV5 {
        packet_id: PacketId::new(1).unwrap(),
        properties: AckProperties {
            reason_string: Some(text("quota")),
            user_properties: vec![user("a", "b")],
        },
        reason_codes: smallvec::smallvec![ReasonCode::QuotaExceeded],
    });
    assert!(suback.fit_within(6));
    assert_eq!(suback.encoded_len(), 6);
    // A PUBLISH cannot be shrunk: it is sent whole or not at all.
    let mut publish = sample_packets_v5()[3].clone();
    let full = publish.encoded_len();
    assert!(!publish.fit_within(full - 1));
    assert_eq!(publish.encoded_len(), full);
}

#[test]
fn v3_packets_know_their_size_too() {
    for packet in testing::sample_packets() {
        let mut wire = BytesMut::new();
        encode(&packet, &mut wire);
        assert_eq!(packet.encoded_len(), wire.len(), "{}", packet.name());
    }
}
