//! The subscriptions of a session as deliveries through them need them: by filter, the granted
//! QoS and the MQTT 5 options that shape each delivery.

use super::SessionMap;
use crate::protocol::{QoS, SubscriptionId, SubscriptionOptions};
use crate::topic::TopicFilter;

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

/// A session's granted subscriptions, by filter. Many clients never subscribe (publishers,
/// idle devices) and a broker keeps a session per client: without a subscription the map is
/// one pointer, boxed with the first one and given back with the last.
#[derive(Debug, Default)]
pub struct Subscriptions {
    /// `None` while there is no subscription.
    map: Option<Box<SessionMap<TopicFilter, Subscription>>>,
}

impl Subscriptions {
    /// Records `subscription` for `filter`; returns the one it replaces, if any.
    pub fn insert(
        &mut self,
        filter: TopicFilter,
        subscription: Subscription,
    ) -> Option<Subscription> {
        self.map
            .get_or_insert_with(Box::default)
            .insert(filter, subscription)
    }

    /// Forgets the subscription for `filter`; returns it, if there was one.
    pub fn remove(&mut self, filter: &TopicFilter) -> Option<Subscription> {
        let map = self.map.as_mut()?;
        let removed = map.remove(filter);
        if map.is_empty() {
            self.map = None;
        }
        removed
    }

    /// The subscription for `filter`.
    pub fn get(&self, filter: &TopicFilter) -> Option<&Subscription> {
        self.map.as_ref()?.get(filter)
    }

    /// The subscription for `filter`, to change it.
    pub fn get_mut(&mut self, filter: &TopicFilter) -> Option<&mut Subscription> {
        self.map.as_mut()?.get_mut(filter)
    }

    /// Whether there is a subscription for `filter`.
    pub fn contains_key(&self, filter: &TopicFilter) -> bool {
        self.get(filter).is_some()
    }

    /// How many subscriptions there are.
    pub fn len(&self) -> usize {
        self.map.as_ref().map_or(0, |map| map.len())
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.map.is_none()
    }

    /// The filters subscribed to, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &TopicFilter> {
        self.iter().map(|(filter, _)| filter)
    }

    /// The subscriptions and their filters, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&TopicFilter, &Subscription)> {
        self.map.iter().flat_map(|map| map.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_subscription_takes_one_pointer_and_the_last_one_gives_the_map_back() {
        // One per session, and many sessions never subscribe (issue 3's idle memory): the map
        // must not come back inline.
        assert_eq!(
            std::mem::size_of::<Subscriptions>(),
            std::mem::size_of::<usize>()
        );
        let mut subscriptions = Subscriptions::default();
        let filter = |text: &str| TopicFilter::try_from(text).unwrap();
        assert!(subscriptions.is_empty());
        assert_eq!(subscriptions.remove(&filter("a/b")), None);
        assert!(subscriptions.map.is_none());
        let qos0 = Subscription::with_qos(QoS::AtMostOnce);
        let qos1 = Subscription::with_qos(QoS::AtLeastOnce);
        assert_eq!(subscriptions.insert(filter("a/b"), qos0), None);
        assert_eq!(subscriptions.insert(filter("a/#"), qos0), None);
        assert_eq!(subscriptions.insert(filter("a/b"), qos1), Some(qos0));
        assert_eq!(subscriptions.len(), 2);
        assert!(subscriptions.contains_key(&filter("a/#")));
        assert_eq!(subscriptions.get(&filter("a/b")), Some(&qos1));
        if let Some(subscription) = subscriptions.get_mut(&filter("a/#")) {
            subscription.check_read = true;
        }
        assert!(subscriptions
            .get(&filter("a/#"))
            .is_some_and(|s| s.check_read));
        let mut keys: Vec<&str> = subscriptions.keys().map(TopicFilter::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["a/#", "a/b"]);
        assert_eq!(subscriptions.iter().count(), 2);
        assert_eq!(subscriptions.remove(&filter("a/b")), Some(qos1));
        assert!(!subscriptions.is_empty());
        assert_eq!(
            subscriptions.remove(&filter("a/#")).map(|s| s.qos),
            Some(QoS::AtMostOnce)
        );
        assert!(subscriptions.is_empty());
        assert!(subscriptions.map.is_none());
        assert_eq!(subscriptions.get(&filter("a/b")), None);
    }

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
