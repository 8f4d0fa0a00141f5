//! Keeping a core's subscriptions within its listeners' ACLs: after a SIGHUP reload and when a
//! client resumes its session under another identity, each subscription is checked again; one
//! no longer allowed is removed, and whether its deliveries need a check per message is
//! brought up to date.

use std::rc::Rc;

use crate::auth::SubscriptionAccess;
use crate::listener::{AccessFiles, ClientAccess};
use crate::shard::{SessionKey, Shard};
use crate::topic::TopicFilter;

impl Shard {
    /// Installs files the signal thread reloaded, if they are newer than those in force, and
    /// re-checks every subscription against the new rules. Called on every clock tick.
    pub fn pick_up_reload(&self) {
        let Some(source) = &self.reload else {
            return;
        };
        let Some(files) = source.newer_than(self.access_generation.get()) else {
            return;
        };
        self.apply_access_files(&files);
    }

    fn apply_access_files(&self, files: &AccessFiles) {
        self.access_generation.set(files.generation);
        for (listener, loaded) in self.listeners.borrow().iter().zip(&files.listeners) {
            listener.apply(loaded);
        }
        let keys: Vec<SessionKey> = self
            .state
            .borrow()
            .sessions
            .iter()
            .filter(|(_, slot)| slot.access.is_some())
            .map(|(key, _)| *key)
            .collect();
        let mut removed = 0;
        for key in keys {
            removed += self.enforce_acl(key);
        }
        tracing::info!(
            core = self.id,
            generation = files.generation,
            subscriptions_removed = removed,
            "configuration reloaded"
        );
    }

    /// Checks every subscription of session `key` against its client's ACL: removes those no
    /// longer allowed and updates whether deliveries need a check. Returns how many were
    /// removed.
    pub fn enforce_acl(&self, key: SessionKey) -> usize {
        let (refused, recheck) = {
            let state = self.state.borrow();
            let Some(slot) = state.sessions.get(&key) else {
                return 0;
            };
            let access: Option<&Rc<ClientAccess>> = slot.access.as_ref();
            let mut refused: Vec<TopicFilter> = Vec::new();
            let mut recheck = Vec::new();
            for (filter, subscription) in slot.state.subscriptions.iter() {
                let verdict = access.map_or(SubscriptionAccess::Readable, |access| {
                    access.subscription_access(filter)
                });
                let check_read = verdict == SubscriptionAccess::CheckEachMessage;
                if !verdict.is_allowed() {
                    refused.push(filter.clone());
                } else if subscription.check_read != check_read {
                    let mut updated = *subscription;
                    updated.check_read = check_read;
                    recheck.push((filter.clone(), updated));
                }
            }
            (refused, recheck)
        };
        for (filter, subscription) in recheck {
            self.update_subscription(key, &filter, subscription);
        }
        for filter in &refused {
            tracing::info!(
                client_id = %self.client_id_of(key).as_deref().unwrap_or(""),
                %filter,
                "subscription removed: no longer allowed by the ACL"
            );
            self.unsubscribe(key, filter);
        }
        refused.len()
    }

    fn client_id_of(&self, key: SessionKey) -> Option<std::sync::Arc<str>> {
        self.state
            .borrow()
            .sessions
            .get(&key)
            .map(|slot| slot.state.client_id.clone())
    }
}
