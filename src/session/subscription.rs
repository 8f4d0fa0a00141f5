//! One subscription of a session as deliveries through it need it: the granted QoS and the
//! MQTT 5 options that shape each delivery.

use crate::protocol::{QoS, SubscriptionId, SubscriptionOptions};

/// A granted subscription (the value of the session's subscription map and of its core's
/// trie; 8 bytes). Retain handling is not kept: it only matters when the SUBSCRIBE arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Subscription {
    /// The highest QoS delivered through it.
    pub qos: QoS,
    /// Messages published by this session's own client are not delivered through it
    /// (MQTT 5 No Local).
    pub no_local: bool,
    /// Deliveries keep the RETAIN flag they were published with (MQTT 5 Retain As Published).
    pub retain_as_published: bool,
    /// Sent with every message delivered through it (MQTT 5 Subscription Identifier).
    pub id: Option<SubscriptionId>,
    /// The ACL denies some topics the filter matches: each delivery is checked
    /// ([`crate::auth::SubscriptionAccess::CheckEachMessage`]).
    pub check_read: bool,
}

impl Subscription {
    /// The subscription an MQTT 3.1/3.1.1 client gets: `qos`, nothing else.
    pub fn with_qos(qos: QoS) -> Self {
        Self {
            qos,
            no_local: false,
            retain_as_published: false,
            id: None,
            check_read: false,
        }
    }

    /// The subscription granted for `options` (QoS as granted) and a SUBSCRIBE's identifier.
    pub fn granted(qos: QoS, options: &SubscriptionOptions, id: Option<SubscriptionId>) -> Self {
        Self {
            qos,
            no_local: options.no_local,
            retain_as_published: options.retain_as_published,
            id,
            check_read: false,
        }
    }
}

/// Bits of the subscription options byte as [`Subscription::options_byte`] writes it (the
/// SUBSCRIBE layout, retain handling left out).
const OPTION_QOS: u8 = 0b0000_0011;
const OPTION_NO_LOCAL: u8 = 0b0000_0100;
const OPTION_RETAIN_AS_PUBLISHED: u8 = 0b0000_1000;

impl Subscription {
    /// The options as a SUBSCRIBE's options byte carries them (granted QoS, no local, retain
    /// as published): how a persistent session's subscription is written down.
    pub fn options_byte(&self) -> u8 {
        let mut byte = self.qos as u8;
        if self.no_local {
            byte |= OPTION_NO_LOCAL;
        }
        if self.retain_as_published {
            byte |= OPTION_RETAIN_AS_PUBLISHED;
        }
        byte
    }

    /// The subscription an options byte written by [`Subscription::options_byte`] and an
    /// identifier describe; `None` for an invalid QoS or identifier.
    pub fn from_options_byte(byte: u8, id: Option<u32>) -> Option<Self> {
        let qos = QoS::from_u8(byte & OPTION_QOS)?;
        let id = match id {
            None => None,
            Some(value) => Some(SubscriptionId::new(value)?),
        };
        Some(Self {
            qos,
            no_local: byte & OPTION_NO_LOCAL != 0,
            retain_as_published: byte & OPTION_RETAIN_AS_PUBLISHED != 0,
            id,
            check_read: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_survive_their_byte() {
        let subscription = Subscription {
            qos: QoS::ExactlyOnce,
            no_local: true,
            retain_as_published: true,
            id: SubscriptionId::new(77),
            check_read: false,
        };
        let byte = subscription.options_byte();
        assert_eq!(
            Subscription::from_options_byte(byte, Some(77)),
            Some(subscription)
        );
        assert_eq!(
            Subscription::from_options_byte(1, None),
            Some(Subscription::with_qos(QoS::AtLeastOnce))
        );
        assert_eq!(Subscription::from_options_byte(3, None), None);
        assert_eq!(Subscription::from_options_byte(1, Some(0)), None);
    }

    #[test]
    fn a_subscription_takes_eight_bytes() {
        assert_eq!(std::mem::size_of::<Subscription>(), 8);
    }
}
