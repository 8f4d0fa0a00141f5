//! Quality of service levels and packet identifiers: the vocabulary of delivery guarantees.

/// Identifies an in-flight QoS 1/2 exchange or a (UN)SUBSCRIBE; never 0 on the wire
/// [MQTT-2.3.1-1], so the type rules 0 out.
pub type PacketId = std::num::NonZeroU16;

/// The delivery guarantee of a message or subscription. Ordered, so that the QoS a subscriber
/// receives is `min(published, granted)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum QoS {
    /// Fire and forget.
    AtMostOnce = 0,
    /// Acknowledged with PUBACK; may be delivered twice.
    AtLeastOnce = 1,
    /// Four-way handshake (PUBREC, PUBREL, PUBCOMP); delivered exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// The level for a wire value, or `None` for 3 and above.
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_values_round_trip_and_three_is_refused() {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            assert_eq!(QoS::from_u8(qos as u8), Some(qos));
        }
        assert_eq!(QoS::from_u8(3), None);
        assert_eq!(QoS::from_u8(0x80), None);
        assert!(QoS::AtMostOnce < QoS::ExactlyOnce);
    }
}
