//! Cross-checks against an independent codec (rumqttc's, the client library of the black-box
//! tests): what it encodes we decode, and what we encode it decodes.

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4 as theirs;
use rumqttc::mqttbytes::{Protocol as TheirProtocol, QoS as TheirQoS};
use smallvec::smallvec;

use super::testing::decode_one;
use super::{
    encode, ConnAck, Connect, ConnectReturnCode, EncodedPublish, LastWill, Packet, PacketId,
    ProtocolVersion, Publish, QoS, SubAck, SubAckReturnCode, Subscribe, TopicFilter, TopicName,
    Unsubscribe,
};

fn id(value: u16) -> PacketId {
    PacketId::new(value).unwrap()
}

/// Appends a packet with rumqttc's encoder.
type RumqttcWriter = fn(&mut BytesMut);

/// Encodes with rumqttc and decodes with this codec.
fn ours_from(write: impl FnOnce(&mut BytesMut)) -> Packet {
    let mut wire = BytesMut::new();
    write(&mut wire);
    decode_one(&wire)
}

/// Encodes with this codec and decodes with rumqttc.
fn theirs_from(packet: &Packet) -> theirs::Packet {
    let mut wire = BytesMut::new();
    encode(packet, &mut wire);
    let decoded = theirs::read(&mut wire, 1 << 20).unwrap();
    assert!(wire.is_empty(), "rumqttc left bytes of {}", packet.name());
    decoded
}

#[test]
fn client_packets_encoded_by_rumqttc_decode() {
    let connect = theirs::Connect {
        protocol: TheirProtocol::V4,
        keep_alive: 30,
        client_id: "pub-1".to_owned(),
        clean_session: true,
        last_will: Some(theirs::LastWill::new(
            "will/t",
            "bye",
            TheirQoS::AtLeastOnce,
            true,
        )),
        login: Some(theirs::Login::new("infra", "pw")),
    };
    assert_eq!(
        ours_from(|w| {
            connect.write(w).unwrap();
        }),
        Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V3_1_1,
            clean_session: true,
            keep_alive: 30,
            client_id: "pub-1".to_owned(),
            will: Some(LastWill {
                topic: TopicName::try_from("will/t").unwrap(),
                payload: Bytes::from_static(b"bye"),
                qos: QoS::AtLeastOnce,
                retain: true,
            }),
            username: Some("infra".to_owned()),
            password: Some(Bytes::from_static(b"pw")),
        }))
    );

    let mut publish = theirs::Publish::new("a/b", TheirQoS::ExactlyOnce, "payload");
    publish.pkid = 7;
    publish.retain = true;
    assert_eq!(
        ours_from(|w| {
            publish.write(w).unwrap();
        }),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::ExactlyOnce,
            retain: true,
            topic: TopicName::try_from("a/b").unwrap(),
            packet_id: Some(id(7)),
            payload: Bytes::from_static(b"payload"),
        })
    );

    let mut subscribe = theirs::Subscribe::new_many([
        theirs::SubscribeFilter::new("gerrit/#".to_owned(), TheirQoS::AtLeastOnce),
        theirs::SubscribeFilter::new("+/x".to_owned(), TheirQoS::AtMostOnce),
    ]);
    subscribe.pkid = 3;
    assert_eq!(
        ours_from(|w| {
            subscribe.write(w).unwrap();
        }),
        Packet::Subscribe(Subscribe {
            packet_id: id(3),
            filters: smallvec![
                (TopicFilter::try_from("gerrit/#").unwrap(), QoS::AtLeastOnce),
                (TopicFilter::try_from("+/x").unwrap(), QoS::AtMostOnce),
            ],
        })
    );

    let mut unsubscribe = theirs::Unsubscribe::new("gerrit/#");
    unsubscribe.pkid = 4;
    assert_eq!(
        ours_from(|w| {
            unsubscribe.write(w).unwrap();
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: id(4),
            filters: smallvec![TopicFilter::try_from("gerrit/#").unwrap()],
        })
    );

    let acks: [(Packet, RumqttcWriter); 6] = [
        (Packet::PubAck(id(9)), |w| {
            theirs::PubAck::new(9).write(w).unwrap();
        }),
        (Packet::PubRec(id(9)), |w| {
            theirs::PubRec::new(9).write(w).unwrap();
        }),
        (Packet::PubRel(id(9)), |w| {
            theirs::PubRel::new(9).write(w).unwrap();
        }),
        (Packet::PubComp(id(9)), |w| {
            theirs::PubComp::new(9).write(w).unwrap();
        }),
        (Packet::PingReq, |w| {
            theirs::PingReq.write(w).unwrap();
        }),
        (Packet::Disconnect, |w| {
            theirs::Disconnect.write(w).unwrap();
        }),
    ];
    for (expected, write) in acks {
        assert_eq!(ours_from(write), expected);
    }
}

#[test]
fn server_packets_encoded_here_decode_in_rumqttc() {
    assert_eq!(
        theirs_from(&Packet::ConnAck(ConnAck {
            session_present: true,
            code: ConnectReturnCode::Accepted,
        })),
        theirs::Packet::ConnAck(theirs::ConnAck::new(
            theirs::ConnectReturnCode::Success,
            true
        ))
    );
    assert_eq!(
        theirs_from(&Packet::SubAck(SubAck {
            packet_id: id(3),
            return_codes: smallvec![
                SubAckReturnCode::Success(QoS::ExactlyOnce),
                SubAckReturnCode::Failure
            ],
        })),
        theirs::Packet::SubAck(theirs::SubAck::new(
            3,
            vec![
                theirs::SubscribeReasonCode::Success(TheirQoS::ExactlyOnce),
                theirs::SubscribeReasonCode::Failure
            ]
        ))
    );
    assert_eq!(
        theirs_from(&Packet::UnsubAck(id(4))),
        theirs::Packet::UnsubAck(theirs::UnsubAck::new(4))
    );
    assert_eq!(
        theirs_from(&Packet::PubRel(id(5))),
        theirs::Packet::PubRel(theirs::PubRel::new(5))
    );
    assert_eq!(theirs_from(&Packet::PingResp), theirs::Packet::PingResp);

    let topic = TopicName::try_from("zuul/status").unwrap();
    let payload = Bytes::from(vec![b'j'; 70_000]);
    for (qos, their_qos) in [
        (QoS::AtMostOnce, TheirQoS::AtMostOnce),
        (QoS::AtLeastOnce, TheirQoS::AtLeastOnce),
        (QoS::ExactlyOnce, TheirQoS::ExactlyOnce),
    ] {
        let encoded = EncodedPublish::new(&topic, &payload, qos, true);
        let packet_id = (qos != QoS::AtMostOnce).then(|| id(11));
        let mut wire = BytesMut::new();
        encoded.write_to(&mut wire, packet_id, true);
        let Ok(theirs::Packet::Publish(publish)) = theirs::read(&mut wire, 1 << 20) else {
            panic!("rumqttc did not read a PUBLISH");
        };
        assert_eq!(publish.qos, their_qos);
        assert_eq!(publish.topic, "zuul/status");
        assert_eq!(publish.pkid, packet_id.map_or(0, PacketId::get));
        assert_eq!(publish.dup, qos != QoS::AtMostOnce);
        assert!(publish.retain);
        assert_eq!(publish.payload, payload);
    }
}
