//! The typed property set of each packet. A field is `Option` when the property may be
//! absent, so that what was received is exactly what is encoded again; the accessors named
//! after the spec's defaults give the value in force when it is absent.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::Bytes;

use super::{
    block_len, content_len, not_allowed, set_once, PayloadFormat, Property, PropertyId,
    PropertySet, PropertySink, SubscriptionId, TopicAlias, UserProperty, WriteProperties,
};
use crate::protocol::error::DecodeError;
use crate::protocol::mqtt_string::MqttString;
use crate::protocol::qos::QoS;
use crate::topic::TopicName;

/// Implements the public size accessors of a property set.
macro_rules! sized_set {
    ($set:ty) => {
        impl $set {
            /// Bytes the property block takes in a packet: its length prefix and properties.
            pub fn encoded_len(&self) -> usize {
                block_len(self)
            }

            /// Whether no property is present (the block is a single 0 byte).
            pub fn is_empty(&self) -> bool {
                content_len(self) == 0
            }
        }
    };
}

/// Refuses authentication data without an authentication method [MQTT-3.1.2.11.10].
fn check_authentication(
    method: &Option<MqttString>,
    data: &Option<Bytes>,
    place: &'static str,
) -> Result<(), DecodeError> {
    if data.is_some() && method.is_none() {
        return Err(DecodeError::AuthenticationDataWithoutMethod { packet: place });
    }
    Ok(())
}

/// CONNECT properties [MQTT-3.1.2.11]: the client's session and flow-control wishes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectProperties {
    /// Seconds the session outlives the connection; absent means 0 (ends with it).
    pub session_expiry_interval: Option<u32>,
    /// QoS 1/2 publishes the client accepts in flight; absent means 65535.
    pub receive_maximum: Option<NonZeroU16>,
    /// The largest packet the client accepts; absent means no limit beyond the protocol's.
    pub maximum_packet_size: Option<NonZeroU32>,
    /// The highest topic alias the server may send; absent means 0 (no aliases).
    pub topic_alias_maximum: Option<u16>,
    /// Whether the client wants response information in the CONNACK; absent means no.
    pub request_response_information: Option<bool>,
    /// Whether reason strings and user properties may be sent on failures; absent means yes.
    pub request_problem_information: Option<bool>,
    /// Application-defined pairs.
    pub user_properties: Vec<UserProperty>,
    /// The enhanced authentication method, if the client asks for one.
    pub authentication_method: Option<MqttString>,
    /// The first authentication data of that method.
    pub authentication_data: Option<Bytes>,
}

impl ConnectProperties {
    /// The session expiry interval in force (0 when absent).
    pub fn session_expiry(&self) -> u32 {
        self.session_expiry_interval.unwrap_or(0)
    }

    /// The client's receive maximum in force (65535 when absent).
    pub fn receive_maximum_or_default(&self) -> u16 {
        self.receive_maximum.map_or(u16::MAX, NonZeroU16::get)
    }

    /// Whether the client accepts reason strings and user properties on failures.
    pub fn problem_information_requested(&self) -> bool {
        self.request_problem_information.unwrap_or(true)
    }
}

impl WriteProperties for ConnectProperties {
    fn write_to(&self, sink: &mut impl PropertySink) {
        use PropertyId as Id;
        sink.four(Id::SessionExpiryInterval, self.session_expiry_interval);
        sink.two(
            Id::ReceiveMaximum,
            self.receive_maximum.map(NonZeroU16::get),
        );
        sink.four(
            Id::MaximumPacketSize,
            self.maximum_packet_size.map(NonZeroU32::get),
        );
        sink.two(Id::TopicAliasMaximum, self.topic_alias_maximum);
        sink.flag(
            Id::RequestResponseInformation,
            self.request_response_information,
        );
        sink.flag(
            Id::RequestProblemInformation,
            self.request_problem_information,
        );
        sink.string(
            Id::AuthenticationMethod,
            self.authentication_method.as_ref(),
        );
        sink.binary(Id::AuthenticationData, self.authentication_data.as_ref());
        sink.user_properties(&self.user_properties);
    }
}

impl PropertySet for ConnectProperties {
    fn apply(&mut self, property: Property, place: &'static str) -> Result<(), DecodeError> {
        let id = property.id();
        match property {
            Property::SessionExpiryInterval(v) => {
                set_once(&mut self.session_expiry_interval, v, id, place)
            }
            Property::ReceiveMaximum(v) => set_once(&mut self.receive_maximum, v, id, place),
            Property::MaximumPacketSize(v) => set_once(&mut self.maximum_packet_size, v, id, place),
            Property::TopicAliasMaximum(v) => set_once(&mut self.topic_alias_maximum, v, id, place),
            Property::RequestResponseInformation(v) => {
                set_once(&mut self.request_response_information, v, id, place)
            }
            Property::RequestProblemInformation(v) => {
                set_once(&mut self.request_problem_information, v, id, place)
            }
            Property::AuthenticationMethod(v) => {
                set_once(&mut self.authentication_method, v, id, place)
            }
            Property::AuthenticationData(v) => {
                set_once(&mut self.authentication_data, v, id, place)
            }
            Property::UserProperty(v) => {
                self.user_properties.push(v);
                Ok(())
            }
            other => Err(not_allowed(&other, place)),
        }
    }

    fn check(&self, place: &'static str) -> Result<(), DecodeError> {
        check_authentication(
            &self.authentication_method,
            &self.authentication_data,
            place,
        )
    }
}

sized_set!(ConnectProperties);

/// The properties of an application message that travel with it from its publisher to every
/// subscriber (and that a will carries too) [MQTT-3.3.2.3]. The server forwards them
/// unaltered, except the expiry interval, which it lowers by the time the message waited.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageProperties {
    /// Whether the payload is UTF-8; absent means unspecified bytes.
    pub payload_format: Option<PayloadFormat>,
    /// Seconds the message may wait for delivery; absent means forever.
    pub message_expiry_interval: Option<u32>,
    /// A description of the payload, e.g. a MIME type.
    pub content_type: Option<MqttString>,
    /// Where a response to this message should be published (a request/response pattern).
    pub response_topic: Option<TopicName>,
    /// Matches a response to its request.
    pub correlation_data: Option<Bytes>,
    /// Application-defined pairs, in order.
    pub user_properties: Vec<UserProperty>,
}

impl MessageProperties {
    /// Writes the properties with `message_expiry_interval` as the expiry (the remaining
    /// lifetime at delivery, not necessarily the one received).
    fn write_with_expiry(
        &self,
        sink: &mut impl PropertySink,
        message_expiry_interval: Option<u32>,
    ) {
        use PropertyId as Id;
        sink.byte(
            Id::PayloadFormatIndicator,
            self.payload_format.map(|format| format as u8),
        );
        sink.four(Id::MessageExpiryInterval, message_expiry_interval);
        sink.string(Id::ContentType, self.content_type.as_ref());
        if let Some(topic) = &self.response_topic {
            sink.raw(Id::ResponseTopic, super::RawValue::Binary(topic.as_bytes()));
        }
        sink.binary(Id::CorrelationData, self.correlation_data.as_ref());
        sink.user_properties(&self.user_properties);
    }

    /// Stores `property` if it is one of the message properties, else hands it back.
    fn apply_message(
        &mut self,
        property: Property,
        place: &'static str,
    ) -> Result<Option<Property>, DecodeError> {
        let id = property.id();
        match property {
            Property::PayloadFormatIndicator(v) => {
                set_once(&mut self.payload_format, v, id, place)?
            }
            Property::MessageExpiryInterval(v) => {
                set_once(&mut self.message_expiry_interval, v, id, place)?
            }
            Property::ContentType(v) => set_once(&mut self.content_type, v, id, place)?,
            Property::ResponseTopic(v) => set_once(&mut self.response_topic, v, id, place)?,
            Property::CorrelationData(v) => set_once(&mut self.correlation_data, v, id, place)?,
            Property::UserProperty(v) => self.user_properties.push(v),
            other => return Ok(Some(other)),
        }
        Ok(None)
    }

    /// Whether the payload is declared UTF-8 and is not: a receiver may refuse such a
    /// message with reason code 0x99 Payload format invalid [MQTT-3.3.2-4].
    pub fn payload_format_mismatch(&self, payload: &[u8]) -> bool {
        self.payload_format == Some(PayloadFormat::Utf8) && std::str::from_utf8(payload).is_err()
    }
}

/// Will properties [MQTT-3.1.3.2]: the will message's own properties, and its delay.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WillProperties {
    /// Seconds to wait after the connection ends before publishing the will; absent means 0.
    pub will_delay_interval: Option<u32>,
    /// The properties the will message is published with.
    pub message: MessageProperties,
}

impl WriteProperties for WillProperties {
    fn write_to(&self, sink: &mut impl PropertySink) {
        sink.four(PropertyId::WillDelayInterval, self.will_delay_interval);
        self.message
            .write_with_expiry(sink, self.message.message_expiry_interval);
    }
}

impl PropertySet for WillProperties {
    fn apply(&mut self, property: Property, place: &'static str) -> Result<(), DecodeError> {
        match self.message.apply_message(property, place)? {
            None => Ok(()),
            Some(Property::WillDelayInterval(v)) => set_once(
                &mut self.will_delay_interval,
                v,
                PropertyId::WillDelayInterval,
                place,
            ),
            Some(other) => Err(not_allowed(&other, place)),
        }
    }
}

sized_set!(WillProperties);

/// PUBLISH properties [MQTT-3.3.2.3], apart from the topic alias, which belongs to the
/// publish's topic (see `PublishTopic`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishProperties {
    /// What travels with the message to every subscriber.
    pub message: MessageProperties,
    /// The identifiers of the subscriptions this delivery matched (server to client only: a
    /// client must not send any [MQTT-3.3.4-6]).
    pub subscription_ids: Vec<SubscriptionId>,
}

impl PublishProperties {
    /// The borrowed form the encoder takes, with the expiry as stored.
    pub fn as_delivery(&self) -> DeliveryProperties<'_> {
        DeliveryProperties {
            message: &self.message,
            message_expiry_interval: self.message.message_expiry_interval,
            subscription_ids: &self.subscription_ids,
        }
    }
}

/// The properties of one outgoing MQTT 5 PUBLISH, borrowed so that a message's own properties
/// are shared by every copy: what differs between subscribers (the remaining expiry, the
/// matching subscription identifiers) is given beside them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeliveryProperties<'a> {
    /// The message's properties; their `message_expiry_interval` is ignored in favour of the
    /// field below.
    pub message: &'a MessageProperties,
    /// The expiry to send: the message's remaining lifetime [MQTT-3.3.2-6], or `None`.
    pub message_expiry_interval: Option<u32>,
    /// The identifiers of the subscriptions that matched, in any order.
    pub subscription_ids: &'a [SubscriptionId],
}

/// An outgoing PUBLISH property block: the topic alias and the delivery's properties.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PublishBlock<'a> {
    /// The topic alias property, if any.
    pub(crate) topic_alias: Option<TopicAlias>,
    /// Everything else.
    pub(crate) delivery: DeliveryProperties<'a>,
}

impl WriteProperties for PublishBlock<'_> {
    fn write_to(&self, sink: &mut impl PropertySink) {
        sink.two(
            PropertyId::TopicAlias,
            self.topic_alias.map(NonZeroU16::get),
        );
        self.delivery
            .message
            .write_with_expiry(sink, self.delivery.message_expiry_interval);
        for id in self.delivery.subscription_ids {
            sink.var(PropertyId::SubscriptionIdentifier, id.get());
        }
    }
}

/// A received PUBLISH property block: the topic alias and the other properties.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct DecodedPublishBlock {
    /// The topic alias property, if any.
    pub(crate) topic_alias: Option<TopicAlias>,
    /// Everything else.
    pub(crate) properties: PublishProperties,
}

impl WriteProperties for DecodedPublishBlock {
    fn write_to(&self, sink: &mut impl PropertySink) {
        PublishBlock {
            topic_alias: self.topic_alias,
            delivery: self.properties.as_delivery(),
        }
        .write_to(sink);
    }
}

impl PropertySet for DecodedPublishBlock {
    fn apply(&mut self, property: Property, place: &'static str) -> Result<(), DecodeError> {
        match self.properties.message.apply_message(property, place)? {
            None => Ok(()),
            Some(Property::TopicAlias(v)) => {
                set_once(&mut self.topic_alias, v, PropertyId::TopicAlias, place)
            }
            Some(Property::SubscriptionIdentifier(v)) => {
                self.properties.subscription_ids.push(v);
                Ok(())
            }
            Some(other) => Err(not_allowed(&other, place)),
        }
    }
}

/// CONNACK properties [MQTT-3.2.2.3]: the server's limits and what it chose for the client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnAckProperties {
    /// The session expiry the server uses, if it differs from the client's.
    pub session_expiry_interval: Option<u32>,
    /// QoS 1/2 publishes the server accepts in flight; absent means 65535.
    pub receive_maximum: Option<NonZeroU16>,
    /// The highest QoS the server supports, 0 or 1; absent means 2. `Some(QoS::ExactlyOnce)`
    /// is encoded as absent, which means the same.
    pub maximum_qos: Option<QoS>,
    /// Whether the server supports retained messages; absent means yes.
    pub retain_available: Option<bool>,
    /// The largest packet the server accepts; absent means no limit beyond the protocol's.
    pub maximum_packet_size: Option<NonZeroU32>,
    /// The client identifier the server assigned to a client that sent an empty one.
    pub assigned_client_identifier: Option<MqttString>,
    /// The highest topic alias the client may send; absent means 0 (no aliases).
    pub topic_alias_maximum: Option<u16>,
    /// Human-readable diagnostics.
    pub reason_string: Option<MqttString>,
    /// Application-defined pairs.
    pub user_properties: Vec<UserProperty>,
    /// Whether wildcard subscriptions are supported; absent means yes.
    pub wildcard_subscription_available: Option<bool>,
    /// Whether subscription identifiers are supported; absent means yes.
    pub subscription_identifiers_available: Option<bool>,
    /// Whether shared subscriptions are supported; absent means yes.
    pub shared_subscription_available: Option<bool>,
    /// The keep-alive the client must use instead of its own.
    pub server_keep_alive: Option<u16>,
    /// The basis for response topics, if the client asked for it.
    pub response_information: Option<MqttString>,
    /// Another server the client should use.
    pub server_reference: Option<MqttString>,
    /// The enhanced authentication method in use.
    pub authentication_method: Option<MqttString>,
    /// The authentication data of that method.
    pub authentication_data: Option<Bytes>,
}

impl WriteProperties for ConnAckProperties {
    fn write_to(&self, sink: &mut impl PropertySink) {
        use PropertyId as Id;
        sink.four(Id::SessionExpiryInterval, self.session_expiry_interval);
        sink.two(
            Id::ReceiveMaximum,
            self.receive_maximum.map(NonZeroU16::get),
        );
        sink.byte(
            Id::MaximumQoS,
            self.maximum_qos
                .filter(|qos| *qos != QoS::ExactlyOnce)
                .map(|qos| qos as u8),
        );
        sink.flag(Id::RetainAvailable, self.retain_available);
        sink.four(
            Id::MaximumPacketSize,
            self.maximum_packet_size.map(NonZeroU32::get),
        );
        sink.string(
            Id::AssignedClientIdentifier,
            self.assigned_client_identifier.as_ref(),
        );
        sink.two(Id::TopicAliasMaximum, self.topic_alias_maximum);
        sink.string(Id::ReasonString, self.reason_string.as_ref());
        sink.flag(
            Id::WildcardSubscriptionAvailable,
            self.wildcard_subscription_available,
        );
        sink.flag(
            Id::SubscriptionIdentifierAvailable,
            self.subscription_identifiers_available,
        );
        sink.flag(
            Id::SharedSubscriptionAvailable,
            self.shared_subscription_available,
        );
        sink.two(Id::ServerKeepAlive, self.server_keep_alive);
        sink.string(Id::ResponseInformation, self.response_information.as_ref());
        sink.string(Id::ServerReference, self.server_reference.as_ref());
        sink.string(
            Id::AuthenticationMethod,
            self.authentication_method.as_ref(),
        );
        sink.binary(Id::AuthenticationData, self.authentication_data.as_ref());
        sink.user_properties(&self.user_properties);
    }
}

impl PropertySet for ConnAckProperties {
    fn apply(&mut self, property: Property, place: &'static str) -> Result<(), DecodeError> {
        let id = property.id();
        match property {
            Property::SessionExpiryInterval(v) => {
                set_once(&mut self.session_expiry_interval, v, id, place)
            }
            Property::ReceiveMaximum(v) => set_once(&mut self.receive_maximum, v, id, place),
            Property::MaximumQoS(v) => set_once(&mut self.maximum_qos, v, id, place),
            Property::RetainAvailable(v) => set_once(&mut self.retain_available, v, id, place),
            Property::MaximumPacketSize(v) => set_once(&mut self.maximum_packet_size, v, id, place),
            Property::AssignedClientIdentifier(v) => {
                set_once(&mut self.assigned_client_identifier, v, id, place)
            }
            Property::TopicAliasMaximum(v) => set_once(&mut self.topic_alias_maximum, v, id, place),
            Property::ReasonString(v) => set_once(&mut self.reason_string, v, id, place),
            Property::WildcardSubscriptionAvailable(v) => {
                set_once(&mut self.wildcard_subscription_available, v, id, place)
            }
            Property::SubscriptionIdentifierAvailable(v) => {
                set_once(&mut self.subscription_identifiers_available, v, id, place)
            }
            Property::SharedSubscriptionAvailable(v) => {
                set_once(&mut self.shared_subscription_available, v, id, place)
            }
            Property::ServerKeepAlive(v) => set_once(&mut self.server_keep_alive, v, id, place),
            Property::ResponseInformation(v) => {
                set_once(&mut self.response_information, v, id, place)
            }
            Property::ServerReference(v) => set_once(&mut self.server_reference, v, id, place),
            Property::AuthenticationMethod(v) => {
                set_once(&mut self.authentication_method, v, id, place)
            }
            Property::AuthenticationData(v) => {
                set_once(&mut self.authentication_data, v, id, place)
            }
            Property::UserProperty(v) => {
                self.user_properties.push(v);
                Ok(())
            }
            other => Err(not_allowed(&other, place)),
        }
    }

    fn check(&self, place: &'static str) -> Result<(), DecodeError> {
        check_authentication(
            &self.authentication_method,
            &self.authentication_data,
            place,
        )
    }
}

sized_set!(ConnAckProperties);

/// The properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK: diagnostics only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AckProperties {
    /// Human-readable diagnostics.
    pub reason_string: Option<MqttString>,
    /// Application-defined pairs.
    pub user_properties: Vec<UserProperty>,
}

impl WriteProperties for AckProperties {
    fn write_to(&self, sink: &mut impl PropertySink) {
        sink.string(PropertyId::ReasonString, self.reason_string.as_ref());
        sink.user_properties(&self.user_properties);
    }
}

impl PropertySet for AckProperties {
    fn apply(&mut self, property: Property, place: &'static str) -> Result<(), DecodeError> {
        let id = property.id();
        match property {
            Property::ReasonString(v) => set_once(&mut self.reason_string, v, id, place),
            Property::UserProperty(v) => {
                self.user_properties.push(v);
                Ok(())
            }
            other => Err(not_allowed(&other, place)),
        }
    }
}

sized_set!(AckProperties);

/// SUBSCRIBE properties [MQTT-3.8.2.1].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscribeProperties {
    /// The identifier of the subscriptions this packet creates or updates, sent back with
    /// every message they match.
    pub subscription_id: Option<SubscriptionId>,
    /// Application-defined pairs.
    pub user_properties: Vec<UserProperty>,
}

impl WriteProperties for SubscribeProperties {
    fn write_to(&self, sink: &mut impl PropertySink) {
        if let Some(id) = self.subscription_id {
            sink.var(PropertyId::SubscriptionIdentifier, id.get());
        }
        sink.user_properties(&self.user_properties);
    }
}

impl PropertySet for SubscribeProperties {
    fn apply(&mut self, property: Property, place: &'static str) -> Result<(), DecodeError> {
        let id = property.id();
        match property {
            Property::SubscriptionIdentifier(v) => {
                set_once(&mut self.subscription_id, v, id, place)
            }
            Property::UserProperty(v) => {
                self.user_properties.push(v);
                Ok(())
            }
            other => Err(not_allowed(&other, place)),
        }
    }
}

sized_set!(SubscribeProperties);

/// UNSUBSCRIBE properties [MQTT-3.10.2.1].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnsubscribeProperties {
    /// Application-defined pairs.
    pub user_properties: Vec<UserProperty>,
}

impl WriteProperties for UnsubscribeProperties {
    fn write_to(&self, sink: &mut impl PropertySink) {
        sink.user_properties(&self.user_properties);
    }
}

impl PropertySet for UnsubscribeProperties {
    fn apply(&mut self, property: Property, place: &'static str) -> Result<(), DecodeError> {
        match property {
            Property::UserProperty(v) => {
                self.user_properties.push(v);
                Ok(())
            }
            other => Err(not_allowed(&other, place)),
        }
    }
}

sized_set!(UnsubscribeProperties);

/// DISCONNECT properties [MQTT-3.14.2.2].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DisconnectProperties {
    /// A new session expiry (client only, and not from 0 to non-zero [MQTT-3.14.2-2]).
    pub session_expiry_interval: Option<u32>,
    /// Human-readable diagnostics.
    pub reason_string: Option<MqttString>,
    /// Application-defined pairs.
    pub user_properties: Vec<UserProperty>,
    /// Another server the client should use (with 0x9C or 0x9D).
    pub server_reference: Option<MqttString>,
}

impl WriteProperties for DisconnectProperties {
    fn write_to(&self, sink: &mut impl PropertySink) {
        use PropertyId as Id;
        sink.four(Id::SessionExpiryInterval, self.session_expiry_interval);
        sink.string(Id::ReasonString, self.reason_string.as_ref());
        sink.string(Id::ServerReference, self.server_reference.as_ref());
        sink.user_properties(&self.user_properties);
    }
}

impl PropertySet for DisconnectProperties {
    fn apply(&mut self, property: Property, place: &'static str) -> Result<(), DecodeError> {
        let id = property.id();
        match property {
            Property::SessionExpiryInterval(v) => {
                set_once(&mut self.session_expiry_interval, v, id, place)
            }
            Property::ReasonString(v) => set_once(&mut self.reason_string, v, id, place),
            Property::ServerReference(v) => set_once(&mut self.server_reference, v, id, place),
            Property::UserProperty(v) => {
                self.user_properties.push(v);
                Ok(())
            }
            other => Err(not_allowed(&other, place)),
        }
    }
}

sized_set!(DisconnectProperties);

/// AUTH properties [MQTT-3.15.2.2].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthProperties {
    /// The authentication method (the one of the CONNECT).
    pub authentication_method: Option<MqttString>,
    /// This step's authentication data.
    pub authentication_data: Option<Bytes>,
    /// Human-readable diagnostics.
    pub reason_string: Option<MqttString>,
    /// Application-defined pairs.
    pub user_properties: Vec<UserProperty>,
}

impl WriteProperties for AuthProperties {
    fn write_to(&self, sink: &mut impl PropertySink) {
        use PropertyId as Id;
        sink.string(
            Id::AuthenticationMethod,
            self.authentication_method.as_ref(),
        );
        sink.binary(Id::AuthenticationData, self.authentication_data.as_ref());
        sink.string(Id::ReasonString, self.reason_string.as_ref());
        sink.user_properties(&self.user_properties);
    }
}

impl PropertySet for AuthProperties {
    fn apply(&mut self, property: Property, place: &'static str) -> Result<(), DecodeError> {
        let id = property.id();
        match property {
            Property::AuthenticationMethod(v) => {
                set_once(&mut self.authentication_method, v, id, place)
            }
            Property::AuthenticationData(v) => {
                set_once(&mut self.authentication_data, v, id, place)
            }
            Property::ReasonString(v) => set_once(&mut self.reason_string, v, id, place),
            Property::UserProperty(v) => {
                self.user_properties.push(v);
                Ok(())
            }
            other => Err(not_allowed(&other, place)),
        }
    }

    fn check(&self, place: &'static str) -> Result<(), DecodeError> {
        check_authentication(
            &self.authentication_method,
            &self.authentication_data,
            place,
        )
    }
}

sized_set!(AuthProperties);
