//! Cross-checks of the MQTT 5 layouts against an independent codec (rumqttc's `v5`): what it
//! encodes we decode with the same meaning, and what we encode it decodes with the same
//! meaning. rumqttc has no AUTH packet, cannot build a DISCONNECT with properties (its type is
//! private), writes a DISCONNECT with a reason but no properties with a wrong remaining length
//! (`e0 01 04 00`), and cannot read the short forms of DISCONNECT (no body, or a reason code
//! without a property length, both valid [MQTT-3.14.2.1]): those are covered by the wire-byte
//! tests alone.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use rumqttc::v5::mqttbytes::v5 as theirs;
use rumqttc::v5::mqttbytes::QoS as TheirQoS;
use smallvec::smallvec;

use super::testing::{decode_one, decode_one_v5, text, user};
use super::*;

fn id(value: u16) -> PacketId {
    PacketId::new(value).unwrap()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

/// Encodes with rumqttc.
fn their_wire(packet: &theirs::Packet) -> BytesMut {
    let mut wire = BytesMut::new();
    packet.write(&mut wire).unwrap();
    wire
}

/// Encodes with this codec and decodes with rumqttc.
fn theirs_from(packet: &Packet) -> theirs::Packet {
    let mut wire = BytesMut::new();
    encode(packet, &mut wire);
    let decoded = theirs::Packet::read(&mut wire, Some(1 << 20)).unwrap();
    assert!(wire.is_empty(), "rumqttc left bytes of {}", packet.name());
    decoded
}

#[test]
fn connect_with_every_property_decodes_both_ways() {
    let their_connect = theirs::Connect {
        keep_alive: 30,
        client_id: "pub-1".to_owned(),
        clean_start: false,
        properties: Some(theirs::ConnectProperties {
            session_expiry_interval: Some(3600),
            receive_maximum: Some(32),
            max_packet_size: Some(1 << 20),
            topic_alias_max: Some(8),
            request_response_info: Some(1),
            request_problem_info: Some(0),
            user_properties: pairs(&[("a", "1"), ("a", "2")]),
            authentication_method: Some("TOKEN".to_owned()),
            authentication_data: Some(Bytes::from_static(b"t0k3n")),
        }),
    };
    let their_will = theirs::LastWill::new(
        "will/t",
        "bye",
        TheirQoS::ExactlyOnce,
        true,
        Some(theirs::LastWillProperties {
            delay_interval: Some(10),
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(60),
            content_type: Some("text/plain".to_owned()),
            response_topic: Some("replies/pub-1".to_owned()),
            correlation_data: Some(Bytes::from_static(b"\x01")),
            user_properties: pairs(&[("w", "x")]),
        }),
    );
    let their_packet = theirs::Packet::Connect(
        their_connect.clone(),
        Some(their_will.clone()),
        Some(theirs::Login::new("infra", "pw")),
    );
    let ours = ConnectV5 {
        connect: Connect {
            protocol: ProtocolVersion::V5,
            clean_session: false,
            keep_alive: 30,
            client_id: "pub-1".to_owned(),
            will: Some(LastWill {
                topic: TopicName::try_from("will/t").unwrap(),
                payload: Bytes::from_static(b"bye"),
                qos: QoS::ExactlyOnce,
                retain: true,
            }),
            username: Some("infra".to_owned()),
            password: Some(Bytes::from_static(b"pw")),
        },
        properties: ConnectProperties {
            session_expiry_interval: Some(3600),
            receive_maximum: NonZeroU16::new(32),
            maximum_packet_size: NonZeroU32::new(1 << 20),
            topic_alias_maximum: Some(8),
            request_response_information: Some(true),
            request_problem_information: Some(false),
            user_properties: vec![user("a", "1"), user("a", "2")],
            authentication_method: Some(text("TOKEN")),
            authentication_data: Some(Bytes::from_static(b"t0k3n")),
        },
        will_properties: WillProperties {
            will_delay_interval: Some(10),
            message: MessageProperties {
                payload_format: Some(PayloadFormat::Utf8),
                message_expiry_interval: Some(60),
                content_type: Some(text("text/plain")),
                response_topic: Some(TopicName::try_from("replies/pub-1").unwrap()),
                correlation_data: Some(Bytes::from_static(b"\x01")),
                user_properties: vec![user("w", "x")],
            },
        },
    };
    // A CONNECT is the first packet: it decodes before the version is known.
    assert_eq!(
        decode_one(&their_wire(&their_packet)),
        Packet::ConnectV5(Box::new(ours.clone()))
    );
    assert_eq!(
        theirs_from(&Packet::ConnectV5(Box::new(ours))),
        their_packet
    );
}

#[test]
fn publishes_decode_both_ways() {
    let their_publish = theirs::Publish {
        dup: true,
        qos: TheirQoS::AtLeastOnce,
        retain: true,
        topic: Bytes::from_static(b"a/b"),
        pkid: 7,
        payload: Bytes::from_static(b"payload"),
        properties: Some(theirs::PublishProperties {
            payload_format_indicator: Some(0),
            message_expiry_interval: Some(5),
            topic_alias: Some(3),
            response_topic: Some("r/1".to_owned()),
            correlation_data: Some(Bytes::from_static(b"c")),
            user_properties: pairs(&[("k", "v")]),
            subscription_identifiers: vec![1, 20_000],
            content_type: Some("json".to_owned()),
        }),
    };
    let ours = PublishV5 {
        dup: true,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: PublishTopic::NameWithAlias(
            TopicName::try_from("a/b").unwrap(),
            TopicAlias::new(3).unwrap(),
        ),
        packet_id: Some(id(7)),
        properties: PublishProperties {
            message: MessageProperties {
                payload_format: Some(PayloadFormat::Unspecified),
                message_expiry_interval: Some(5),
                content_type: Some(text("json")),
                response_topic: Some(TopicName::try_from("r/1").unwrap()),
                correlation_data: Some(Bytes::from_static(b"c")),
                user_properties: vec![user("k", "v")],
            },
            subscription_ids: vec![
                SubscriptionId::new(1).unwrap(),
                SubscriptionId::new(20_000).unwrap(),
            ],
        },
        payload: Bytes::from_static(b"payload"),
    };
    let their_packet = theirs::Packet::Publish(their_publish);
    assert_eq!(
        decode_one_v5(&their_wire(&their_packet)),
        Packet::PublishV5(ours.clone())
    );
    assert_eq!(theirs_from(&Packet::PublishV5(ours)), their_packet);

    // A topic alias alone: an empty topic name.
    let alias_only = theirs::Packet::Publish(theirs::Publish {
        topic: Bytes::new(),
        properties: Some(theirs::PublishProperties {
            topic_alias: Some(3),
            ..Default::default()
        }),
        ..theirs::Publish::new("", TheirQoS::AtMostOnce, "x", None)
    });
    let Packet::PublishV5(decoded) = decode_one_v5(&their_wire(&alias_only)) else {
        panic!("not a PUBLISH");
    };
    assert_eq!(
        decoded.topic,
        PublishTopic::Alias(TopicAlias::new(3).unwrap())
    );
    assert_eq!(&decoded.payload[..], b"x");
}

#[test]
fn encoded_publishes_decode_in_rumqttc() {
    let topic = PublishTopic::Name(TopicName::try_from("zuul/status").unwrap());
    let payload = Bytes::from(vec![b'j'; 70_000]);
    let message = MessageProperties {
        user_properties: vec![user("origin", "zuul")],
        message_expiry_interval: Some(300),
        ..MessageProperties::default()
    };
    let ids = [SubscriptionId::new(9).unwrap()];
    for (qos, their_qos) in [
        (QoS::AtMostOnce, TheirQoS::AtMostOnce),
        (QoS::AtLeastOnce, TheirQoS::AtLeastOnce),
        (QoS::ExactlyOnce, TheirQoS::ExactlyOnce),
    ] {
        let delivery = DeliveryProperties {
            message: &message,
            message_expiry_interval: Some(120),
            subscription_ids: &ids,
        };
        let encoded = EncodedPublish::new_v5(&topic, &payload, qos, false, delivery);
        let packet_id = (qos != QoS::AtMostOnce).then(|| id(11));
        let mut wire = BytesMut::new();
        encoded.write_to(&mut wire, packet_id, true);
        let Ok(theirs::Packet::Publish(publish)) = theirs::Packet::read(&mut wire, None) else {
            panic!("rumqttc did not read a PUBLISH");
        };
        assert_eq!(publish.qos, their_qos);
        assert_eq!(&publish.topic[..], b"zuul/status");
        assert_eq!(publish.pkid, packet_id.map_or(0, PacketId::get));
        assert_eq!(publish.dup, qos != QoS::AtMostOnce);
        assert_eq!(publish.payload, payload);
        let properties = publish.properties.unwrap();
        assert_eq!(properties.message_expiry_interval, Some(120));
        assert_eq!(properties.subscription_identifiers, [9]);
        assert_eq!(properties.user_properties, pairs(&[("origin", "zuul")]));
    }
}

#[test]
fn subscribe_and_unsubscribe_decode_both_ways() {
    let their_subscribe = theirs::Packet::Subscribe(theirs::Subscribe {
        pkid: 3,
        filters: vec![
            theirs::Filter {
                path: "gerrit/#".to_owned(),
                qos: TheirQoS::ExactlyOnce,
                nolocal: true,
                preserve_retain: true,
                retain_forward_rule: theirs::RetainForwardRule::Never,
            },
            theirs::Filter {
                path: "+/x".to_owned(),
                qos: TheirQoS::AtMostOnce,
                nolocal: false,
                preserve_retain: false,
                retain_forward_rule: theirs::RetainForwardRule::OnNewSubscribe,
            },
        ],
        properties: Some(theirs::SubscribeProperties {
            id: Some(42),
            user_properties: pairs(&[("s", "1")]),
        }),
    });
    let ours = Packet::SubscribeV5(SubscribeV5 {
        packet_id: id(3),
        properties: SubscribeProperties {
            subscription_id: SubscriptionId::new(42),
            user_properties: vec![user("s", "1")],
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
                TopicFilter::try_from("+/x").unwrap(),
                SubscriptionOptions {
                    retain_handling: RetainHandling::SendOnNewSubscription,
                    ..SubscriptionOptions::new(QoS::AtMostOnce)
                }
            ),
        ],
    });
    assert_eq!(decode_one_v5(&their_wire(&their_subscribe)), ours);
    assert_eq!(theirs_from(&ours), their_subscribe);

    let their_unsubscribe = theirs::Packet::Unsubscribe(theirs::Unsubscribe {
        pkid: 4,
        filters: vec!["gerrit/#".to_owned(), "a".to_owned()],
        properties: Some(theirs::UnsubscribeProperties {
            user_properties: pairs(&[("u", "2")]),
        }),
    });
    let ours = Packet::UnsubscribeV5(UnsubscribeV5 {
        packet_id: id(4),
        properties: UnsubscribeProperties {
            user_properties: vec![user("u", "2")],
        },
        filters: smallvec![
            TopicFilter::try_from("gerrit/#").unwrap(),
            TopicFilter::try_from("a").unwrap()
        ],
    });
    assert_eq!(decode_one_v5(&their_wire(&their_unsubscribe)), ours);
    assert_eq!(theirs_from(&ours), their_unsubscribe);
}

#[test]
fn acknowledgements_decode_both_ways() {
    let diagnostics = AckProperties {
        reason_string: Some(text("why")),
        user_properties: vec![user("k", "v")],
    };
    let cases = [
        (
            theirs::Packet::PubAck(theirs::PubAck::new(9, None)),
            Packet::PubAckV5(Ack::success(id(9))),
        ),
        (
            theirs::Packet::PubAck(theirs::PubAck {
                pkid: 9,
                reason: theirs::PubAckReason::NoMatchingSubscribers,
                properties: Some(theirs::PubAckProperties {
                    reason_string: Some("why".to_owned()),
                    user_properties: pairs(&[("k", "v")]),
                }),
            }),
            Packet::PubAckV5(Ack {
                packet_id: id(9),
                reason: ReasonCode::NoMatchingSubscribers,
                properties: diagnostics.clone(),
            }),
        ),
        (
            theirs::Packet::PubRec(theirs::PubRec {
                pkid: 10,
                reason: theirs::PubRecReason::QuotaExceeded,
                properties: None,
            }),
            Packet::PubRecV5(Ack {
                packet_id: id(10),
                reason: ReasonCode::QuotaExceeded,
                properties: AckProperties::default(),
            }),
        ),
        (
            theirs::Packet::PubRel(theirs::PubRel {
                pkid: 11,
                reason: theirs::PubRelReason::PacketIdentifierNotFound,
                properties: Some(theirs::PubRelProperties {
                    reason_string: Some("why".to_owned()),
                    user_properties: pairs(&[("k", "v")]),
                }),
            }),
            Packet::PubRelV5(Ack {
                packet_id: id(11),
                reason: ReasonCode::PacketIdentifierNotFound,
                properties: diagnostics.clone(),
            }),
        ),
        (
            theirs::Packet::PubComp(theirs::PubComp::new(12, None)),
            Packet::PubCompV5(Ack::success(id(12))),
        ),
    ];
    for (their_packet, ours) in cases {
        assert_eq!(decode_one_v5(&their_wire(&their_packet)), ours);
        assert_eq!(theirs_from(&ours), their_packet);
    }
}

#[test]
fn server_packets_encoded_here_decode_in_rumqttc() {
    assert_eq!(
        theirs_from(&Packet::ConnAckV5(ConnAckV5 {
            session_present: true,
            reason: ReasonCode::Success,
            properties: ConnAckProperties {
                receive_maximum: NonZeroU16::new(100),
                maximum_qos: Some(QoS::AtLeastOnce),
                retain_available: Some(true),
                maximum_packet_size: NonZeroU32::new(65_536),
                assigned_client_identifier: Some(text("auto-7")),
                topic_alias_maximum: Some(10),
                wildcard_subscription_available: Some(true),
                subscription_identifiers_available: Some(false),
                shared_subscription_available: Some(false),
                server_keep_alive: Some(45),
                user_properties: vec![user("v", "1")],
                ..ConnAckProperties::default()
            },
        })),
        theirs::Packet::ConnAck(theirs::ConnAck {
            session_present: true,
            code: theirs::ConnectReturnCode::Success,
            properties: Some(theirs::ConnAckProperties {
                session_expiry_interval: None,
                receive_max: Some(100),
                max_qos: Some(1),
                retain_available: Some(1),
                max_packet_size: Some(65_536),
                assigned_client_identifier: Some("auto-7".to_owned()),
                topic_alias_max: Some(10),
                reason_string: None,
                user_properties: pairs(&[("v", "1")]),
                wildcard_subscription_available: Some(1),
                subscription_identifiers_available: Some(0),
                shared_subscription_available: Some(0),
                server_keep_alive: Some(45),
                response_information: None,
                server_reference: None,
                authentication_method: None,
                authentication_data: None,
            }),
        })
    );
    assert_eq!(
        theirs_from(&Packet::ConnAckV5(ConnAckV5 {
            session_present: false,
            reason: ReasonCode::BadUserNameOrPassword,
            properties: ConnAckProperties::default(),
        })),
        theirs::Packet::ConnAck(theirs::ConnAck {
            session_present: false,
            code: theirs::ConnectReturnCode::BadUserNamePassword,
            properties: None,
        })
    );
    assert_eq!(
        theirs_from(&Packet::SubAckV5(SubAckV5 {
            packet_id: id(3),
            properties: AckProperties {
                reason_string: Some(text("partly")),
                user_properties: Vec::new(),
            },
            reason_codes: smallvec![
                ReasonCode::GrantedQoS2,
                ReasonCode::GrantedQoS0,
                ReasonCode::NotAuthorized,
                ReasonCode::WildcardSubscriptionsNotSupported,
            ],
        })),
        theirs::Packet::SubAck(theirs::SubAck {
            pkid: 3,
            return_codes: vec![
                theirs::SubscribeReasonCode::Success(TheirQoS::ExactlyOnce),
                theirs::SubscribeReasonCode::Success(TheirQoS::AtMostOnce),
                theirs::SubscribeReasonCode::NotAuthorized,
                theirs::SubscribeReasonCode::WildcardSubscriptionsNotSupported,
            ],
            properties: Some(theirs::SubAckProperties {
                reason_string: Some("partly".to_owned()),
                user_properties: Vec::new(),
            }),
        })
    );
    assert_eq!(
        theirs_from(&Packet::UnsubAckV5(UnsubAck {
            packet_id: id(4),
            properties: AckProperties::default(),
            reason_codes: smallvec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted],
        })),
        theirs::Packet::UnsubAck(theirs::UnsubAck {
            pkid: 4,
            reasons: vec![
                theirs::UnsubAckReason::Success,
                theirs::UnsubAckReason::NoSubscriptionExisted
            ],
            properties: None,
        })
    );
    assert_eq!(
        theirs_from(&Packet::PingResp),
        theirs::Packet::PingResp(theirs::PingResp)
    );
    let theirs::Packet::Disconnect(disconnect) = theirs_from(&Packet::DisconnectV5(Disconnect {
        reason: ReasonCode::SessionTakenOver,
        properties: DisconnectProperties {
            reason_string: Some(text("another connection")),
            server_reference: Some(text("b:1883")),
            ..DisconnectProperties::default()
        },
    })) else {
        panic!("rumqttc did not read a DISCONNECT");
    };
    assert_eq!(
        disconnect.reason_code,
        theirs::DisconnectReasonCode::SessionTakenOver
    );
    let properties = disconnect.properties.unwrap();
    assert_eq!(
        properties.reason_string.as_deref(),
        Some("another connection")
    );
    assert_eq!(properties.server_reference.as_deref(), Some("b:1883"));
    assert_eq!(properties.session_expiry_interval, None);
}

#[test]
fn client_disconnects_and_pings_encoded_by_rumqttc_decode() {
    let normal = theirs::Packet::Disconnect(theirs::Disconnect::new(
        theirs::DisconnectReasonCode::NormalDisconnection,
    ));
    assert_eq!(
        decode_one_v5(&their_wire(&normal)),
        Packet::DisconnectV5(Disconnect::new(ReasonCode::NormalDisconnection))
    );
    assert_eq!(
        decode_one_v5(&their_wire(&theirs::Packet::PingReq(theirs::PingReq))),
        Packet::PingReq
    );
}
