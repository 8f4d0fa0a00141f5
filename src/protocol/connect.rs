//! CONNECT [MQTT-3.1]: the first packet of every connection, which names the protocol
//! version, the client, its session wishes, its will and its credentials.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::error::DecodeError;
use super::fields::{field_len, put_binary, FieldReader};
use super::fixed_header::{self, PacketType};
use super::qos::QoS;
use crate::topic::TopicName;

/// The MQTT versions this codec speaks. The variant decides the CONNECT protocol name and
/// level and the few rules that differ between the versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1: protocol name "MQIsdp", level 3.
    V3_1,
    /// MQTT 3.1.1 (OASIS standard): protocol name "MQTT", level 4.
    V3_1_1,
}

impl ProtocolVersion {
    /// The protocol level byte of CONNECT.
    pub fn level(self) -> u8 {
        match self {
            Self::V3_1 => 3,
            Self::V3_1_1 => 4,
        }
    }

    /// The version as people write it ("3.1", "3.1.1"), for logs and `$SYS`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V3_1 => "3.1",
            Self::V3_1_1 => "3.1.1",
        }
    }

    /// The protocol name CONNECT carries for this version.
    pub fn protocol_name(self) -> &'static str {
        match self {
            Self::V3_1 => "MQIsdp",
            Self::V3_1_1 => "MQTT",
        }
    }

    /// The version a CONNECT asks for. A known name with another level is
    /// `UnsupportedProtocolLevel`, which the server answers with CONNACK code 1
    /// [MQTT-3.1.2-2]; an unknown name is `InvalidProtocolName` [MQTT-3.1.2-1].
    fn from_connect(name: &[u8], level: u8) -> Result<Self, DecodeError> {
        let expected = match name {
            b"MQTT" => Self::V3_1_1,
            b"MQIsdp" => Self::V3_1,
            _ => return Err(DecodeError::InvalidProtocolName),
        };
        if level == expected.level() {
            Ok(expected)
        } else {
            Err(DecodeError::UnsupportedProtocolLevel(level))
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The message the server publishes on the client's behalf if the connection ends without a
/// DISCONNECT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastWill {
    /// Where the will is published (validated like a PUBLISH topic).
    pub topic: TopicName,
    /// The will message, shared with the CONNECT packet's bytes.
    pub payload: Bytes,
    /// QoS the will is published with.
    pub qos: QoS,
    /// Whether the will is retained.
    pub retain: bool,
}

/// A decoded CONNECT. The client identifier may be empty and is not checked against any
/// length or character rule here: those are the broker's decision [MQTT-3.1.3-5, 3.1.3-6].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    /// The version the client speaks, from the protocol name and level.
    pub protocol: ProtocolVersion,
    /// Discard any previous session and start a new one.
    pub clean_session: bool,
    /// Seconds the client may stay silent; 0 disables keep-alive.
    pub keep_alive: u16,
    /// The client identifier (possibly empty).
    pub client_id: String,
    /// The will, if the will flag was set.
    pub will: Option<LastWill>,
    /// The user name, if the user name flag was set.
    pub username: Option<String>,
    /// The password (binary data), if the password flag was set.
    pub password: Option<Bytes>,
}

/// Connect flag bits [MQTT-3.1.2.3].
const RESERVED: u8 = 0x01;
const CLEAN_SESSION: u8 = 0x02;
const WILL: u8 = 0x04;
const WILL_QOS_SHIFT: u8 = 3;
const WILL_QOS_MASK: u8 = 0b11 << WILL_QOS_SHIFT;
const WILL_RETAIN: u8 = 0x20;
const PASSWORD: u8 = 0x40;
const USERNAME: u8 = 0x80;

/// Name used in errors.
const PACKET: &str = "CONNECT";

impl Connect {
    /// Decodes a CONNECT body.
    ///
    /// MQTT 3.1.1 rules are enforced in full. For MQTT 3.1, whose specification is silent on
    /// them, the broker behaves as Mosquitto does: the reserved flag and will QoS/retain bits
    /// without a will are ignored, and a user name or password announced by its flag but
    /// absent at the end of the packet is treated as not sent.
    pub(crate) fn decode(body: Bytes) -> Result<Self, DecodeError> {
        let mut reader = FieldReader::new(PACKET, body);
        let name = reader.binary()?;
        let level = reader.u8()?;
        let protocol = ProtocolVersion::from_connect(&name, level)?;
        let flags = reader.u8()?;
        let will_qos = check_flags(flags, protocol)?;
        let keep_alive = reader.u16()?;
        let client_id = reader.string("CONNECT client identifier")?;
        let will = if flags & WILL != 0 {
            Some(LastWill {
                topic: reader.topic_name()?,
                payload: reader.binary()?,
                qos: will_qos,
                retain: flags & WILL_RETAIN != 0,
            })
        } else {
            None
        };
        let lenient = protocol == ProtocolVersion::V3_1;
        let username = if flags & USERNAME != 0 && !(lenient && reader.is_empty()) {
            Some(reader.string("CONNECT user name")?)
        } else {
            None
        };
        let password = if flags & PASSWORD != 0 && !(lenient && reader.is_empty()) {
            Some(reader.binary()?)
        } else {
            None
        };
        reader.finish()?;
        Ok(Self {
            protocol,
            clean_session: flags & CLEAN_SESSION != 0,
            keep_alive,
            client_id,
            will,
            username,
            password,
        })
    }

    /// Appends the encoded packet, with the protocol name and level of `self.protocol`.
    /// Strings and the will payload must fit a 16-bit length (65535 bytes).
    pub fn encode(&self, out: &mut BytesMut) {
        let name = self.protocol.protocol_name();
        let mut flags = 0u8;
        let mut remaining = field_len(name.len()) + 1 + 1 + 2 + field_len(self.client_id.len());
        if self.clean_session {
            flags |= CLEAN_SESSION;
        }
        if let Some(will) = &self.will {
            flags |= WILL | ((will.qos as u8) << WILL_QOS_SHIFT);
            if will.retain {
                flags |= WILL_RETAIN;
            }
            remaining += field_len(will.topic.as_bytes().len()) + field_len(will.payload.len());
        }
        if let Some(username) = &self.username {
            flags |= USERNAME;
            remaining += field_len(username.len());
        }
        if let Some(password) = &self.password {
            flags |= PASSWORD;
            remaining += field_len(password.len());
        }

        fixed_header::write(out, PacketType::Connect.first_byte(0), remaining);
        put_binary(out, name.as_bytes());
        out.put_u8(self.protocol.level());
        out.put_u8(flags);
        out.put_u16(self.keep_alive);
        put_binary(out, self.client_id.as_bytes());
        if let Some(will) = &self.will {
            put_binary(out, will.topic.as_bytes());
            put_binary(out, &will.payload);
        }
        if let Some(username) = &self.username {
            put_binary(out, username.as_bytes());
        }
        if let Some(password) = &self.password {
            put_binary(out, password);
        }
    }
}

/// Checks the connect flags [MQTT-3.1.2-3, 3.1.2-11, 3.1.2-13, 3.1.2-14, 3.1.2-15,
/// 3.1.2-22] and returns the will QoS.
fn check_flags(flags: u8, protocol: ProtocolVersion) -> Result<QoS, DecodeError> {
    let invalid = |reason| DecodeError::InvalidConnectFlags { flags, reason };
    let strict = protocol == ProtocolVersion::V3_1_1;
    if strict && flags & RESERVED != 0 {
        return Err(invalid("the reserved bit 0 is set"));
    }
    let will_qos = QoS::from_u8((flags & WILL_QOS_MASK) >> WILL_QOS_SHIFT)
        .ok_or_else(|| invalid("the will QoS is 3"))?;
    if strict && flags & WILL == 0 && (will_qos != QoS::AtMostOnce || flags & WILL_RETAIN != 0) {
        return Err(invalid(
            "will QoS or will retain is set without the will flag",
        ));
    }
    if strict && flags & PASSWORD != 0 && flags & USERNAME == 0 {
        return Err(invalid(
            "the password flag is set without the user name flag",
        ));
    }
    Ok(will_qos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testing::{assert_wire, decode_error, decode_one};
    use crate::protocol::Packet;

    fn minimal(protocol: ProtocolVersion) -> Connect {
        Connect {
            protocol,
            clean_session: true,
            keep_alive: 60,
            client_id: "a".to_owned(),
            will: None,
            username: None,
            password: None,
        }
    }

    fn packet(connect: Connect) -> Packet {
        Packet::Connect(Box::new(connect))
    }

    /// A 3.1.1 CONNECT with `flags`, keep-alive 60, client id "a", then `payload`.
    fn v311_with_flags(flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut body = b"\x00\x04MQTT\x04".to_vec();
        body.push(flags);
        body.extend_from_slice(b"\x00\x3c\x00\x01a");
        body.extend_from_slice(payload);
        let mut wire = vec![0x10, u8::try_from(body.len()).unwrap()];
        wire.extend_from_slice(&body);
        wire
    }

    #[test]
    fn minimal_v311_connect_wire_bytes() {
        assert_wire(
            &packet(minimal(ProtocolVersion::V3_1_1)),
            b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01a",
        );
    }

    #[test]
    fn full_v31_connect_wire_bytes() {
        let connect = Connect {
            protocol: ProtocolVersion::V3_1,
            clean_session: false,
            keep_alive: 0x0102,
            client_id: "cid".to_owned(),
            will: Some(LastWill {
                topic: TopicName::try_from("w/t").unwrap(),
                payload: Bytes::from_static(b"bye"),
                qos: QoS::ExactlyOnce,
                retain: true,
            }),
            username: Some("u".to_owned()),
            password: Some(Bytes::from_static(b"\x00p")),
        };
        assert_wire(
            &packet(connect),
            b"\x10\x22\x00\x06MQIsdp\x03\xf4\x01\x02\x00\x03cid\x00\x03w/t\x00\x03bye\
              \x00\x01u\x00\x02\x00p",
        );
    }

    #[test]
    fn empty_client_id_and_will_qos_1_round_trip() {
        let mut connect = minimal(ProtocolVersion::V3_1_1);
        connect.client_id.clear();
        connect.will = Some(LastWill {
            topic: TopicName::try_from("t").unwrap(),
            payload: Bytes::new(),
            qos: QoS::AtLeastOnce,
            retain: false,
        });
        connect.username = Some("user".to_owned());
        assert_wire(
            &packet(connect),
            b"\x10\x17\x00\x04MQTT\x04\x8e\x00\x3c\x00\x00\x00\x01t\x00\x00\x00\x04user",
        );
    }

    #[test]
    fn unknown_levels_of_known_names_are_unsupported_levels() {
        // "MQTT" level 5 (an MQTT 5 CONNECT, properties and all): refused from the level alone.
        let v5 = b"\x10\x11\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x03\x00\x01a\xff";
        let error = decode_error(v5);
        assert_eq!(error, DecodeError::UnsupportedProtocolLevel(5));
        assert!(error.is_protocol_level());
        assert_eq!(
            error.connack_code(),
            Some(super::super::ConnectReturnCode::UnacceptableProtocolVersion)
        );
        assert_eq!(
            decode_error(b"\x10\x07\x00\x04MQTT\x03"),
            DecodeError::UnsupportedProtocolLevel(3)
        );
        assert_eq!(
            decode_error(b"\x10\x09\x00\x06MQIsdp\x04"),
            DecodeError::UnsupportedProtocolLevel(4)
        );
    }

    #[test]
    fn unknown_protocol_names_are_refused() {
        for wire in [
            &b"\x10\x07\x00\x04MQTX\x04"[..],
            b"\x10\x07\x00\x04mqtt\x04",
            b"\x10\x03\x00\x00\x04",
            b"\x10\x09\x00\x06MQIsdP\x03",
        ] {
            assert_eq!(decode_error(wire), DecodeError::InvalidProtocolName);
        }
        assert!(!DecodeError::InvalidProtocolName.is_protocol_level());
    }

    #[test]
    fn invalid_v311_connect_flags_are_refused() {
        let cases: [(u8, &[u8]); 6] = [
            (0x03, b""),                  // reserved bit
            (0x1e, b"\x00\x01t\x00\x00"), // will QoS 3
            (0x18, b""),                  // will QoS 3 without will
            (0x0a, b""),                  // will QoS 1 without will
            (0x22, b""),                  // will retain without will
            (0x42, b"\x00\x01p"),         // password without user name
        ];
        for (flags, payload) in cases {
            match decode_error(&v311_with_flags(flags, payload)) {
                DecodeError::InvalidConnectFlags { flags: got, .. } => assert_eq!(got, flags),
                other => panic!("flags {flags:#04x}: {other:?}"),
            }
        }
    }

    #[test]
    fn v31_tolerates_what_mosquitto_tolerates() {
        let v31 = |flags: u8, payload: &[u8]| {
            let mut body = b"\x00\x06MQIsdp\x03".to_vec();
            body.push(flags);
            body.extend_from_slice(b"\x00\x3c\x00\x01a");
            body.extend_from_slice(payload);
            let mut wire = vec![0x10, u8::try_from(body.len()).unwrap()];
            wire.extend_from_slice(&body);
            wire
        };
        let Packet::Connect(connect) = decode_one(&v31(0x23, b"")) else {
            panic!("not a CONNECT");
        };
        assert!(connect.will.is_none() && connect.clean_session);
        // User name and password flags with neither field present.
        let Packet::Connect(connect) = decode_one(&v31(0xc2, b"")) else {
            panic!("not a CONNECT");
        };
        assert_eq!((connect.username, connect.password), (None, None));
        // A password without a user name.
        let Packet::Connect(connect) = decode_one(&v31(0x42, b"\x00\x02pw")) else {
            panic!("not a CONNECT");
        };
        assert_eq!(connect.username, None);
        assert_eq!(connect.password.as_deref(), Some(&b"pw"[..]));
        // Will QoS 3 stays malformed in every version.
        assert!(matches!(
            decode_error(&v31(0x1e, b"\x00\x01t\x00\x00")),
            DecodeError::InvalidConnectFlags { .. }
        ));
    }

    #[test]
    fn missing_credentials_are_truncated_in_v311() {
        assert_eq!(
            decode_error(&v311_with_flags(0xc2, b"\x00\x01u")),
            DecodeError::Truncated { packet: "CONNECT" }
        );
        assert_eq!(
            decode_error(&v311_with_flags(0x82, b"")),
            DecodeError::Truncated { packet: "CONNECT" }
        );
    }

    #[test]
    fn malformed_fields_are_refused() {
        assert_eq!(
            decode_error(&v311_with_flags(0x02, b"x")),
            DecodeError::TrailingBytes {
                packet: "CONNECT",
                extra: 1
            }
        );
        assert_eq!(
            decode_error(b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01\xff"),
            DecodeError::InvalidUtf8 {
                field: "CONNECT client identifier"
            }
        );
        assert_eq!(
            decode_error(&v311_with_flags(0x82, b"\x00\x02u\x00")),
            DecodeError::NullCharacter {
                field: "CONNECT user name"
            }
        );
        assert_eq!(
            decode_error(&v311_with_flags(0x06, b"\x00\x03a/#\x00\x00")),
            DecodeError::InvalidTopic(crate::topic::TopicError::WildcardInName)
        );
        assert_eq!(
            decode_error(&v311_with_flags(0x06, b"\x00\x00\x00\x00")),
            DecodeError::InvalidTopic(crate::topic::TopicError::Empty)
        );
        assert_eq!(
            decode_error(&v311_with_flags(0x06, b"\x00\x01t\x00\x05ab")),
            DecodeError::Truncated { packet: "CONNECT" }
        );
        assert_eq!(
            decode_error(b"\x10\x09\x00\x04MQTT\x04\x02\x00"),
            DecodeError::Truncated { packet: "CONNECT" }
        );
        assert_eq!(
            decode_error(b"\x11\x00"),
            DecodeError::InvalidFixedHeaderFlags {
                packet: "CONNECT",
                flags: 1
            }
        );
    }

    #[test]
    fn versions_name_themselves() {
        assert_eq!(ProtocolVersion::V3_1.level(), 3);
        assert_eq!(ProtocolVersion::V3_1_1.level(), 4);
        assert_eq!(ProtocolVersion::V3_1.as_str(), "3.1");
        assert_eq!(ProtocolVersion::V3_1_1.to_string(), "3.1.1");
    }
}
