//! Helpers shared by the codec's wire-byte tests.

use bytes::{Bytes, BytesMut};
use smallvec::smallvec;

use super::{
    decode, encode, ConnAck, Connect, ConnectReturnCode, DecodeError, LastWill, Packet, PacketId,
    ProtocolVersion, Publish, QoS, SubAck, SubAckReturnCode, Subscribe, TopicFilter, TopicName,
    Unsubscribe,
};

/// Checks that `packet` encodes to exactly `wire`, that `wire` decodes to exactly `packet`
/// (leaving what follows it in the buffer), that every proper prefix of `wire` is reported
/// incomplete without consuming anything, and that a limit one byte short refuses the packet
/// as soon as its fixed header is in.
pub(crate) fn assert_wire(packet: &Packet, wire: &[u8]) {
    let mut out = BytesMut::new();
    encode(packet, &mut out);
    assert_eq!(&out[..], wire, "encoding of {}", packet.name());

    for split in 0..wire.len() {
        let mut buf = BytesMut::from(&wire[..split]);
        assert_eq!(
            decode(&mut buf, wire.len()),
            Ok(None),
            "{} cut at {split}",
            packet.name()
        );
        assert_eq!(&buf[..], &wire[..split], "nothing consumed");
    }

    let mut buf = BytesMut::from(wire);
    buf.extend_from_slice(&[0xC0]);
    assert_eq!(decode(&mut buf, wire.len()), Ok(Some(packet.clone())));
    assert_eq!(&buf[..], &[0xC0], "only {} was consumed", packet.name());

    let header_len = wire[1..]
        .iter()
        .position(|byte| byte & 0x80 == 0)
        .map_or(wire.len(), |at| at + 2);
    let mut buf = BytesMut::from(&wire[..header_len]);
    assert_eq!(
        decode(&mut buf, wire.len() - 1),
        Err(DecodeError::PacketTooLarge {
            size: wire.len(),
            max: wire.len() - 1
        })
    );
}

/// Decodes `wire`, which must hold exactly one valid packet.
pub(crate) fn decode_one(wire: &[u8]) -> Packet {
    let mut buf = BytesMut::from(wire);
    match decode(&mut buf, usize::MAX) {
        Ok(Some(packet)) if buf.is_empty() => packet,
        other => panic!("{wire:x?} did not decode to one packet: {other:?}, left {buf:x?}"),
    }
}

/// Decodes `wire`, which must be refused; returns why.
pub(crate) fn decode_error(wire: &[u8]) -> DecodeError {
    match decode(&mut BytesMut::from(wire), usize::MAX) {
        Err(error) => error,
        other => panic!("{wire:x?} was not refused: {other:?}"),
    }
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
