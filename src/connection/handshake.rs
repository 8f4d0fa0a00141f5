//! The CONNECT handshake: reading the first packet, deciding whether to accept it (Mosquitto's
//! rules where the specification leaves the choice to the server), and the terms an accepted
//! client gets, which an MQTT 5 CONNACK announces.

use std::num::{NonZeroU16, NonZeroU32};
use std::time::Instant;

use bytes::BytesMut;
use glommio::timer::Timer;

use super::stream::{ReadHalf, WriteHalf};
use super::{read_more, write_and_close, CONNECT_TIMEOUT};
use crate::config::Config;
use crate::listener::{Admission, PerIpRefusal};
use crate::protocol::{
    self, ConnAck, ConnAckProperties, ConnAckV5, ConnectProperties, ConnectReturnCode, ConnectV5,
    DecodeError, MqttString, Packet, ProtocolVersion, ReasonCode, WillProperties,
};
use crate::session::NEVER_EXPIRES;
use crate::shard::Shard;

/// MQTT 3.1 limits client ids to 23 characters.
const MQTT31_MAX_CLIENT_ID: usize = 23;

/// Why the handshake did not produce a CONNECT.
pub(super) enum ConnectFailure {
    /// Answer with a CONNACK refusing the connection in the client's `protocol`, then close.
    Refuse {
        /// The version the answer is encoded in.
        protocol: ProtocolVersion,
        /// Why (an MQTT 3.1/3.1.1 client gets the closest return code).
        reason: ReasonCode,
        /// For the log line.
        why: String,
    },
    /// Close without answering.
    Close(String),
}

/// Reads until the first packet is complete; it must be a CONNECT. An MQTT 3.1/3.1.1 CONNECT
/// is returned as a [`ConnectV5`] without properties (`connect.protocol` tells them apart).
pub(super) async fn read_connect(
    reader: &mut ReadHalf,
    buf: &mut BytesMut,
    max_packet_size: usize,
) -> Result<Box<ConnectV5>, ConnectFailure> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    // The CONNECT is usually in already (see `ReadHalf::read_now`).
    let mut read_now = buf.is_empty();
    loop {
        // Known before decoding, which consumes what it refuses: a CONNECT that fails is
        // answered in its own version when it names one.
        let version = ProtocolVersion::of_connect(buf);
        match protocol::decode(buf, max_packet_size) {
            Ok(Some(Packet::ConnectV5(connect))) => return Ok(connect),
            Ok(Some(Packet::Connect(connect))) => {
                return Ok(Box::new(ConnectV5 {
                    connect: *connect,
                    properties: ConnectProperties::default(),
                    will_properties: WillProperties::default(),
                }))
            }
            Ok(Some(other)) => {
                return Err(ConnectFailure::Close(format!(
                    "first packet must be CONNECT, got {}",
                    other.name()
                )))
            }
            Ok(None) => {}
            Err(DecodeError::UnsupportedProtocolLevel(level)) => {
                return Err(ConnectFailure::Refuse {
                    protocol: ProtocolVersion::V3_1_1,
                    reason: ReasonCode::UnsupportedProtocolVersion,
                    why: format!("unsupported protocol level {level}"),
                })
            }
            Err(error) if version == Some(ProtocolVersion::V5) => {
                return Err(ConnectFailure::Refuse {
                    protocol: ProtocolVersion::V5,
                    reason: error.reason_code(),
                    why: error.to_string(),
                })
            }
            Err(error) => return Err(ConnectFailure::Close(error.to_string())),
        }
        let ready = if std::mem::take(&mut read_now) {
            reader.read_now(buf)
        } else {
            None
        };
        let read = match ready {
            Some(read) => Some(read),
            None => {
                let remaining = deadline.saturating_duration_since(Instant::now());
                futures_lite::future::or(async { Some(read_more(reader, buf).await) }, async {
                    Timer::new(remaining).await;
                    None
                })
                .await
            }
        };
        match read {
            Some(Ok(0)) => return Err(ConnectFailure::Close("closed before CONNECT".into())),
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(ConnectFailure::Close(error.to_string())),
            None => return Err(ConnectFailure::Close("no CONNECT within 10 s".into())),
        }
    }
}

/// The reason for refusing this CONNECT, if any (credentials are checked after this, by the
/// listener).
pub(super) fn check_connect(
    shard: &Shard,
    connect: &ConnectV5,
    admission: Admission,
) -> Option<ReasonCode> {
    let limits = &shard.config.limits;
    let session = &shard.config.session;
    let fields = &connect.connect;
    match admission {
        Admission::Admitted => {}
        Admission::ListenerFull => return Some(ReasonCode::ServerUnavailable),
        Admission::PerIp(PerIpRefusal::TooManyConnections) => {
            return Some(ReasonCode::QuotaExceeded)
        }
        Admission::PerIp(PerIpRefusal::RateExceeded) => {
            return Some(ReasonCode::ConnectionRateExceeded)
        }
    }
    if shard.is_shutting_down() {
        return Some(ReasonCode::ServerUnavailable);
    }
    let id_len = fields.client_id.chars().count();
    match fields.protocol {
        ProtocolVersion::V5 => {
            if id_len == 0 && !session.allow_zero_length_clientid {
                return Some(ReasonCode::ClientIdentifierNotValid);
            }
            // No enhanced authentication method is configured [MQTT-4.12-1].
            if connect.properties.authentication_method.is_some() {
                return Some(ReasonCode::BadAuthenticationMethod);
            }
        }
        ProtocolVersion::V3_1 | ProtocolVersion::V3_1_1 => {
            if id_len == 0
                && (fields.protocol == ProtocolVersion::V3_1
                    || !fields.clean_session
                    || !session.allow_zero_length_clientid)
            {
                return Some(ReasonCode::ClientIdentifierNotValid);
            }
            if fields.protocol == ProtocolVersion::V3_1 && id_len > MQTT31_MAX_CLIENT_ID {
                return Some(ReasonCode::ClientIdentifierNotValid);
            }
            // An MQTT 5 client is told the keep-alive to use instead (see `Terms`).
            let keep_alive = fields.keep_alive;
            if keep_alive < limits.min_keepalive || keep_alive > limits.max_keepalive {
                return Some(ReasonCode::ClientIdentifierNotValid);
            }
        }
    }
    None
}

/// What an accepted client and the broker agreed on: the client's wishes within the broker's
/// limits, and the client's own limits on what it is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Terms {
    /// The keep-alive in force, in seconds (0 = none).
    pub keep_alive: u16,
    /// Seconds the session outlives the connection ([`NEVER_EXPIRES`] for an MQTT 3.1.1
    /// persistent session).
    pub session_expiry: u32,
    /// The largest packet the client accepts.
    pub client_max_packet_size: u32,
    /// QoS 1/2 publishes the client accepts in flight at once.
    pub client_receive_maximum: u16,
    /// Topic aliases hydrant may use in what it sends the client: the client's Topic Alias
    /// Maximum (none when it sent none [MQTT-3.3.2-9]) within `max_topic_alias_out`.
    pub topic_alias_max: u16,
}

impl Terms {
    /// The terms of `connect` under `config`.
    pub fn negotiate(config: &Config, connect: &ConnectV5) -> Self {
        let fields = &connect.connect;
        if fields.protocol != ProtocolVersion::V5 {
            return Self {
                keep_alive: fields.keep_alive,
                session_expiry: if fields.clean_session {
                    0
                } else {
                    NEVER_EXPIRES
                },
                client_max_packet_size: u32::MAX,
                client_receive_maximum: u16::MAX,
                topic_alias_max: 0,
            };
        }
        let limits = &config.limits;
        let properties = &connect.properties;
        Self {
            keep_alive: fields
                .keep_alive
                .clamp(limits.min_keepalive, limits.max_keepalive),
            session_expiry: session_expiry(config, properties.session_expiry()),
            client_max_packet_size: properties
                .maximum_packet_size
                .map_or(u32::MAX, NonZeroU32::get),
            client_receive_maximum: properties.receive_maximum_or_default(),
            topic_alias_max: properties
                .topic_alias_maximum
                .unwrap_or(0)
                .min(u16::try_from(limits.max_topic_alias_out).unwrap_or(u16::MAX)),
        }
    }
}

/// The session expiry interval the broker grants an MQTT 5 client asking for `requested`
/// seconds: at most `persistent_client_expiration` when that is set.
pub(super) fn session_expiry(config: &Config, requested: u32) -> u32 {
    match config.session.persistent_client_expiration {
        0 => requested,
        cap => requested.min(u32::try_from(cap).unwrap_or(u32::MAX)),
    }
}

/// The receive maximum the broker announces: the QoS 1/2 publishes a client may have in flight
/// towards it, `max_inflight_messages` as for the other direction.
pub(super) fn receive_maximum(config: &Config) -> u16 {
    u16::try_from(config.limits.max_inflight_messages).unwrap_or(u16::MAX)
}

/// The CONNACK accepting an MQTT 5 client: the broker's limits and capabilities, and what it
/// chose differently from the client's request [MQTT-3.2.2.3].
pub(super) fn accepting_connack(
    config: &Config,
    connect: &ConnectV5,
    terms: &Terms,
    assigned_client_id: Option<&str>,
    session_present: bool,
) -> ConnAckV5 {
    let requested_expiry = connect.properties.session_expiry();
    let max_packet_size = u32::try_from(config.limits.max_packet_size).unwrap_or(u32::MAX);
    let receive_maximum = receive_maximum(config);
    ConnAckV5 {
        session_present,
        reason: ReasonCode::Success,
        properties: ConnAckProperties {
            session_expiry_interval: (terms.session_expiry != requested_expiry)
                .then_some(terms.session_expiry),
            receive_maximum: NonZeroU16::new(receive_maximum).filter(|max| max.get() != u16::MAX),
            topic_alias_maximum: u16::try_from(config.limits.max_topic_alias)
                .ok()
                .filter(|max| *max > 0),
            maximum_packet_size: NonZeroU32::new(max_packet_size),
            assigned_client_identifier: assigned_client_id
                .and_then(|id| MqttString::try_from(id).ok()),
            retain_available: Some(true),
            wildcard_subscription_available: Some(true),
            subscription_identifiers_available: Some(true),
            shared_subscription_available: Some(true),
            server_keep_alive: (terms.keep_alive != connect.connect.keep_alive)
                .then_some(terms.keep_alive),
            ..ConnAckProperties::default()
        },
    }
}

/// The MQTT 3.1/3.1.1 return code closest to an MQTT 5 refusal.
fn return_code(reason: ReasonCode) -> ConnectReturnCode {
    match reason {
        ReasonCode::UnsupportedProtocolVersion => ConnectReturnCode::UnacceptableProtocolVersion,
        ReasonCode::ClientIdentifierNotValid => ConnectReturnCode::IdentifierRejected,
        ReasonCode::BadUserNameOrPassword => ConnectReturnCode::BadUserNameOrPassword,
        ReasonCode::NotAuthorized | ReasonCode::BadAuthenticationMethod => {
            ConnectReturnCode::NotAuthorized
        }
        _ => ConnectReturnCode::ServerUnavailable,
    }
}

/// Writes a CONNACK refusing the connection for `reason`, in the client's version, and closes.
pub(super) async fn refuse(writer: &mut WriteHalf, protocol: ProtocolVersion, reason: ReasonCode) {
    let mut out = BytesMut::new();
    if protocol == ProtocolVersion::V5 {
        let reason = if reason.allowed_in(protocol::PacketType::ConnAck) {
            reason
        } else {
            ReasonCode::UnspecifiedError
        };
        ConnAckV5 {
            session_present: false,
            reason,
            properties: ConnAckProperties::default(),
        }
        .encode(&mut out);
    } else {
        ConnAck {
            session_present: false,
            code: return_code(reason),
        }
        .encode(&mut out);
    }
    write_and_close(writer, &out).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v5_connect(keep_alive: u16, expiry: Option<u32>) -> ConnectV5 {
        let mut connect = ConnectV5 {
            connect: protocol::Connect {
                protocol: ProtocolVersion::V5,
                clean_session: true,
                keep_alive,
                client_id: "c".into(),
                will: None,
                username: None,
                password: None,
            },
            properties: ConnectProperties::default(),
            will_properties: WillProperties::default(),
        };
        connect.properties.session_expiry_interval = expiry;
        connect
    }

    #[test]
    fn v5_keep_alive_is_clamped_into_the_configured_bounds() {
        let mut config = Config::default();
        config.limits.min_keepalive = 10;
        config.limits.max_keepalive = 100;
        assert_eq!(
            Terms::negotiate(&config, &v5_connect(0, None)).keep_alive,
            10
        );
        assert_eq!(
            Terms::negotiate(&config, &v5_connect(50, None)).keep_alive,
            50
        );
        assert_eq!(
            Terms::negotiate(&config, &v5_connect(500, None)).keep_alive,
            100
        );
        let connect = v5_connect(500, None);
        let terms = Terms::negotiate(&config, &connect);
        let connack = accepting_connack(&config, &connect, &terms, None, false);
        assert_eq!(connack.properties.server_keep_alive, Some(100));
    }

    #[test]
    fn session_expiry_is_capped_by_persistent_client_expiration() {
        let mut config = Config::default();
        assert_eq!(
            Terms::negotiate(&config, &v5_connect(0, Some(u32::MAX))).session_expiry,
            u32::MAX
        );
        config.session.persistent_client_expiration = 60;
        let connect = v5_connect(0, Some(3600));
        let terms = Terms::negotiate(&config, &connect);
        assert_eq!(terms.session_expiry, 60);
        let connack = accepting_connack(&config, &connect, &terms, None, false);
        assert_eq!(connack.properties.session_expiry_interval, Some(60));
        let connect = v5_connect(0, Some(30));
        let terms = Terms::negotiate(&config, &connect);
        let connack = accepting_connack(&config, &connect, &terms, None, false);
        assert_eq!(connack.properties.session_expiry_interval, None);
    }

    #[test]
    fn v3_refusals_use_the_closest_return_code() {
        assert_eq!(
            return_code(ReasonCode::ClientIdentifierNotValid),
            ConnectReturnCode::IdentifierRejected
        );
        assert_eq!(
            return_code(ReasonCode::ServerUnavailable),
            ConnectReturnCode::ServerUnavailable
        );
    }
}
