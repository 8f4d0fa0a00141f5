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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_takes_eight_bytes() {
        assert_eq!(std::mem::size_of::<Subscription>(), 8);
    }
}
