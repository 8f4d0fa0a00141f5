//! The bound on the bytes of messages queued on one core, all clients together
//! (`max_queued_bytes_total`, split evenly between the cores).
//!
//! Per-client limits (`max_queued_messages`, `max_queued_bytes`) bound one slow consumer, but
//! not ten thousand of them, nor thousands of offline persistent sessions: each may hold its
//! whole allowance at once. The budget bounds their sum. Every queue of a core charges the
//! bytes it holds to the core's budget and gives them back as they leave (written, delivered,
//! dropped, or the queue dropped). Past the budget, a message for a queue that already holds
//! [`QUEUE_FLOOR`] bytes or more is dropped and counted (`max_queued_bytes_total`); a queue
//! holding less (a client that keeps up: its writer empties the queue every turn of the event
//! loop) still takes it, so the backlog of slow clients never starves the others, and what
//! the budget can be overdrawn by is under one floor plus one message per queue.
//!
//! Bytes are counted per queue (topic and payload, as for `max_queued_bytes`), even though
//! the queues of a fan-out share one payload: the bound is on what the queues could pin if no
//! payload were shared, which over-counts and therefore errs on the safe side.

use std::cell::Cell;
use std::rc::Rc;

/// Bytes a queue may hold past the budget: one write batch of a connection's writer, what a
/// client that keeps up may have waiting after a burst.
pub const QUEUE_FLOOR: usize = 64 * 1024;

/// One core's account of queued bytes. Cheap to clone: every queue of the core holds a handle
/// to the same account. Never crosses cores (each core builds its own).
#[derive(Clone, Debug)]
pub struct QueueBudget {
    account: Rc<Account>,
}

#[derive(Debug)]
struct Account {
    /// Bytes the queues may hold together before they refuse more; 0 = no bound.
    limit: usize,
    /// Bytes they hold now.
    used: Cell<usize>,
}

impl QueueBudget {
    /// A budget of `limit` bytes (0 = no bound).
    #[must_use]
    pub fn new(limit: usize) -> Self {
        QueueBudget {
            account: Rc::new(Account {
                limit,
                used: Cell::new(0),
            }),
        }
    }

    /// A budget with no bound, for queues made outside a core (tests, tools).
    #[must_use]
    pub fn unbounded() -> Self {
        Self::new(0)
    }

    /// Whether a queue already holding `held` bytes may take `bytes` more: always when the
    /// budget has room for them or the queue holds less than [`QUEUE_FLOOR`], never otherwise.
    #[must_use]
    pub fn admits(&self, held: usize, bytes: usize) -> bool {
        let account = &self.account;
        held < QUEUE_FLOOR
            || account.limit == 0
            || account.used.get().saturating_add(bytes) <= account.limit
    }

    /// Records `bytes` more queued (whether or not they were admitted: frames the protocol
    /// requires are charged too, so that the account is the true total).
    pub fn charge(&self, bytes: usize) {
        let used = &self.account.used;
        used.set(used.get().saturating_add(bytes));
    }

    /// Records `bytes` that left a queue.
    pub fn release(&self, bytes: usize) {
        let used = &self.account.used;
        used.set(used.get().saturating_sub(bytes));
    }

    /// Bytes queued on the core now.
    #[must_use]
    pub fn used(&self) -> usize {
        self.account.used.get()
    }

    /// The bound, in bytes (0 = none).
    #[must_use]
    pub fn limit(&self) -> usize {
        self.account.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_queue_is_always_admitted_a_long_one_only_within_the_budget() {
        let long = QUEUE_FLOOR;
        let budget = QueueBudget::new(100);
        assert!(budget.admits(long, 60));
        budget.charge(60);
        assert!(budget.admits(long, 40), "exactly the budget is within it");
        assert!(!budget.admits(long, 41));
        assert!(
            budget.admits(0, 1_000),
            "an empty queue takes a message of any size"
        );
        assert!(
            budget.admits(QUEUE_FLOOR - 1, 1_000),
            "so does one under the floor"
        );
        budget.charge(1_000);
        assert_eq!(budget.used(), 1_060);
        assert!(!budget.admits(long, 1));
        budget.release(1_000);
        budget.release(60);
        assert_eq!(budget.used(), 0);
        assert!(budget.admits(long, 100));
    }

    #[test]
    fn clones_share_one_account_and_no_bound_admits_everything() {
        let budget = QueueBudget::new(10);
        let other = budget.clone();
        other.charge(10);
        assert!(!budget.admits(QUEUE_FLOOR, 1));
        budget.release(10);
        assert_eq!(other.used(), 0);
        let unbounded = QueueBudget::unbounded();
        unbounded.charge(usize::MAX);
        assert!(unbounded.admits(usize::MAX, usize::MAX));
        assert_eq!(unbounded.limit(), 0);
    }

    #[test]
    fn releasing_more_than_was_charged_stops_at_zero() {
        let budget = QueueBudget::new(10);
        budget.charge(3);
        budget.release(5);
        assert_eq!(budget.used(), 0);
    }
}
