//! The sessions a message goes to on one core: each session's matching subscriptions merged
//! into one delivery (a message reaches a session once, at the highest QoS among them, with
//! every matching subscription identifier).

use smallvec::SmallVec;

use crate::protocol::{QoS, SubscriptionId};
use crate::session::{SessionState, Subscription};
use crate::shard::SessionKey;
use crate::topic::TopicName;

/// The subscription identifiers of a target (one fits inline; more are found again in the
/// session when the message is delivered, which is rare: overlapping subscriptions with
/// different identifiers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetIds {
    /// No matching subscription has an identifier.
    None,
    /// Every matching subscription with an identifier has this one.
    One(SubscriptionId),
    /// Matching subscriptions have different identifiers.
    Several,
}

/// One session a message is delivered to, from its matching subscriptions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// The session.
    pub key: SessionKey,
    /// The highest QoS among the subscriptions.
    pub qos: QoS,
    /// Whether one of them keeps the RETAIN flag as published.
    pub retain_as_published: bool,
    /// Their identifiers.
    pub ids: TargetIds,
    /// Whether each message must pass the session's ACL check: only when every matching
    /// subscription needs it (one that needs none covers readable topics only).
    pub check_read: bool,
}

impl Target {
    /// The target of one subscription of session `key`.
    pub fn new(key: SessionKey, subscription: &Subscription) -> Self {
        Self {
            key,
            qos: subscription.qos,
            retain_as_published: subscription.retain_as_published,
            ids: subscription.id.map_or(TargetIds::None, TargetIds::One),
            check_read: subscription.check_read,
        }
    }

    /// Folds another matching subscription of the same session into this target.
    fn merge(&mut self, other: &Target) {
        self.qos = self.qos.max(other.qos);
        self.retain_as_published |= other.retain_as_published;
        self.check_read &= other.check_read;
        self.ids = match (self.ids, other.ids) {
            (TargetIds::None, ids) | (ids, TargetIds::None) => ids,
            (TargetIds::One(a), TargetIds::One(b)) if a == b => TargetIds::One(a),
            _ => TargetIds::Several,
        };
    }

    /// The subscription identifiers to send: for `Several`, those of the session's
    /// subscriptions matching `topic` (without the no-local ones of its own messages).
    pub fn subscription_ids(
        &self,
        session: &SessionState,
        topic: &TopicName,
        own_message: bool,
    ) -> SmallVec<[SubscriptionId; 2]> {
        match self.ids {
            TargetIds::None => SmallVec::new(),
            TargetIds::One(id) => SmallVec::from_elem(id, 1),
            TargetIds::Several => {
                let mut ids: SmallVec<[SubscriptionId; 2]> = session
                    .subscriptions
                    .iter()
                    .filter(|(filter, subscription)| {
                        filter.matches(topic) && !(own_message && subscription.no_local)
                    })
                    .filter_map(|(_, subscription)| subscription.id)
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                ids
            }
        }
    }
}

/// Sorts `targets` by session and merges each session's entries into one.
pub fn merge_by_session(targets: &mut Vec<Target>) {
    if targets.len() < 2 {
        return;
    }
    targets.sort_unstable_by_key(|target| target.key);
    targets.dedup_by(|later, kept| {
        if later.key == kept.key {
            kept.merge(later);
            true
        } else {
            false
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(key: SessionKey, qos: QoS, rap: bool, id: Option<u32>) -> Target {
        Target::new(
            key,
            &Subscription {
                qos,
                no_local: false,
                retain_as_published: rap,
                id: id.and_then(SubscriptionId::new),
                check_read: false,
            },
        )
    }

    #[test]
    fn a_session_gets_one_target_with_the_highest_qos_and_every_option() {
        let mut targets = vec![
            target(2, QoS::AtMostOnce, false, Some(7)),
            target(1, QoS::AtLeastOnce, false, None),
            target(2, QoS::ExactlyOnce, true, Some(7)),
            target(1, QoS::AtMostOnce, false, Some(3)),
        ];
        merge_by_session(&mut targets);
        assert_eq!(
            targets,
            [
                target(1, QoS::AtLeastOnce, false, Some(3)),
                target(2, QoS::ExactlyOnce, true, Some(7)),
            ]
        );
        let mut targets = vec![
            target(1, QoS::AtMostOnce, false, Some(1)),
            target(1, QoS::AtMostOnce, false, Some(2)),
        ];
        merge_by_session(&mut targets);
        assert_eq!(targets[0].ids, TargetIds::Several);
    }
}
