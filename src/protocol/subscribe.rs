//! SUBSCRIBE [MQTT-3.8] and its answer SUBACK [MQTT-3.9]. In MQTT 5 ([`SubscribeV5`],
//! [`SubAckV5`]) each filter has [`SubscriptionOptions`] beyond its maximum QoS, both packets
//! have properties, and SUBACK answers with reason codes.

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

use super::error::DecodeError;
use super::fields::{field_len, put_binary, FieldReader};
use super::fixed_header::{self, PacketType};
use super::properties::{
    block_len, fit_by_dropping_diagnostics, read_properties, write_block, AckProperties, Place,
    SubscribeProperties,
};
use super::qos::{PacketId, QoS};
use super::reason::ReasonCode;
use crate::topic::TopicFilter;

/// A request to subscribe to one or more topic filters, each with its maximum QoS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe {
    /// Echoed by the SUBACK.
    pub packet_id: PacketId,
    /// The filters and their requested QoS, in packet order (never empty once decoded).
    pub filters: SmallVec<[(TopicFilter, QoS); 4]>,
}

/// The outcome of one subscription request of a SUBSCRIBE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubAckReturnCode {
    /// Subscribed, with this maximum QoS granted (wire 0, 1, 2).
    Success(QoS),
    /// Refused (wire 0x80).
    Failure,
}

/// Wire value of [`SubAckReturnCode::Failure`].
const FAILURE: u8 = 0x80;

impl SubAckReturnCode {
    /// The code for a wire value: 0, 1, 2 or 0x80.
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            FAILURE => Some(Self::Failure),
            other => QoS::from_u8(other).map(Self::Success),
        }
    }

    /// The wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::Success(qos) => qos as u8,
            Self::Failure => FAILURE,
        }
    }
}

/// The server's answer to a SUBSCRIBE: one return code per filter, in the same order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubAck {
    /// The SUBSCRIBE's packet id.
    pub packet_id: PacketId,
    /// One code per requested filter [MQTT-3.8.4-5].
    pub return_codes: SmallVec<[SubAckReturnCode; 4]>,
}

/// Bits of the requested-QoS byte that must be zero in MQTT 3.1/3.1.1 [MQTT-3.8.3-4].
const RESERVED_OPTION_BITS: u8 = 0b1111_1100;

impl Subscribe {
    /// Decodes a SUBSCRIBE body: a packet id, then at least one (filter, requested QoS) pair
    /// [MQTT-3.8.3-3] filling the body.
    pub(crate) fn decode(body: Bytes) -> Result<Self, DecodeError> {
        let mut reader = FieldReader::new(PacketType::Subscribe.name(), body);
        let packet_id = reader.packet_id()?;
        let mut filters = SmallVec::new();
        while !reader.is_empty() {
            let filter = reader.topic_filter()?;
            let options = reader.u8()?;
            if options & RESERVED_OPTION_BITS != 0 {
                return Err(DecodeError::InvalidSubscriptionOptions(options));
            }
            let qos = QoS::from_u8(options).ok_or(DecodeError::InvalidQoS(options))?;
            filters.push((filter, qos));
        }
        if filters.is_empty() {
            return Err(DecodeError::EmptySubscribe);
        }
        Ok(Self { packet_id, filters })
    }

    /// Body length: packet id, filters with their QoS.
    fn remaining_len(&self) -> usize {
        2 + self
            .filters
            .iter()
            .map(|(filter, _)| field_len(filter.as_bytes().len()) + 1)
            .sum::<usize>()
    }

    /// Total encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        fixed_header::packet_len(self.remaining_len())
    }

    /// Appends the encoded packet.
    pub fn encode(&self, out: &mut BytesMut) {
        let remaining = self.remaining_len();
        let packet_type = PacketType::Subscribe;
        fixed_header::write(
            out,
            packet_type.first_byte(packet_type.fixed_flags()),
            remaining,
        );
        out.put_u16(self.packet_id.get());
        for (filter, qos) in &self.filters {
            put_binary(out, filter.as_bytes());
            out.put_u8(*qos as u8);
        }
    }
}

impl SubAck {
    /// Decodes a SUBACK body: a packet id, then at least one return code.
    pub(crate) fn decode(body: Bytes) -> Result<Self, DecodeError> {
        let mut reader = FieldReader::new(PacketType::SubAck.name(), body);
        let packet_id = reader.packet_id()?;
        let mut return_codes = SmallVec::new();
        while !reader.is_empty() {
            let value = reader.u8()?;
            let code = SubAckReturnCode::from_u8(value)
                .ok_or(DecodeError::InvalidSubAckReturnCode(value))?;
            return_codes.push(code);
        }
        if return_codes.is_empty() {
            return Err(DecodeError::EmptySubAck);
        }
        Ok(Self {
            packet_id,
            return_codes,
        })
    }

    /// Total encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        fixed_header::packet_len(2 + self.return_codes.len())
    }

    /// Appends the encoded packet.
    pub fn encode(&self, out: &mut BytesMut) {
        let remaining = 2 + self.return_codes.len();
        fixed_header::write(out, PacketType::SubAck.first_byte(0), remaining);
        out.put_u16(self.packet_id.get());
        for code in &self.return_codes {
            out.put_u8(code.to_u8());
        }
    }
}

/// When the server sends the retained messages matching a new subscription [MQTT-3.8.3.1].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RetainHandling {
    /// Send them whenever the subscription is made (the MQTT 3.1.1 behaviour).
    #[default]
    SendOnSubscribe = 0,
    /// Send them only if the subscription did not exist yet.
    SendOnNewSubscription = 1,
    /// Never send them.
    DoNotSend = 2,
}

/// The options of one MQTT 5 subscription [MQTT-3.8.3.1].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SubscriptionOptions {
    /// The highest QoS the subscriber wants messages with.
    pub qos: QoS,
    /// Do not send the subscriber the messages it publishes itself.
    pub no_local: bool,
    /// Keep the RETAIN flag messages were published with (instead of clearing it on
    /// messages that are not sent because of the subscription).
    pub retain_as_published: bool,
    /// When to send retained messages.
    pub retain_handling: RetainHandling,
}

/// Subscription option bits [MQTT-3.8.3.1].
const OPTION_QOS: u8 = 0b0000_0011;
const OPTION_NO_LOCAL: u8 = 0b0000_0100;
const OPTION_RETAIN_AS_PUBLISHED: u8 = 0b0000_1000;
const OPTION_RETAIN_HANDLING_SHIFT: u8 = 4;
const OPTION_RESERVED: u8 = 0b1100_0000;

/// The prefix of shared subscription filters [MQTT-4.8.2].
const SHARED_PREFIX: &str = "$share/";

impl SubscriptionOptions {
    /// Options with the MQTT 3.1.1 meaning: maximum `qos`, everything else at its default.
    pub fn new(qos: QoS) -> Self {
        Self {
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::SendOnSubscribe,
        }
    }

    /// Decodes the options byte of `filter`: reserved bits are Malformed, QoS 3, retain
    /// handling 3 and no local on a shared subscription are Protocol Errors.
    fn decode(byte: u8, filter: &TopicFilter) -> Result<Self, DecodeError> {
        if byte & OPTION_RESERVED != 0 {
            return Err(DecodeError::InvalidSubscriptionOptions(byte));
        }
        let qos = QoS::from_u8(byte & OPTION_QOS).ok_or(DecodeError::InvalidMaximumQoS)?;
        let retain_handling = match byte >> OPTION_RETAIN_HANDLING_SHIFT {
            0 => RetainHandling::SendOnSubscribe,
            1 => RetainHandling::SendOnNewSubscription,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeError::InvalidRetainHandling),
        };
        let no_local = byte & OPTION_NO_LOCAL != 0;
        if no_local && filter.as_str().starts_with(SHARED_PREFIX) {
            return Err(DecodeError::NoLocalOnSharedSubscription);
        }
        Ok(Self {
            qos,
            no_local,
            retain_as_published: byte & OPTION_RETAIN_AS_PUBLISHED != 0,
            retain_handling,
        })
    }

    /// The options byte.
    pub fn to_byte(self) -> u8 {
        let mut byte =
            self.qos as u8 | ((self.retain_handling as u8) << OPTION_RETAIN_HANDLING_SHIFT);
        if self.no_local {
            byte |= OPTION_NO_LOCAL;
        }
        if self.retain_as_published {
            byte |= OPTION_RETAIN_AS_PUBLISHED;
        }
        byte
    }
}

/// An MQTT 5 SUBSCRIBE: filters with their options, and properties.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribeV5 {
    /// Echoed by the SUBACK.
    pub packet_id: PacketId,
    /// The subscription identifier and user properties.
    pub properties: SubscribeProperties,
    /// The filters and their options, in packet order (never empty once decoded).
    pub filters: SmallVec<[(TopicFilter, SubscriptionOptions); 4]>,
}

impl SubscribeV5 {
    /// Decodes an MQTT 5 SUBSCRIBE body: packet id, properties, then at least one (filter,
    /// options) pair filling the body.
    pub(crate) fn decode(body: Bytes) -> Result<Self, DecodeError> {
        let packet = PacketType::Subscribe;
        let mut reader = FieldReader::new(packet.name(), body);
        let packet_id = reader.packet_id()?;
        let properties = read_properties(&mut reader, Place::packet(packet))?;
        let mut filters = SmallVec::new();
        while !reader.is_empty() {
            let filter = reader.topic_filter()?;
            let options = SubscriptionOptions::decode(reader.u8()?, &filter)?;
            filters.push((filter, options));
        }
        if filters.is_empty() {
            return Err(DecodeError::EmptySubscribe);
        }
        Ok(Self {
            packet_id,
            properties,
            filters,
        })
    }

    /// Body length: packet id, properties, filters with their options.
    fn remaining_len(&self) -> usize {
        2 + block_len(&self.properties)
            + self
                .filters
                .iter()
                .map(|(filter, _)| field_len(filter.as_bytes().len()) + 1)
                .sum::<usize>()
    }

    /// Appends the encoded packet.
    pub fn encode(&self, out: &mut BytesMut) {
        let packet_type = PacketType::Subscribe;
        fixed_header::write(
            out,
            packet_type.first_byte(packet_type.fixed_flags()),
            self.remaining_len(),
        );
        out.put_u16(self.packet_id.get());
        write_block(&self.properties, out);
        for (filter, options) in &self.filters {
            put_binary(out, filter.as_bytes());
            out.put_u8(options.to_byte());
        }
    }

    /// Total encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        fixed_header::packet_len(self.remaining_len())
    }
}

/// An MQTT 5 SUBACK: one reason code per filter of the SUBSCRIBE, in the same order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubAckV5 {
    /// The SUBSCRIBE's packet id.
    pub packet_id: PacketId,
    /// Diagnostics.
    pub properties: AckProperties,
    /// One code per requested filter [MQTT-3.8.4-6]: a granted QoS or a failure.
    pub reason_codes: SmallVec<[ReasonCode; 4]>,
}

impl SubAckV5 {
    /// Decodes an MQTT 5 SUBACK body: packet id, properties, at least one reason code.
    pub(crate) fn decode(body: Bytes) -> Result<Self, DecodeError> {
        let (packet_id, properties, reason_codes) =
            decode_reason_list(PacketType::SubAck, body, DecodeError::EmptySubAck)?;
        Ok(Self {
            packet_id,
            properties,
            reason_codes,
        })
    }

    /// Body length: packet id, properties, one byte per code.
    fn remaining_len(&self) -> usize {
        2 + block_len(&self.properties) + self.reason_codes.len()
    }

    /// Appends the encoded packet.
    pub fn encode(&self, out: &mut BytesMut) {
        encode_reason_list(
            PacketType::SubAck,
            self.packet_id,
            &self.properties,
            &self.reason_codes,
            out,
        );
    }

    /// Total encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        fixed_header::packet_len(self.remaining_len())
    }

    /// Drops the reason string, then the user properties, until the packet fits the client's
    /// maximum packet size [MQTT-3.9.2-1, 3.9.2-2]; returns whether it fits.
    pub fn fit_within(&mut self, max_packet_size: usize) -> bool {
        fit_by_dropping_diagnostics(self, max_packet_size, Self::encoded_len, |suback| {
            let properties = &mut suback.properties;
            (
                &mut properties.reason_string,
                &mut properties.user_properties,
            )
        })
    }
}

/// Decodes a SUBACK or UNSUBACK body (packet id, properties, at least one reason code);
/// `empty` is the error for a body without codes.
pub(crate) fn decode_reason_list(
    packet: PacketType,
    body: Bytes,
    empty: DecodeError,
) -> Result<(PacketId, AckProperties, SmallVec<[ReasonCode; 4]>), DecodeError> {
    let mut reader = FieldReader::new(packet.name(), body);
    let packet_id = reader.packet_id()?;
    let properties = read_properties(&mut reader, Place::packet(packet))?;
    let codes = read_reason_codes(&mut reader, packet)?;
    if codes.is_empty() {
        return Err(empty);
    }
    Ok((packet_id, properties, codes))
}

/// Reads the reason codes filling the rest of a SUBACK or UNSUBACK body.
fn read_reason_codes(
    reader: &mut FieldReader,
    packet: PacketType,
) -> Result<SmallVec<[ReasonCode; 4]>, DecodeError> {
    let mut codes = SmallVec::new();
    while !reader.is_empty() {
        let code = reader.u8()?;
        codes.push(
            ReasonCode::from_byte(packet, code).ok_or(DecodeError::InvalidReasonCode {
                packet: packet.name(),
                code,
            })?,
        );
    }
    Ok(codes)
}

/// Appends a SUBACK or UNSUBACK: packet id, properties, reason codes.
pub(crate) fn encode_reason_list(
    packet: PacketType,
    packet_id: PacketId,
    properties: &AckProperties,
    codes: &[ReasonCode],
    out: &mut BytesMut,
) {
    let remaining = 2 + block_len(properties) + codes.len();
    fixed_header::write(out, packet.first_byte(0), remaining);
    out.put_u16(packet_id.get());
    write_block(properties, out);
    for code in codes {
        out.put_u8(code.byte());
    }
}

#[cfg(test)]
mod tests {
    use smallvec::smallvec;

    use super::*;
    use crate::protocol::testing::{assert_wire, decode_error};
    use crate::protocol::Packet;
    use crate::topic::TopicError;

    fn id(value: u16) -> PacketId {
        PacketId::new(value).unwrap()
    }

    fn filter(text: &str) -> TopicFilter {
        TopicFilter::try_from(text).unwrap()
    }

    #[test]
    fn subscribe_wire_bytes() {
        assert_wire(
            &Packet::Subscribe(Subscribe {
                packet_id: id(1),
                filters: smallvec![(filter("a/+"), QoS::AtLeastOnce)],
            }),
            b"\x82\x08\x00\x01\x00\x03a/+\x01",
        );
        let many: SmallVec<[(TopicFilter, QoS); 4]> = ["#", "a", "b/#", "+/+", "$SYS/#"]
            .iter()
            .zip([QoS::AtMostOnce, QoS::ExactlyOnce].iter().cycle())
            .map(|(f, q)| (filter(f), *q))
            .collect();
        assert_wire(
            &Packet::Subscribe(Subscribe {
                packet_id: id(0x0203),
                filters: many,
            }),
            b"\x82\x1f\x02\x03\x00\x01#\x00\x00\x01a\x02\x00\x03b/#\x00\
              \x00\x03+/+\x02\x00\x06$SYS/#\x00",
        );
    }

    #[test]
    fn malformed_subscribes_are_refused() {
        let cases: [(&[u8], DecodeError); 10] = [
            (b"\x82\x02\x00\x01", DecodeError::EmptySubscribe),
            (
                b"\x82\x06\x00\x00\x00\x01a\x00",
                DecodeError::ZeroPacketId {
                    packet: "SUBSCRIBE",
                },
            ),
            (
                b"\x82\x06\x00\x01\x00\x01a\x04",
                DecodeError::InvalidSubscriptionOptions(4),
            ),
            (
                b"\x82\x06\x00\x01\x00\x01a\x81",
                DecodeError::InvalidSubscriptionOptions(0x81),
            ),
            (b"\x82\x06\x00\x01\x00\x01a\x03", DecodeError::InvalidQoS(3)),
            (
                b"\x82\x05\x00\x01\x00\x01a",
                DecodeError::Truncated {
                    packet: "SUBSCRIBE",
                },
            ),
            (
                b"\x82\x07\x00\x01\x00\x02a#\x00",
                DecodeError::InvalidTopic(TopicError::MisplacedMultiLevelWildcard),
            ),
            (
                b"\x82\x05\x00\x01\x00\x00\x00",
                DecodeError::InvalidTopic(TopicError::Empty),
            ),
            (
                b"\x80\x06\x00\x01\x00\x01a\x00",
                DecodeError::InvalidFixedHeaderFlags {
                    packet: "SUBSCRIBE",
                    flags: 0,
                },
            ),
            (
                b"\x82\x01\x00",
                DecodeError::Truncated {
                    packet: "SUBSCRIBE",
                },
            ),
        ];
        for (wire, expected) in cases {
            assert_eq!(decode_error(wire), expected, "{wire:x?}");
        }
    }

    #[test]
    fn suback_wire_bytes() {
        assert_wire(
            &Packet::SubAck(SubAck {
                packet_id: id(9),
                return_codes: smallvec![
                    SubAckReturnCode::Success(QoS::AtMostOnce),
                    SubAckReturnCode::Success(QoS::AtLeastOnce),
                    SubAckReturnCode::Success(QoS::ExactlyOnce),
                    SubAckReturnCode::Failure,
                ],
            }),
            b"\x90\x06\x00\x09\x00\x01\x02\x80",
        );
    }

    #[test]
    fn malformed_subacks_are_refused() {
        assert_eq!(decode_error(b"\x90\x02\x00\x01"), DecodeError::EmptySubAck);
        assert_eq!(
            decode_error(b"\x90\x03\x00\x01\x03"),
            DecodeError::InvalidSubAckReturnCode(3)
        );
        assert_eq!(
            decode_error(b"\x90\x03\x00\x01\x81"),
            DecodeError::InvalidSubAckReturnCode(0x81)
        );
        assert_eq!(
            decode_error(b"\x90\x03\x00\x00\x00"),
            DecodeError::ZeroPacketId { packet: "SUBACK" }
        );
        assert_eq!(
            decode_error(b"\x92\x03\x00\x01\x00"),
            DecodeError::InvalidFixedHeaderFlags {
                packet: "SUBACK",
                flags: 2
            }
        );
    }

    #[test]
    fn return_codes_map_to_wire_values() {
        for value in [0u8, 1, 2, 0x80] {
            assert_eq!(SubAckReturnCode::from_u8(value).unwrap().to_u8(), value);
        }
        assert_eq!(SubAckReturnCode::from_u8(3), None);
        assert_eq!(SubAckReturnCode::from_u8(0x7F), None);
    }
}

#[cfg(test)]
mod v5_tests {
    use smallvec::smallvec;

    use super::*;
    use crate::protocol::testing::{assert_wire_v5, decode_error_v5, packet_bytes};
    use crate::protocol::{Packet, PropertyId, SubscriptionId};

    fn id(value: u16) -> PacketId {
        PacketId::new(value).unwrap()
    }

    fn filter(text: &str) -> TopicFilter {
        TopicFilter::try_from(text).unwrap()
    }

    #[test]
    fn v5_subscribe_wire_bytes() {
        assert_wire_v5(
            &Packet::SubscribeV5(SubscribeV5 {
                packet_id: id(1),
                properties: SubscribeProperties::default(),
                filters: smallvec![(
                    filter("a/+"),
                    SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        no_local: true,
                        retain_as_published: true,
                        retain_handling: RetainHandling::DoNotSend,
                    }
                )],
            }),
            b"\x82\x09\x00\x01\x00\x00\x03a/+\x2d",
        );
        assert_wire_v5(
            &Packet::SubscribeV5(SubscribeV5 {
                packet_id: id(2),
                properties: SubscribeProperties {
                    subscription_id: SubscriptionId::new(300),
                    user_properties: Vec::new(),
                },
                filters: smallvec![(filter("#"), SubscriptionOptions::new(QoS::AtMostOnce))],
            }),
            b"\x82\x0a\x00\x02\x03\x0b\xac\x02\x00\x01#\x00",
        );
    }

    #[test]
    fn every_option_combination_round_trips() {
        for byte in 0..=0x3Fu8 {
            let Ok(options) = SubscriptionOptions::decode(byte, &filter("a")) else {
                assert!(byte & 0b11 == 3 || byte >> 4 == 3, "{byte:#x}");
                continue;
            };
            assert_eq!(options.to_byte(), byte);
        }
    }

    #[test]
    fn malformed_v5_subscribes_are_refused_with_their_reason_code() {
        let subscribe = |options: u8, topic: &str| {
            let mut body = b"\x00\x01\x00".to_vec();
            body.extend_from_slice(&u16::try_from(topic.len()).unwrap().to_be_bytes());
            body.extend_from_slice(topic.as_bytes());
            body.push(options);
            packet_bytes(0x82, &body)
        };
        let cases: [(Vec<u8>, DecodeError, ReasonCode); 7] = [
            (
                subscribe(0x40, "a"),
                DecodeError::InvalidSubscriptionOptions(0x40),
                ReasonCode::MalformedPacket,
            ),
            (
                subscribe(0x03, "a"),
                DecodeError::InvalidMaximumQoS,
                ReasonCode::ProtocolError,
            ),
            (
                subscribe(0x30, "a"),
                DecodeError::InvalidRetainHandling,
                ReasonCode::ProtocolError,
            ),
            (
                subscribe(0x04, "$share/g/a"),
                DecodeError::NoLocalOnSharedSubscription,
                ReasonCode::ProtocolError,
            ),
            (
                packet_bytes(0x82, b"\x00\x01\x00"),
                DecodeError::EmptySubscribe,
                ReasonCode::ProtocolError,
            ),
            (
                packet_bytes(0x82, b"\x00\x01\x04\x0b\x01\x0b\x02\x00\x01a\x00"),
                DecodeError::DuplicateProperty {
                    packet: "SUBSCRIBE",
                    property: PropertyId::SubscriptionIdentifier,
                },
                ReasonCode::ProtocolError,
            ),
            (
                packet_bytes(0x82, b"\x00\x01\x03\x23\x00\x01\x00\x01a\x00"),
                DecodeError::PropertyNotAllowed {
                    packet: "SUBSCRIBE",
                    property: PropertyId::TopicAlias,
                },
                ReasonCode::MalformedPacket,
            ),
        ];
        for (wire, expected, reason) in cases {
            let error = decode_error_v5(&wire);
            assert_eq!(error, expected, "{wire:x?}");
            assert_eq!(error.reason_code(), reason, "{error}");
        }
        // No local on an ordinary filter is fine.
        assert!(SubscriptionOptions::decode(0x04, &filter("share/g/a")).is_ok());
    }

    #[test]
    fn v5_suback_wire_bytes() {
        assert_wire_v5(
            &Packet::SubAckV5(SubAckV5 {
                packet_id: id(9),
                properties: AckProperties::default(),
                reason_codes: smallvec![
                    ReasonCode::GrantedQoS0,
                    ReasonCode::GrantedQoS1,
                    ReasonCode::GrantedQoS2,
                    ReasonCode::NotAuthorized,
                    ReasonCode::TopicFilterInvalid,
                ],
            }),
            b"\x90\x08\x00\x09\x00\x00\x01\x02\x87\x8f",
        );
    }

    #[test]
    fn malformed_v5_subacks_are_refused() {
        assert_eq!(
            decode_error_v5(b"\x90\x04\x00\x01\x00\x03"),
            DecodeError::InvalidReasonCode {
                packet: "SUBACK",
                code: 3
            }
        );
        assert_eq!(
            decode_error_v5(b"\x90\x04\x00\x01\x00\x11"),
            DecodeError::InvalidReasonCode {
                packet: "SUBACK",
                code: 0x11
            }
        );
        assert_eq!(
            decode_error_v5(b"\x90\x03\x00\x01\x00"),
            DecodeError::EmptySubAck
        );
    }
}
