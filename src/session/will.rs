//! Will messages published after a delay (MQTT 5 Will Delay Interval [MQTT-3.1.3.2.2]): the
//! will of a connection that ended waits in its session until the delay passes or the session
//! ends, whichever comes first, and is cancelled when a new connection resumes the session.

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use crate::message::Message;
use crate::shard::{ConnId, SessionKey, Shard, ShardState};

/// A will waiting in its session for its delay to pass.
#[derive(Debug)]
pub struct DelayedWill {
    /// The will message.
    pub message: Message,
    /// Seconds to wait after the connection ended.
    pub delay: u32,
}

impl Shard {
    /// Keeps the will of connection `conn` of session `key` until its delay of `delay`
    /// seconds passes (it is published then by [`Shard::publish_due_wills`]). Returns the
    /// will when it must be published now instead: the session ends with the connection or
    /// has ended already. A session already resumed by a newer connection drops it.
    pub fn defer_will(
        &self,
        key: SessionKey,
        conn: ConnId,
        message: Message,
        delay: u32,
    ) -> Option<Message> {
        let mut state = self.state.borrow_mut();
        let Some(slot) = state.sessions.get_mut(&key) else {
            return Some(message);
        };
        if slot.last_conn == conn && slot.state.ends_with_connection() {
            return Some(message);
        }
        if slot.last_conn == conn || slot.conn.is_none() {
            slot.state.pending_will = Some(Box::new(DelayedWill { message, delay }));
        }
        None
    }

    /// Schedules the pending will of session `key`, offline since `since`: it is due when
    /// its delay or the session's expiry interval passes, whichever is first.
    pub(super) fn schedule_will(state: &mut ShardState, key: SessionKey, since: Instant) {
        let Some(slot) = state.sessions.get(&key) else {
            return;
        };
        let Some(will) = &slot.state.pending_will else {
            return;
        };
        let seconds = will.delay.min(slot.state.expiry_interval);
        if let Some(due) = since.checked_add(Duration::from_secs(u64::from(seconds))) {
            state.delayed_wills.push(Reverse((due, key, since)));
        }
    }

    /// Publishes the wills whose delay has passed and those of sessions that ended; run
    /// periodically.
    pub async fn publish_due_wills(&self) {
        let due = {
            let mut state = self.state.borrow_mut();
            let now = Instant::now();
            let mut due = std::mem::take(&mut state.wills_due);
            while let Some(&Reverse((deadline, key, since))) = state.delayed_wills.peek() {
                if deadline > now {
                    break;
                }
                state.delayed_wills.pop();
                let will = state
                    .sessions
                    .get_mut(&key)
                    .filter(|slot| slot.disconnected_at == Some(since))
                    .and_then(|slot| {
                        let will = slot.state.pending_will.take();
                        if will.is_some() {
                            self.persist_will_gone(&mut slot.state);
                        }
                        will
                    });
                if let Some(will) = will {
                    due.push((key, will.message));
                }
            }
            // Entries of sessions that came back wait for their due time; keep the heap
            // proportional to the sessions really offline.
            if state.delayed_wills.len() > 2 * state.offline_count + 64 {
                let ShardState {
                    delayed_wills,
                    sessions,
                    ..
                } = &mut *state;
                delayed_wills.retain(|Reverse((_, key, since))| {
                    sessions.get(key).is_some_and(|slot| {
                        slot.disconnected_at == Some(*since) && slot.state.pending_will.is_some()
                    })
                });
            }
            due
        };
        let now = Instant::now();
        for (key, message) in due {
            self.publish(message.published_at(now), key).await;
        }
    }
}
