//! CONNECT [MQTT-3.1]: the first packet of every connection, which names the protocol
//! version, the client, its session wishes, its will and its credentials. MQTT 5 adds
//! properties to the connection and to the will; a CONNECT of level 5 decodes to a
//! [`ConnectV5`].

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::error::DecodeError;
use super::fields::{field_len, put_binary, FieldReader};
use super::fixed_header::{self, PacketType};
use super::properties::{
    block_len, read_properties, write_block, ConnectProperties, Place, WillProperties,
};
use super::qos::QoS;
use super::Packet;
use crate::topic::TopicName;

/// The MQTT versions this codec speaks. The variant decides the CONNECT protocol name and
/// level and the few rules that differ between the versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1: protocol name "MQIsdp", level 3.
    V3_1,
    /// MQTT 3.1.1 (OASIS standard): protocol name "MQTT", level 4.
    V3_1_1,
    /// MQTT 5.0 (OASIS standard): protocol name "MQTT", level 5.
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte of CONNECT.
    pub fn level(self) -> u8 {
        match self {
            Self::V3_1 => 3,
            Self::V3_1_1 => 4,
            Self::V5 => 5,
        }
    }

    /// The version as people write it ("3.1", "3.1.1", "5.0"), for logs and `$SYS`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V3_1 => "3.1",
            Self::V3_1_1 => "3.1.1",
            Self::V5 => "5.0",
        }
    }

    /// The protocol name CONNECT carries for this version.
    pub fn protocol_name(self) -> &'static str {
        match self {
            Self::V3_1 => "MQIsdp",
            Self::V3_1_1 | Self::V5 => "MQTT",
        }
    }

    /// The version a CONNECT asks for. A known name with another level is
    /// `UnsupportedProtocolLevel`, which the server answers with CONNACK code 1
    /// [MQTT-3.1.2-2]; an unknown name is `InvalidProtocolName` [MQTT-3.1.2-1].
    fn from_connect(name: &[u8], level: u8) -> Result<Self, DecodeError> {
        match (name, level) {
            (b"MQTT", 4) => Ok(Self::V3_1_1),
            (b"MQTT", 5) => Ok(Self::V5),
            (b"MQIsdp", 3) => Ok(Self::V3_1),
            (b"MQTT" | b"MQIsdp", other) => Err(DecodeError::UnsupportedProtocolLevel(other)),
            _ => Err(DecodeError::InvalidProtocolName),
        }
    }

    /// The version of the CONNECT at the front of `buf`, as soon as its protocol name and
    /// level have arrived; `None` while they have not, or if the packet is not a CONNECT of a
    /// known version. Lets a server answer a CONNECT it cannot decode in the client's own
    /// version (an MQTT 5 CONNACK with the reason code) even though decoding consumed it:
    /// call it on the read buffer before [`decode`](super::decode).
    pub fn of_connect(buf: &[u8]) -> Option<Self> {
        let header = fixed_header::FixedHeader::parse(buf, usize::MAX, None).ok()??;
        if header.packet_type != PacketType::Connect {
            return None;
        }
        let body = buf.get(header.header_len..)?;
        let (len, rest) = body.split_first_chunk::<2>()?;
        let name = rest.get(..usize::from(u16::from_be_bytes(*len)))?;
        let level = *rest.get(name.len())?;
        Self::from_connect(name, level).ok()
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

/// An MQTT 5 CONNECT: the fields every version has, and the MQTT 5 properties.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectV5 {
    /// The fields shared with MQTT 3.1.1; `protocol` is [`ProtocolVersion::V5`], and
    /// `clean_session` is MQTT 5's Clean Start: whether to discard an existing session (how
    /// long the new one outlives the connection is the session expiry interval).
    pub connect: Connect,
    /// The connection's properties.
    pub properties: ConnectProperties,
    /// The will's properties; empty, and not encoded, without a will.
    pub will_properties: WillProperties,
}

/// Decodes a CONNECT body of any version: a [`Packet::Connect`] for MQTT 3.1/3.1.1, a
/// [`Packet::ConnectV5`] for MQTT 5.
pub(crate) fn decode(body: Bytes) -> Result<Packet, DecodeError> {
    let mut reader = FieldReader::new(PACKET, body);
    let name = reader.binary()?;
    let level = reader.u8()?;
    let protocol = ProtocolVersion::from_connect(&name, level)?;
    if protocol == ProtocolVersion::V5 {
        Ok(Packet::ConnectV5(Box::new(ConnectV5::decode_after_level(
            reader,
        )?)))
    } else {
        Ok(Packet::Connect(Box::new(Connect::decode_after_level(
            protocol, reader,
        )?)))
    }
}

impl Connect {
    /// Decodes a 3.1/3.1.1 CONNECT body after its protocol name and level.
    ///
    /// MQTT 3.1.1 rules are enforced in full. For MQTT 3.1, whose specification is silent on
    /// them, the broker behaves as Mosquitto does: the reserved flag and will QoS/retain bits
    /// without a will are ignored, and a user name or password announced by its flag but
    /// absent at the end of the packet is treated as not sent.
    fn decode_after_level(
        protocol: ProtocolVersion,
        mut reader: FieldReader,
    ) -> Result<Self, DecodeError> {
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

    /// Appends the encoded packet, with the protocol name and level of `self.protocol` (an
    /// MQTT 5 one without properties). Strings and the will payload must fit a 16-bit length
    /// (65535 bytes).
    pub fn encode(&self, out: &mut BytesMut) {
        if self.protocol == ProtocolVersion::V5 {
            let properties = (&ConnectProperties::default(), &WillProperties::default());
            encode(self, Some(properties), out);
        } else {
            encode(self, None, out);
        }
    }

    /// Total encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        if self.protocol == ProtocolVersion::V5 {
            let properties = (&ConnectProperties::default(), &WillProperties::default());
            fixed_header::packet_len(remaining_len(self, Some(properties)))
        } else {
            fixed_header::packet_len(remaining_len(self, None))
        }
    }

    /// The connect flags byte.
    fn flags(&self) -> u8 {
        let mut flags = 0u8;
        if self.clean_session {
            flags |= CLEAN_SESSION;
        }
        if let Some(will) = &self.will {
            flags |= WILL | ((will.qos as u8) << WILL_QOS_SHIFT);
            if will.retain {
                flags |= WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            flags |= USERNAME;
        }
        if self.password.is_some() {
            flags |= PASSWORD;
        }
        flags
    }
}

impl ConnectV5 {
    /// Decodes an MQTT 5 CONNECT body after its protocol name and level [MQTT-3.1.2]: flags,
    /// keep-alive, properties, then the payload, whose will part starts with the will
    /// properties. Unlike 3.1.1, a password may come without a user name.
    fn decode_after_level(mut reader: FieldReader) -> Result<Self, DecodeError> {
        let protocol = ProtocolVersion::V5;
        let flags = reader.u8()?;
        let will_qos = check_flags(flags, protocol)?;
        let keep_alive = reader.u16()?;
        let properties = read_properties(&mut reader, Place::packet(PacketType::Connect))?;
        let client_id = reader.string("CONNECT client identifier")?;
        let mut will_properties = WillProperties::default();
        let will = if flags & WILL != 0 {
            will_properties = read_properties(&mut reader, Place::will())?;
            Some(LastWill {
                topic: reader.topic_name()?,
                payload: reader.binary()?,
                qos: will_qos,
                retain: flags & WILL_RETAIN != 0,
            })
        } else {
            None
        };
        let username = if flags & USERNAME != 0 {
            Some(reader.string("CONNECT user name")?)
        } else {
            None
        };
        let password = if flags & PASSWORD != 0 {
            Some(reader.binary()?)
        } else {
            None
        };
        reader.finish()?;
        Ok(Self {
            connect: Connect {
                protocol,
                clean_session: flags & CLEAN_SESSION != 0,
                keep_alive,
                client_id,
                will,
                username,
                password,
            },
            properties,
            will_properties,
        })
    }

    /// Appends the encoded packet (protocol level 5 whatever `connect.protocol` says).
    /// Strings and the will payload must fit a 16-bit length (65535 bytes).
    pub fn encode(&self, out: &mut BytesMut) {
        let connect = Connect {
            protocol: ProtocolVersion::V5,
            ..self.connect.clone()
        };
        encode(
            &connect,
            Some((&self.properties, &self.will_properties)),
            out,
        );
    }

    /// Total encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        fixed_header::packet_len(remaining_len(
            &self.connect,
            Some((&self.properties, &self.will_properties)),
        ))
    }
}

/// The MQTT 5 properties of a CONNECT and of its will.
type V5Properties<'a> = (&'a ConnectProperties, &'a WillProperties);

/// Body length of a CONNECT; `v5` holds the properties of an MQTT 5 one.
fn remaining_len(connect: &Connect, v5: Option<V5Properties<'_>>) -> usize {
    let name = connect.protocol.protocol_name();
    let mut remaining = field_len(name.len()) + 1 + 1 + 2 + field_len(connect.client_id.len());
    if let Some((properties, _)) = v5 {
        remaining += block_len(properties);
    }
    if let Some(will) = &connect.will {
        remaining += field_len(will.topic.as_bytes().len()) + field_len(will.payload.len());
        if let Some((_, will_properties)) = v5 {
            remaining += block_len(will_properties);
        }
    }
    if let Some(username) = &connect.username {
        remaining += field_len(username.len());
    }
    if let Some(password) = &connect.password {
        remaining += field_len(password.len());
    }
    remaining
}

/// Appends a CONNECT with the name and level of `connect.protocol`; `v5` holds the properties
/// of an MQTT 5 one, written where that version puts them.
fn encode(connect: &Connect, v5: Option<V5Properties<'_>>, out: &mut BytesMut) {
    let name = connect.protocol.protocol_name();
    fixed_header::write(
        out,
        PacketType::Connect.first_byte(0),
        remaining_len(connect, v5),
    );
    put_binary(out, name.as_bytes());
    out.put_u8(connect.protocol.level());
    out.put_u8(connect.flags());
    out.put_u16(connect.keep_alive);
    if let Some((properties, _)) = v5 {
        write_block(properties, out);
    }
    put_binary(out, connect.client_id.as_bytes());
    if let Some(will) = &connect.will {
        if let Some((_, will_properties)) = v5 {
            write_block(will_properties, out);
        }
        put_binary(out, will.topic.as_bytes());
        put_binary(out, &will.payload);
    }
    if let Some(username) = &connect.username {
        put_binary(out, username.as_bytes());
    }
    if let Some(password) = &connect.password {
        put_binary(out, password);
    }
}

/// Checks the connect flags [MQTT-3.1.2-3, 3.1.2-11, 3.1.2-13, 3.1.2-14, 3.1.2-15,
/// 3.1.2-22] and returns the will QoS. MQTT 3.1 is lenient as Mosquitto is; MQTT 5 allows a
/// password without a user name.
fn check_flags(flags: u8, protocol: ProtocolVersion) -> Result<QoS, DecodeError> {
    let invalid = |reason| DecodeError::InvalidConnectFlags { flags, reason };
    let strict = protocol != ProtocolVersion::V3_1;
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
    if protocol == ProtocolVersion::V3_1_1 && flags & PASSWORD != 0 && flags & USERNAME == 0 {
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
        // "MQTT" level 6 (a future version): refused from the level alone.
        let v6 = b"\x10\x11\x00\x04MQTT\x06\x02\x00\x3c\x00\x00\x03\x00\x01a\xff";
        let error = decode_error(v6);
        assert_eq!(error, DecodeError::UnsupportedProtocolLevel(6));
        assert!(error.is_protocol_level());
        assert_eq!(
            error.connack_code(),
            Some(super::super::ConnectReturnCode::UnacceptableProtocolVersion)
        );
        assert_eq!(
            error.reason_code(),
            crate::protocol::ReasonCode::UnsupportedProtocolVersion
        );
        assert_eq!(
            decode_error(b"\x10\x07\x00\x04MQTT\x03"),
            DecodeError::UnsupportedProtocolLevel(3)
        );
        assert_eq!(
            decode_error(b"\x10\x09\x00\x06MQIsdp\x04"),
            DecodeError::UnsupportedProtocolLevel(4)
        );
        assert_eq!(
            decode_error(b"\x10\x09\x00\x06MQIsdp\x05"),
            DecodeError::UnsupportedProtocolLevel(5)
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
        assert_eq!(ProtocolVersion::V5.level(), 5);
        assert_eq!(ProtocolVersion::V3_1.as_str(), "3.1");
        assert_eq!(ProtocolVersion::V3_1_1.to_string(), "3.1.1");
        assert_eq!(ProtocolVersion::V5.to_string(), "5.0");
        assert_eq!(ProtocolVersion::V5.protocol_name(), "MQTT");
    }
}

#[cfg(test)]
mod v5_tests {
    use bytes::Bytes;

    use super::*;
    use crate::protocol::testing::{assert_wire, decode_error, decode_one, packet_bytes};
    use crate::protocol::{Packet, PayloadFormat, ReasonCode};

    fn minimal() -> Connect {
        Connect {
            protocol: ProtocolVersion::V5,
            clean_session: true,
            keep_alive: 60,
            client_id: "a".to_owned(),
            will: None,
            username: None,
            password: None,
        }
    }

    fn packet(connect: ConnectV5) -> Packet {
        Packet::ConnectV5(Box::new(connect))
    }

    /// An MQTT 5 CONNECT with `flags`, keep-alive 60, no properties, client id "a", then
    /// `payload`.
    fn v5_with_flags(flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut body = b"\x00\x04MQTT\x05".to_vec();
        body.push(flags);
        body.extend_from_slice(b"\x00\x3c\x00\x00\x01a");
        body.extend_from_slice(payload);
        packet_bytes(0x10, &body)
    }

    #[test]
    fn minimal_v5_connect_wire_bytes() {
        let connect = ConnectV5 {
            connect: minimal(),
            properties: ConnectProperties::default(),
            will_properties: WillProperties::default(),
        };
        let wire = b"\x10\x0e\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x01a";
        assert_wire(&packet(connect.clone()), wire);
        // A 3.1.1-shaped CONNECT asking for version 5 is written in the MQTT 5 layout.
        let mut out = BytesMut::new();
        minimal().encode(&mut out);
        assert_eq!(&out[..], wire);
        assert_eq!(minimal().encoded_len(), wire.len());
        assert_eq!(ProtocolVersion::of_connect(wire), Some(ProtocolVersion::V5));
    }

    #[test]
    fn full_v5_connect_wire_bytes() {
        let connect = ConnectV5 {
            connect: Connect {
                protocol: ProtocolVersion::V5,
                clean_session: true,
                keep_alive: 0x0102,
                client_id: "cid".to_owned(),
                will: Some(LastWill {
                    topic: TopicName::try_from("w/t").unwrap(),
                    payload: Bytes::from_static(b"bye"),
                    qos: QoS::AtLeastOnce,
                    retain: true,
                }),
                // MQTT 5 allows a password without a user name.
                username: None,
                password: Some(Bytes::from_static(b"\x00p")),
            },
            properties: ConnectProperties {
                session_expiry_interval: Some(10),
                receive_maximum: std::num::NonZeroU16::new(20),
                ..ConnectProperties::default()
            },
            will_properties: WillProperties {
                will_delay_interval: Some(5),
                message: crate::protocol::MessageProperties {
                    payload_format: Some(PayloadFormat::Utf8),
                    ..Default::default()
                },
            },
        };
        assert_wire(
            &packet(connect),
            b"\x10\x2e\x00\x04MQTT\x05\x6e\x01\x02\
              \x08\x11\x00\x00\x00\x0a\x21\x00\x14\
              \x00\x03cid\
              \x07\x18\x00\x00\x00\x05\x01\x01\
              \x00\x03w/t\x00\x03bye\x00\x02\x00p",
        );
    }

    #[test]
    fn v5_connect_flags_are_checked() {
        let cases: [(u8, &[u8]); 4] = [
            (0x03, b""),                      // reserved bit
            (0x1e, b"\x00\x00\x01t\x00\x00"), // will QoS 3
            (0x0a, b""),                      // will QoS 1 without will
            (0x22, b""),                      // will retain without will
        ];
        for (flags, payload) in cases {
            let error = decode_error(&v5_with_flags(flags, payload));
            assert!(
                matches!(error, DecodeError::InvalidConnectFlags { flags: got, .. } if got == flags),
                "{flags:#04x}: {error:?}"
            );
            assert_eq!(error.reason_code(), ReasonCode::MalformedPacket);
        }
        // Announced credentials must be there: MQTT 5 is not lenient.
        assert_eq!(
            decode_error(&v5_with_flags(0x82, b"")),
            DecodeError::Truncated { packet: "CONNECT" }
        );
        let Packet::ConnectV5(connect) = decode_one(&v5_with_flags(0x42, b"\x00\x02pw")) else {
            panic!("not an MQTT 5 CONNECT");
        };
        assert_eq!(connect.connect.password.as_deref(), Some(&b"pw"[..]));
    }

    #[test]
    fn will_properties_are_validated_in_their_own_place() {
        // Will properties with a Session Expiry Interval, which only CONNECT itself may carry.
        let error = decode_error(&v5_with_flags(
            0x06,
            b"\x05\x11\x00\x00\x00\x01\x00\x01t\x00\x00",
        ));
        assert_eq!(
            error,
            DecodeError::PropertyNotAllowed {
                packet: "CONNECT will",
                property: crate::protocol::PropertyId::SessionExpiryInterval
            }
        );
        assert_eq!(error.reason_code(), ReasonCode::MalformedPacket);
    }

    #[test]
    fn the_version_of_a_connect_is_known_from_its_first_bytes() {
        let v311 = b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01a";
        for cut in 0..9 {
            assert_eq!(ProtocolVersion::of_connect(&v311[..cut]), None, "{cut}");
        }
        assert_eq!(
            ProtocolVersion::of_connect(&v311[..9]),
            Some(ProtocolVersion::V3_1_1)
        );
        assert_eq!(
            ProtocolVersion::of_connect(b"\x10\x09\x00\x06MQIsdp\x03"),
            Some(ProtocolVersion::V3_1)
        );
        assert_eq!(
            ProtocolVersion::of_connect(b"\x10\x07\x00\x04MQTT\x06"),
            None
        );
        assert_eq!(
            ProtocolVersion::of_connect(b"\x30\x07\x00\x04MQTT\x05"),
            None
        );
    }
}
