//! MQTT 5 properties [MQTT-2.2.2]: the typed identifier/value pairs that follow the variable
//! header of most MQTT 5 packets (and precede the will in CONNECT).
//!
//! Every property identifier is a [`PropertyId`], which knows its wire type, its name and the
//! packets allowed to carry it. Each packet has its own typed property set (`sets`), decoded
//! by one loop ([`read_properties`]) that refuses, with the specification's reason code, an
//! unknown identifier or a property not allowed there (Malformed Packet), a second copy of a
//! property that may appear once and a value out of range (Protocol Error). Sets encode
//! through a [`PropertySink`], which either writes bytes or counts them, so a packet's encoded
//! size is computed by the same code that writes it.

mod sets;

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{BufMut, Bytes, BytesMut};

use super::error::DecodeError;
use super::fields::{field_len, put_binary, put_var_int, var_int_len, FieldReader};
use super::fixed_header::PacketType;
use super::mqtt_string::MqttString;
use super::qos::QoS;
use crate::topic::TopicName;

pub use self::sets::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DeliveryProperties,
    DisconnectProperties, MessageProperties, PublishProperties, SubscribeProperties,
    UnsubscribeProperties, WillProperties,
};
pub(crate) use self::sets::{DecodedPublishBlock, PublishBlock};

/// The wire type of a property's value [MQTT-1.5].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PropertyType {
    /// One byte.
    Byte,
    /// Big-endian u16.
    TwoByteInteger,
    /// Big-endian u32.
    FourByteInteger,
    /// One to four bytes of seven bits [MQTT-1.5.5].
    VariableByteInteger,
    /// Length-prefixed UTF-8.
    Utf8String,
    /// Length-prefixed bytes.
    BinaryData,
    /// Two length-prefixed UTF-8 strings (a user property).
    Utf8StringPair,
}

/// Every MQTT 5 property, by its identifier [MQTT-2.2.2.2].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PropertyId {
    /// Whether the payload is UTF-8 (PUBLISH, will).
    PayloadFormatIndicator = 0x01,
    /// Seconds the message may live (PUBLISH, will).
    MessageExpiryInterval = 0x02,
    /// A MIME-like description of the payload (PUBLISH, will).
    ContentType = 0x03,
    /// Where a response should be published (PUBLISH, will).
    ResponseTopic = 0x08,
    /// Lets a requester match a response to its request (PUBLISH, will).
    CorrelationData = 0x09,
    /// Identifies a subscription; repeated in a PUBLISH for each one that matched.
    SubscriptionIdentifier = 0x0B,
    /// Seconds the session outlives the connection (CONNECT, CONNACK, DISCONNECT).
    SessionExpiryInterval = 0x11,
    /// The client identifier the server chose for an empty one (CONNACK).
    AssignedClientIdentifier = 0x12,
    /// The keep-alive the server imposes (CONNACK).
    ServerKeepAlive = 0x13,
    /// The name of an enhanced authentication method (CONNECT, CONNACK, AUTH).
    AuthenticationMethod = 0x15,
    /// The data of an authentication exchange (CONNECT, CONNACK, AUTH).
    AuthenticationData = 0x16,
    /// Whether the server may send reason strings and user properties on failures (CONNECT).
    RequestProblemInformation = 0x17,
    /// Seconds the server waits before publishing the will (will).
    WillDelayInterval = 0x18,
    /// Whether the client wants response information in the CONNACK (CONNECT).
    RequestResponseInformation = 0x19,
    /// The basis of response topics (CONNACK).
    ResponseInformation = 0x1A,
    /// Another server to use (CONNACK, DISCONNECT).
    ServerReference = 0x1C,
    /// Human-readable diagnostics, never to be parsed (acks, DISCONNECT, AUTH).
    ReasonString = 0x1F,
    /// How many QoS 1/2 publishes the sender accepts in flight (CONNECT, CONNACK).
    ReceiveMaximum = 0x21,
    /// The highest topic alias the sender accepts (CONNECT, CONNACK).
    TopicAliasMaximum = 0x22,
    /// A number standing for the topic (PUBLISH).
    TopicAlias = 0x23,
    /// The highest QoS the server supports, 0 or 1 (CONNACK).
    MaximumQoS = 0x24,
    /// Whether the server supports retained messages (CONNACK).
    RetainAvailable = 0x25,
    /// An application-defined name/value pair (every packet with properties).
    UserProperty = 0x26,
    /// The largest packet the sender accepts (CONNECT, CONNACK).
    MaximumPacketSize = 0x27,
    /// Whether the server supports wildcard subscriptions (CONNACK).
    WildcardSubscriptionAvailable = 0x28,
    /// Whether the server supports subscription identifiers (CONNACK).
    SubscriptionIdentifierAvailable = 0x29,
    /// Whether the server supports shared subscriptions (CONNACK).
    SharedSubscriptionAvailable = 0x2A,
}

/// Every property identifier, in wire order.
pub const ALL_PROPERTY_IDS: [PropertyId; 27] = {
    use PropertyId::*;
    [
        PayloadFormatIndicator,
        MessageExpiryInterval,
        ContentType,
        ResponseTopic,
        CorrelationData,
        SubscriptionIdentifier,
        SessionExpiryInterval,
        AssignedClientIdentifier,
        ServerKeepAlive,
        AuthenticationMethod,
        AuthenticationData,
        RequestProblemInformation,
        WillDelayInterval,
        RequestResponseInformation,
        ResponseInformation,
        ServerReference,
        ReasonString,
        ReceiveMaximum,
        TopicAliasMaximum,
        TopicAlias,
        MaximumQoS,
        RetainAvailable,
        UserProperty,
        MaximumPacketSize,
        WildcardSubscriptionAvailable,
        SubscriptionIdentifierAvailable,
        SharedSubscriptionAvailable,
    ]
};

/// The bit standing for the will's property block in a set of places (bit 0: packet type 0
/// is reserved, so no packet uses it).
const WILL: u16 = 1;

/// The bit of a packet type in a set of places.
const fn bit(packet: PacketType) -> u16 {
    1 << packet as u8
}

const CONNECT: u16 = bit(PacketType::Connect);
const CONNACK: u16 = bit(PacketType::ConnAck);
const PUBLISH: u16 = bit(PacketType::Publish);
const SUBSCRIBE: u16 = bit(PacketType::Subscribe);
const DISCONNECT: u16 = bit(PacketType::Disconnect);
const AUTH: u16 = bit(PacketType::Auth);
/// The packets whose only properties are a reason string and user properties.
const ACKS: u16 = bit(PacketType::PubAck)
    | bit(PacketType::PubRec)
    | bit(PacketType::PubRel)
    | bit(PacketType::PubComp)
    | bit(PacketType::SubAck)
    | bit(PacketType::UnsubAck);

impl PropertyId {
    /// The property for an identifier, or `None` if MQTT 5 defines no such property.
    pub fn from_id(id: u32) -> Option<Self> {
        ALL_PROPERTY_IDS
            .iter()
            .copied()
            .find(|property| u32::from(property.id()) == id)
    }

    /// The identifier on the wire.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// The specification's name, for logs and errors.
    pub fn name(self) -> &'static str {
        use PropertyId::*;
        match self {
            PayloadFormatIndicator => "Payload Format Indicator",
            MessageExpiryInterval => "Message Expiry Interval",
            ContentType => "Content Type",
            ResponseTopic => "Response Topic",
            CorrelationData => "Correlation Data",
            SubscriptionIdentifier => "Subscription Identifier",
            SessionExpiryInterval => "Session Expiry Interval",
            AssignedClientIdentifier => "Assigned Client Identifier",
            ServerKeepAlive => "Server Keep Alive",
            AuthenticationMethod => "Authentication Method",
            AuthenticationData => "Authentication Data",
            RequestProblemInformation => "Request Problem Information",
            WillDelayInterval => "Will Delay Interval",
            RequestResponseInformation => "Request Response Information",
            ResponseInformation => "Response Information",
            ServerReference => "Server Reference",
            ReasonString => "Reason String",
            ReceiveMaximum => "Receive Maximum",
            TopicAliasMaximum => "Topic Alias Maximum",
            TopicAlias => "Topic Alias",
            MaximumQoS => "Maximum QoS",
            RetainAvailable => "Retain Available",
            UserProperty => "User Property",
            MaximumPacketSize => "Maximum Packet Size",
            WildcardSubscriptionAvailable => "Wildcard Subscription Available",
            SubscriptionIdentifierAvailable => "Subscription Identifier Available",
            SharedSubscriptionAvailable => "Shared Subscription Available",
        }
    }

    /// The wire type of the value.
    pub fn value_type(self) -> PropertyType {
        use PropertyId::*;
        match self {
            PayloadFormatIndicator
            | RequestProblemInformation
            | RequestResponseInformation
            | MaximumQoS
            | RetainAvailable
            | WildcardSubscriptionAvailable
            | SubscriptionIdentifierAvailable
            | SharedSubscriptionAvailable => PropertyType::Byte,
            ServerKeepAlive | ReceiveMaximum | TopicAliasMaximum | TopicAlias => {
                PropertyType::TwoByteInteger
            }
            MessageExpiryInterval
            | SessionExpiryInterval
            | WillDelayInterval
            | MaximumPacketSize => PropertyType::FourByteInteger,
            SubscriptionIdentifier => PropertyType::VariableByteInteger,
            ContentType
            | ResponseTopic
            | AssignedClientIdentifier
            | AuthenticationMethod
            | ResponseInformation
            | ServerReference
            | ReasonString => PropertyType::Utf8String,
            CorrelationData | AuthenticationData => PropertyType::BinaryData,
            UserProperty => PropertyType::Utf8StringPair,
        }
    }

    /// The places allowed to carry this property, as bits (`1 << packet type`, [`WILL`]).
    fn places(self) -> u16 {
        use PropertyId::*;
        match self {
            PayloadFormatIndicator
            | MessageExpiryInterval
            | ContentType
            | ResponseTopic
            | CorrelationData => PUBLISH | WILL,
            SubscriptionIdentifier => PUBLISH | SUBSCRIBE,
            SessionExpiryInterval => CONNECT | CONNACK | DISCONNECT,
            AssignedClientIdentifier
            | ServerKeepAlive
            | ResponseInformation
            | MaximumQoS
            | RetainAvailable
            | WildcardSubscriptionAvailable
            | SubscriptionIdentifierAvailable
            | SharedSubscriptionAvailable => CONNACK,
            AuthenticationMethod | AuthenticationData => CONNECT | CONNACK | AUTH,
            RequestProblemInformation | RequestResponseInformation => CONNECT,
            WillDelayInterval => WILL,
            ServerReference => CONNACK | DISCONNECT,
            ReasonString => CONNACK | ACKS | DISCONNECT | AUTH,
            ReceiveMaximum | TopicAliasMaximum | MaximumPacketSize => CONNECT | CONNACK,
            TopicAlias => PUBLISH,
            UserProperty => {
                CONNECT
                    | CONNACK
                    | PUBLISH
                    | WILL
                    | ACKS
                    | SUBSCRIBE
                    | DISCONNECT
                    | AUTH
                    | bit(PacketType::Unsubscribe)
            }
        }
    }

    /// Whether `packet`'s properties may include this one.
    pub fn allowed_in(self, packet: PacketType) -> bool {
        self.places() & bit(packet) != 0
    }

    /// Whether the will properties of a CONNECT may include this one.
    pub fn allowed_in_will(self) -> bool {
        self.places() & WILL != 0
    }

    /// Whether this property may appear more than once in `packet`: user properties always,
    /// subscription identifiers in a PUBLISH (one per matching subscription).
    pub fn may_repeat_in(self, packet: PacketType) -> bool {
        self == Self::UserProperty
            || (self == Self::SubscriptionIdentifier && packet == PacketType::Publish)
    }
}

/// What the payload of a message is, by its publisher's word [MQTT-3.3.2.3.2].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PayloadFormat {
    /// Unspecified bytes (the default when the property is absent).
    Unspecified = 0,
    /// UTF-8 encoded character data.
    Utf8 = 1,
}

/// A topic alias: a number standing for a topic name on one connection, never 0
/// [MQTT-3.3.2-8].
pub type TopicAlias = NonZeroU16;

/// A subscription identifier: 1 to 268,435,455, a variable byte integer on the wire
/// [MQTT-3.8.2.1.2].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubscriptionId(NonZeroU32);

impl SubscriptionId {
    /// The largest identifier a variable byte integer can carry.
    pub const MAX: u32 = 268_435_455;

    /// The identifier `value`, or `None` for 0 and values above [`Self::MAX`].
    pub fn new(value: u32) -> Option<Self> {
        if value > Self::MAX {
            return None;
        }
        NonZeroU32::new(value).map(Self)
    }

    /// The numeric value.
    pub fn get(self) -> u32 {
        self.0.get()
    }
}

/// An application-defined name/value pair; order and repeats are significant and must be kept
/// when forwarding [MQTT-3.3.2-17, 3.3.2-18].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UserProperty {
    /// The name (need not be unique).
    pub name: MqttString,
    /// The value.
    pub value: MqttString,
}

impl UserProperty {
    /// A pair from text; fails if either part is not a valid MQTT string.
    pub fn new(name: &str, value: &str) -> Result<Self, super::mqtt_string::StringError> {
        Ok(Self {
            name: MqttString::try_from(name)?,
            value: MqttString::try_from(value)?,
        })
    }
}

/// One decoded property with a validated, typed value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Property {
    PayloadFormatIndicator(PayloadFormat),
    MessageExpiryInterval(u32),
    ContentType(MqttString),
    ResponseTopic(TopicName),
    CorrelationData(Bytes),
    SubscriptionIdentifier(SubscriptionId),
    SessionExpiryInterval(u32),
    AssignedClientIdentifier(MqttString),
    ServerKeepAlive(u16),
    AuthenticationMethod(MqttString),
    AuthenticationData(Bytes),
    RequestProblemInformation(bool),
    WillDelayInterval(u32),
    RequestResponseInformation(bool),
    ResponseInformation(MqttString),
    ServerReference(MqttString),
    ReasonString(MqttString),
    ReceiveMaximum(NonZeroU16),
    TopicAliasMaximum(u16),
    TopicAlias(TopicAlias),
    MaximumQoS(QoS),
    RetainAvailable(bool),
    UserProperty(UserProperty),
    MaximumPacketSize(NonZeroU32),
    WildcardSubscriptionAvailable(bool),
    SubscriptionIdentifierAvailable(bool),
    SharedSubscriptionAvailable(bool),
}

impl Property {
    /// The property's identifier.
    pub(crate) fn id(&self) -> PropertyId {
        use Property as P;
        use PropertyId as Id;
        match self {
            P::PayloadFormatIndicator(_) => Id::PayloadFormatIndicator,
            P::MessageExpiryInterval(_) => Id::MessageExpiryInterval,
            P::ContentType(_) => Id::ContentType,
            P::ResponseTopic(_) => Id::ResponseTopic,
            P::CorrelationData(_) => Id::CorrelationData,
            P::SubscriptionIdentifier(_) => Id::SubscriptionIdentifier,
            P::SessionExpiryInterval(_) => Id::SessionExpiryInterval,
            P::AssignedClientIdentifier(_) => Id::AssignedClientIdentifier,
            P::ServerKeepAlive(_) => Id::ServerKeepAlive,
            P::AuthenticationMethod(_) => Id::AuthenticationMethod,
            P::AuthenticationData(_) => Id::AuthenticationData,
            P::RequestProblemInformation(_) => Id::RequestProblemInformation,
            P::WillDelayInterval(_) => Id::WillDelayInterval,
            P::RequestResponseInformation(_) => Id::RequestResponseInformation,
            P::ResponseInformation(_) => Id::ResponseInformation,
            P::ServerReference(_) => Id::ServerReference,
            P::ReasonString(_) => Id::ReasonString,
            P::ReceiveMaximum(_) => Id::ReceiveMaximum,
            P::TopicAliasMaximum(_) => Id::TopicAliasMaximum,
            P::TopicAlias(_) => Id::TopicAlias,
            P::MaximumQoS(_) => Id::MaximumQoS,
            P::RetainAvailable(_) => Id::RetainAvailable,
            P::UserProperty(_) => Id::UserProperty,
            P::MaximumPacketSize(_) => Id::MaximumPacketSize,
            P::WildcardSubscriptionAvailable(_) => Id::WildcardSubscriptionAvailable,
            P::SubscriptionIdentifierAvailable(_) => Id::SubscriptionIdentifierAvailable,
            P::SharedSubscriptionAvailable(_) => Id::SharedSubscriptionAvailable,
        }
    }

    /// Reads the value of property `id` and checks its range. `place` names the property
    /// block in errors.
    fn read(
        id: PropertyId,
        reader: &mut FieldReader,
        place: &'static str,
    ) -> Result<Self, DecodeError> {
        use Property as P;
        use PropertyId as Id;
        let invalid = |value: u32| DecodeError::InvalidPropertyValue {
            packet: place,
            property: id,
            value,
        };
        let flag = |reader: &mut FieldReader| match reader.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(invalid(u32::from(other))),
        };
        Ok(match id {
            Id::PayloadFormatIndicator => P::PayloadFormatIndicator(match reader.u8()? {
                0 => PayloadFormat::Unspecified,
                1 => PayloadFormat::Utf8,
                other => return Err(invalid(u32::from(other))),
            }),
            Id::MessageExpiryInterval => P::MessageExpiryInterval(reader.u32()?),
            Id::ContentType => P::ContentType(reader.mqtt_string(id.name())?),
            Id::ResponseTopic => {
                let topic = reader.mqtt_string(id.name())?;
                P::ResponseTopic(TopicName::new(topic.as_bytes().clone()).map_err(|error| {
                    DecodeError::InvalidResponseTopic {
                        packet: place,
                        error,
                    }
                })?)
            }
            Id::CorrelationData => P::CorrelationData(reader.binary()?),
            Id::SubscriptionIdentifier => {
                let value = reader.var_int()?;
                P::SubscriptionIdentifier(SubscriptionId::new(value).ok_or(invalid(value))?)
            }
            Id::SessionExpiryInterval => P::SessionExpiryInterval(reader.u32()?),
            Id::AssignedClientIdentifier => {
                P::AssignedClientIdentifier(reader.mqtt_string(id.name())?)
            }
            Id::ServerKeepAlive => P::ServerKeepAlive(reader.u16()?),
            Id::AuthenticationMethod => P::AuthenticationMethod(reader.mqtt_string(id.name())?),
            Id::AuthenticationData => P::AuthenticationData(reader.binary()?),
            Id::RequestProblemInformation => P::RequestProblemInformation(flag(reader)?),
            Id::WillDelayInterval => P::WillDelayInterval(reader.u32()?),
            Id::RequestResponseInformation => P::RequestResponseInformation(flag(reader)?),
            Id::ResponseInformation => P::ResponseInformation(reader.mqtt_string(id.name())?),
            Id::ServerReference => P::ServerReference(reader.mqtt_string(id.name())?),
            Id::ReasonString => P::ReasonString(reader.mqtt_string(id.name())?),
            Id::ReceiveMaximum => {
                let value = reader.u16()?;
                P::ReceiveMaximum(NonZeroU16::new(value).ok_or(invalid(u32::from(value)))?)
            }
            Id::TopicAliasMaximum => P::TopicAliasMaximum(reader.u16()?),
            Id::TopicAlias => {
                let value = reader.u16()?;
                P::TopicAlias(TopicAlias::new(value).ok_or(invalid(u32::from(value)))?)
            }
            Id::MaximumQoS => P::MaximumQoS(match reader.u8()? {
                0 => QoS::AtMostOnce,
                1 => QoS::AtLeastOnce,
                other => return Err(invalid(u32::from(other))),
            }),
            Id::RetainAvailable => P::RetainAvailable(flag(reader)?),
            Id::UserProperty => P::UserProperty(UserProperty {
                name: reader.mqtt_string(id.name())?,
                value: reader.mqtt_string(id.name())?,
            }),
            Id::MaximumPacketSize => {
                let value = reader.u32()?;
                P::MaximumPacketSize(NonZeroU32::new(value).ok_or(invalid(value))?)
            }
            Id::WildcardSubscriptionAvailable => P::WildcardSubscriptionAvailable(flag(reader)?),
            Id::SubscriptionIdentifierAvailable => {
                P::SubscriptionIdentifierAvailable(flag(reader)?)
            }
            Id::SharedSubscriptionAvailable => P::SharedSubscriptionAvailable(flag(reader)?),
        })
    }
}

/// A property block's place: which packet (or the will) it belongs to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Place {
    /// The place's bit in [`PropertyId::places`].
    bit: u16,
    /// Its name in errors.
    name: &'static str,
}

impl Place {
    /// The property block of a `packet`.
    pub(crate) fn packet(packet: PacketType) -> Self {
        Self {
            bit: bit(packet),
            name: packet.name(),
        }
    }

    /// The will properties of a CONNECT.
    pub(crate) fn will() -> Self {
        Self {
            bit: WILL,
            name: "CONNECT will",
        }
    }
}

/// A typed set of properties that can be written (or measured) through a [`PropertySink`].
pub(crate) trait WriteProperties {
    /// Passes every present property to `sink`, in a fixed order.
    fn write_to(&self, sink: &mut impl PropertySink);
}

/// A packet's typed property set, filled one decoded property at a time.
pub(crate) trait PropertySet: WriteProperties + Default {
    /// Stores `property`, whose identifier was checked to be allowed here; a second copy of a
    /// property that may appear once is a `DuplicateProperty`.
    fn apply(&mut self, property: Property, place: &'static str) -> Result<(), DecodeError>;

    /// Checks rules between properties once the block is read.
    fn check(&self, _place: &'static str) -> Result<(), DecodeError> {
        Ok(())
    }
}

/// Stores a property that may appear once.
pub(crate) fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    property: PropertyId,
    place: &'static str,
) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty {
            packet: place,
            property,
        });
    }
    *slot = Some(value);
    Ok(())
}

/// The error for a property a set does not hold (the place check normally refuses it first).
pub(crate) fn not_allowed(property: &Property, place: &'static str) -> DecodeError {
    DecodeError::PropertyNotAllowed {
        packet: place,
        property: property.id(),
    }
}

/// Reads a property block (its variable-byte-integer length, then the properties) into the
/// set `S`, enforcing where each property may appear and how often.
pub(crate) fn read_properties<S: PropertySet>(
    reader: &mut FieldReader,
    place: Place,
) -> Result<S, DecodeError> {
    let len = reader.var_int()?;
    let mut block = reader.sub_reader(len as usize)?;
    let mut set = S::default();
    while !block.is_empty() {
        let raw = block.var_int()?;
        let id = PropertyId::from_id(raw).ok_or(DecodeError::UnknownProperty {
            packet: place.name,
            id: raw,
        })?;
        if id.places() & place.bit == 0 {
            return Err(DecodeError::PropertyNotAllowed {
                packet: place.name,
                property: id,
            });
        }
        set.apply(Property::read(id, &mut block, place.name)?, place.name)?;
    }
    set.check(place.name)?;
    Ok(set)
}

/// Where encoded properties go: a write buffer, or a counter that measures them.
pub(crate) trait PropertySink {
    /// Appends (or counts) `bytes` of already-encoded property data.
    fn raw(&mut self, id: PropertyId, value: RawValue<'_>);

    /// A one-byte property, if present.
    fn byte(&mut self, id: PropertyId, value: Option<u8>) {
        if let Some(value) = value {
            self.raw(id, RawValue::Byte(value));
        }
    }

    /// A boolean (one byte, 0 or 1) property, if present.
    fn flag(&mut self, id: PropertyId, value: Option<bool>) {
        self.byte(id, value.map(u8::from));
    }

    /// A two-byte property, if present.
    fn two(&mut self, id: PropertyId, value: Option<u16>) {
        if let Some(value) = value {
            self.raw(id, RawValue::Two(value));
        }
    }

    /// A four-byte property, if present.
    fn four(&mut self, id: PropertyId, value: Option<u32>) {
        if let Some(value) = value {
            self.raw(id, RawValue::Four(value));
        }
    }

    /// A variable-byte-integer property.
    fn var(&mut self, id: PropertyId, value: u32) {
        self.raw(id, RawValue::Var(value));
    }

    /// A string property, if present.
    fn string(&mut self, id: PropertyId, value: Option<&MqttString>) {
        if let Some(value) = value {
            self.raw(id, RawValue::Binary(value.as_bytes()));
        }
    }

    /// A binary property, if present.
    fn binary(&mut self, id: PropertyId, value: Option<&Bytes>) {
        if let Some(value) = value {
            self.raw(id, RawValue::Binary(value));
        }
    }

    /// User properties, in order.
    fn user_properties(&mut self, properties: &[UserProperty]) {
        for property in properties {
            self.raw(
                PropertyId::UserProperty,
                RawValue::Pair(property.name.as_bytes(), property.value.as_bytes()),
            );
        }
    }
}

/// A property value ready for the wire.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RawValue<'a> {
    Byte(u8),
    Two(u16),
    Four(u32),
    Var(u32),
    Binary(&'a [u8]),
    Pair(&'a [u8], &'a [u8]),
}

impl RawValue<'_> {
    /// Encoded size of the value (without the identifier).
    fn len(self) -> usize {
        match self {
            Self::Byte(_) => 1,
            Self::Two(_) => 2,
            Self::Four(_) => 4,
            Self::Var(value) => var_int_len(value as usize),
            Self::Binary(data) => field_len(data.len()),
            Self::Pair(name, value) => field_len(name.len()) + field_len(value.len()),
        }
    }
}

/// Counts the bytes properties would take.
#[derive(Default)]
struct Measure(usize);

impl PropertySink for Measure {
    fn raw(&mut self, id: PropertyId, value: RawValue<'_>) {
        self.0 += var_int_len(usize::from(id.id())) + value.len();
    }
}

impl PropertySink for BytesMut {
    fn raw(&mut self, id: PropertyId, value: RawValue<'_>) {
        put_var_int(self, usize::from(id.id()));
        match value {
            RawValue::Byte(value) => self.put_u8(value),
            RawValue::Two(value) => self.put_u16(value),
            RawValue::Four(value) => self.put_u32(value),
            RawValue::Var(value) => put_var_int(self, value as usize),
            RawValue::Binary(data) => put_binary(self, data),
            RawValue::Pair(name, value) => {
                put_binary(self, name);
                put_binary(self, value);
            }
        }
    }
}

/// Bytes the properties themselves take (what the block's length prefix announces).
pub(crate) fn content_len(set: &impl WriteProperties) -> usize {
    let mut measure = Measure::default();
    set.write_to(&mut measure);
    measure.0
}

/// Bytes the whole property block takes: length prefix and properties.
pub(crate) fn block_len(set: &impl WriteProperties) -> usize {
    let len = content_len(set);
    var_int_len(len) + len
}

/// Appends the property block: its length, then the properties.
pub(crate) fn write_block(set: &impl WriteProperties, out: &mut BytesMut) {
    put_var_int(out, content_len(set));
    set.write_to(out);
}

/// Makes a packet fit `max_packet_size` by dropping what the specification lets a sender
/// drop [MQTT-3.1.2-25]: first the reason string, then the user properties. Returns whether
/// the packet now fits.
pub(crate) fn fit_by_dropping_diagnostics<P>(
    packet: &mut P,
    max_packet_size: usize,
    encoded_len: impl Fn(&P) -> usize,
    diagnostics: impl Fn(&mut P) -> (&mut Option<MqttString>, &mut Vec<UserProperty>),
) -> bool {
    if encoded_len(packet) <= max_packet_size {
        return true;
    }
    *diagnostics(packet).0 = None;
    if encoded_len(packet) <= max_packet_size {
        return true;
    }
    diagnostics(packet).1.clear();
    encoded_len(packet) <= max_packet_size
}

#[cfg(test)]
mod tests;
