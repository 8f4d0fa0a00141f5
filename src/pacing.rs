//! Holding back a core's readers while one of its clients that keeps up is falling behind.
//!
//! A connection's task writes its client's queue once per turn of the core's event loop, and
//! every other task of the core runs once in between: each publisher decodes and routes a
//! whole read's worth of packets, and each link from another core hands over what its channel
//! holds. When many of them feed one subscriber (fan-in), one round of the others brings that
//! subscriber more QoS 0 messages than its queue holds, though its socket takes everything it
//! is given: the rest is decoded, matched and dropped, work done for nothing on the busy core.
//!
//! So when a queue holds half its limit or more while its client keeps up (its socket took
//! every batch since the queue was last written out whole), the queue counts itself *behind*,
//! and while any queue of the core is behind, the core's readers (connections reading their
//! client, links reading another core) wait before their next read. The subscriber's task
//! runs and writes, and the readers go on. The client that publishes sees TCP flow control,
//! as a client of a busy broker does. A client that does not keep up (its socket or transport
//! refused a write) holds no one back: its queue's limits drop what it cannot take, as before.
//! A session queue of QoS 1/2 messages counts too (see `OutboundQueue::pace_flow`), unless its
//! client acknowledges too slowly to drain it soon (see `session::ack_rate`).
//!
//! Readers take turns: one that had to wait reads before any that did not, and keeps its turn
//! if a queue is behind again before it could read. Otherwise the readers that happen to run
//! first after a wait would fill the queue again each time and starve the others.
//!
//! Nothing waits for long: should queues stay behind for a whole tick of the core's clock with
//! none of them catching up, their clients are not keeping up after all (a QoS 1 subscriber
//! that stopped acknowledging, say). Those queues are blamed: they stop counting until they
//! have fallen below their mark again, and the readers go on, held back only by the others.
//! The same happens when the readers have been held for [`HOLD_LIMIT_TICKS`] ticks in a row,
//! whatever caught up meanwhile: one stuck queue among others that do catch up cannot hold
//! the core's readers for longer.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Most ticks of the core's clock (100 ms each) its readers are held in a row before every
/// queue behind is blamed, even while some of them catch up.
pub const HOLD_LIMIT_TICKS: u32 = 10;

/// One core's count of queues behind, and the readers waiting for it to fall to zero. Cheap to
/// clone: every queue of the core holds a handle to the same count. Never crosses cores.
#[derive(Clone, Debug, Default)]
pub struct Pacing {
    state: Rc<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Queues of the core that are behind.
    behind: Cell<usize>,
    /// Readers that waited and were let go, but have not read yet: they read before anyone
    /// who did not wait.
    first: RefCell<Vec<Waker>>,
    /// Readers waiting for their turn after them.
    waiting: RefCell<Vec<Waker>>,
    /// Readers let go and not yet done (their tickets are `Turn::First`).
    first_count: Cell<usize>,
    /// Readers waiting (their tickets are `Turn::Waiting`).
    waiting_count: Cell<usize>,
    /// Counts the times waiting readers were let go: a ticket of an earlier round is first.
    round: Cell<u32>,
    /// A queue caught up since the last clock tick.
    progressed: Cell<bool>,
    /// Some queue was behind at the last clock tick.
    held_at_tick: Cell<bool>,
    /// The count fell to zero (the readers were let go) since the last clock tick.
    freed: Cell<bool>,
    /// Clock ticks the readers have been held in a row.
    held_ticks: Cell<u32>,
    /// Counts the times the queues behind were blamed (see [`Pacing::tick`]): a queue counted
    /// in an earlier era is no longer counted.
    era: Cell<u32>,
}

/// A reader's place among the waiting readers of its core (see [`Pacing::poll_go`]), starting
/// at its default. Dropping it gives the place up.
#[derive(Debug, Default)]
pub struct WaitTicket {
    /// The core's count, the round the reader began to wait in, and the round its waker was
    /// last listed in (so that it is listed once per round however often it is polled).
    place: Option<(Pacing, u32, u32)>,
}

impl WaitTicket {
    /// Leaves the wait: the reader read, or will not read any more (its connection is
    /// closing), so those behind it need not wait for it.
    pub fn leave(&mut self) {
        if let Some((pacing, round, _)) = self.place.take() {
            pacing.leave(round);
        }
    }
}

impl Drop for WaitTicket {
    fn drop(&mut self) {
        self.leave();
    }
}

impl Pacing {
    /// A count with no queue behind.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the reader holding `ticket` may read now; otherwise registers `cx` to be woken
    /// when it may.
    ///
    /// Readers read in turns: one that had to wait reads before any that did not, and keeps
    /// its turn when a queue is behind again before it could read; so the readers that happen
    /// to run first cannot starve the others.
    pub fn poll_go(&self, cx: &Context<'_>, ticket: &mut WaitTicket) -> Poll<()> {
        let state = &self.state;
        let free = state.behind.get() == 0;
        let now = state.round.get();
        match &mut ticket.place {
            Some((_, round, listed)) if *round != now => {
                // Let go earlier: first in line.
                if free {
                    ticket.leave();
                    return Poll::Ready(());
                }
                if *listed != now {
                    *listed = now;
                    state.first.borrow_mut().push(cx.waker().clone());
                }
                return Poll::Pending;
            }
            // Still waiting for its round (polled for another reason).
            Some(_) => return Poll::Pending,
            None => {}
        }
        if free && state.first_count.get() == 0 {
            return Poll::Ready(());
        }
        ticket.place = Some((self.clone(), now, now));
        state.waiting_count.set(state.waiting_count.get() + 1);
        state.waiting.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    }

    /// Waits until readers may read (for a task that does nothing else meanwhile).
    pub async fn go(&self) {
        let mut ticket = WaitTicket::default();
        futures_lite::future::poll_fn(|cx| self.poll_go(cx, &mut ticket)).await;
    }

    /// Whether any queue is behind (and readers are held back).
    #[must_use]
    pub fn is_holding(&self) -> bool {
        self.state.behind.get() != 0
    }

    /// Counts one more queue behind; returns the era it is counted in.
    fn fall_behind(&self) -> u32 {
        let behind = &self.state.behind;
        behind.set(behind.get() + 1);
        self.state.era.get()
    }

    /// Counts one queue less behind, if it was counted in the current `era` (one of an earlier
    /// era was blamed and is counted no longer); the last one lets the readers go.
    fn catch_up(&self, era: u32) {
        let state = &self.state;
        if era != state.era.get() {
            return;
        }
        let behind = state.behind.get().saturating_sub(1);
        state.behind.set(behind);
        state.progressed.set(true);
        if behind == 0 {
            state.freed.set(true);
            self.let_go();
        }
    }

    /// Whether a queue counted in `era` still is.
    fn counts(&self, era: u32) -> bool {
        era == self.state.era.get()
    }

    /// A reader of `round` leaves the wait; when the last reader let go has read, those that
    /// waited behind it are let go in turn.
    fn leave(&self, round: u32) {
        let state = &self.state;
        if round == state.round.get() {
            state
                .waiting_count
                .set(state.waiting_count.get().saturating_sub(1));
            return;
        }
        let first = state.first_count.get().saturating_sub(1);
        state.first_count.set(first);
        if first == 0 && state.behind.get() == 0 {
            self.let_go();
        }
    }

    /// Called once per tick of the core's clock: queues behind with none catching up since
    /// the last tick, or with the readers held for [`HOLD_LIMIT_TICKS`] ticks in a row, are
    /// blamed (they stop counting until they fall below their mark) and the readers go on.
    pub fn tick(&self) {
        let state = &self.state;
        let holding = state.behind.get() != 0;
        let held_before = state.held_at_tick.replace(holding);
        // Both flags cover the tick just over, whatever it found.
        let freed = state.freed.replace(false);
        let progressed = state.progressed.replace(false);
        let held_throughout = holding && held_before && !freed;
        let held_ticks = if held_throughout {
            state.held_ticks.get() + 1
        } else {
            0
        };
        state.held_ticks.set(held_ticks);
        let stuck = held_throughout && !progressed;
        if stuck || held_ticks >= HOLD_LIMIT_TICKS {
            tracing::debug!(
                behind = state.behind.get(),
                held_ticks,
                "queues behind too long: no longer counted until they fall below their mark"
            );
            state.era.set(state.era.get().wrapping_add(1));
            state.behind.set(0);
            state.held_at_tick.set(false);
            state.held_ticks.set(0);
            self.let_go();
        }
    }

    /// Lets every waiting reader go: those already first before the others, which become
    /// first themselves.
    fn let_go(&self) {
        let state = &self.state;
        state.round.set(state.round.get().wrapping_add(1));
        state
            .first_count
            .set(state.first_count.get() + state.waiting_count.replace(0));
        let first = std::mem::take(&mut *state.first.borrow_mut());
        let waiting = std::mem::take(&mut *state.waiting.borrow_mut());
        for waker in first.into_iter().chain(waiting) {
            waker.wake();
        }
    }
}

/// One queue's place in its core's [`Pacing`]: whether it counts as behind. The queue decides
/// what depth is behind and says so after every change ([`QueuePace::update`]).
#[derive(Debug, Default)]
pub struct QueuePace {
    /// The core's count (`None`: the queue is unpaced, or its connection is closing).
    pacing: Option<Pacing>,
    /// The era of `pacing` the queue was counted as behind in, while `counted` (see
    /// [`Pacing::tick`]): a queue of an earlier era was blamed for a stall, and is not counted
    /// again until it falls below its mark.
    era: u32,
    /// Counted in `pacing` as behind (kept apart from `era`, which an `Option` would pad to
    /// 8 bytes: every connection's queue holds one of these).
    counted: bool,
    /// The client's socket (or transport) refused part of a write: the client does not keep
    /// up, and the queue never counts as behind until it has been written out whole again.
    refused: bool,
}

impl QueuePace {
    /// A queue counted in `pacing`.
    pub fn new(pacing: Pacing) -> Self {
        Self {
            pacing: Some(pacing),
            era: 0,
            counted: false,
            refused: false,
        }
    }

    /// Notes whether the queue is past its mark, after frames were queued or taken out.
    pub fn update(&mut self, past_mark: bool) {
        if !past_mark {
            self.release();
            return;
        }
        if self.counted || self.refused {
            return;
        }
        if let Some(pacing) = &self.pacing {
            self.era = pacing.fall_behind();
            self.counted = true;
        }
    }

    /// Whether the queue counts as behind now.
    #[must_use]
    pub fn is_counted(&self) -> bool {
        self.counted
            && self
                .pacing
                .as_ref()
                .is_some_and(|pacing| pacing.counts(self.era))
    }

    /// Notes that the queue was written out whole (`true`), or that the client's socket or
    /// transport refused part of a write (`false`: the client is not keeping up).
    pub fn written(&mut self, whole: bool) {
        self.refused = !whole;
        if !whole {
            self.release();
        }
    }

    /// Stops counting the queue for good (its connection is closing).
    pub fn stop(&mut self) {
        self.release();
        self.pacing = None;
    }

    fn release(&mut self) {
        if std::mem::take(&mut self.counted) {
            if let Some(pacing) = &self.pacing {
                pacing.catch_up(self.era);
            }
        }
    }
}

impl Drop for QueuePace {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    /// A reader: its ticket and how often it was woken.
    #[derive(Default)]
    struct Reader {
        ticket: WaitTicket,
        woken: Arc<CountingWaker>,
    }

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Reader {
        fn poll(&mut self, pacing: &Pacing) -> Poll<()> {
            let waker = Waker::from(self.woken.clone());
            pacing.poll_go(&Context::from_waker(&waker), &mut self.ticket)
        }

        fn woken(&self) -> usize {
            self.woken.0.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn a_queue_past_its_mark_holds_readers_until_it_is_drained() {
        let pacing = Pacing::new();
        let mut queue = QueuePace::new(pacing.clone());
        let mut reader = Reader::default();
        queue.update(false);
        assert!(reader.poll(&pacing).is_ready());
        queue.update(true);
        assert!(reader.poll(&pacing).is_pending());
        assert!(reader.poll(&pacing).is_pending(), "polled again");
        assert_eq!(pacing.state.waiting.borrow().len(), 1, "registered once");
        queue.update(true);
        assert!(pacing.is_holding(), "still past the mark");
        assert_eq!(reader.woken(), 0);
        queue.update(false);
        assert_eq!(reader.woken(), 1, "woken once");
        assert!(reader.poll(&pacing).is_ready());
        assert!(reader.poll(&pacing).is_ready(), "nothing held any more");
    }

    /// A queue that fell behind and caught up, a reader that waited meanwhile and was let go
    /// (not yet polled), and a reader that did not wait.
    fn one_reader_let_go() -> (Pacing, QueuePace, Reader, Reader) {
        let pacing = Pacing::new();
        let mut queue = QueuePace::new(pacing.clone());
        let mut waited = Reader::default();
        queue.update(true);
        assert!(waited.poll(&pacing).is_pending());
        queue.update(false);
        (pacing, queue, waited, Reader::default())
    }

    #[test]
    fn a_reader_that_waited_reads_before_one_that_did_not() {
        let (pacing, _queue, mut waited, mut late) = one_reader_let_go();
        assert!(late.poll(&pacing).is_pending(), "behind the reader let go");
        assert!(waited.poll(&pacing).is_ready());
        assert_eq!(late.woken(), 1, "its turn once the other read");
        assert!(late.poll(&pacing).is_ready());
    }

    #[test]
    fn a_reader_let_go_keeps_its_turn_when_a_queue_is_behind_again() {
        let (pacing, mut queue, mut waited, mut late) = one_reader_let_go();
        // Another reader filled the queue again before this one ran.
        queue.update(true);
        for _ in 0..3 {
            assert!(waited.poll(&pacing).is_pending());
        }
        assert_eq!(pacing.state.first.borrow().len(), 1, "listed once");
        assert!(late.poll(&pacing).is_pending());
        queue.update(false);
        assert_eq!(waited.woken(), 2);
        assert_eq!(late.woken(), 1);
        assert!(waited.poll(&pacing).is_ready());
        assert!(late.poll(&pacing).is_ready());
    }

    #[test]
    fn a_reader_that_goes_away_gives_its_turn_up() {
        let (pacing, _queue, gone, mut late) = one_reader_let_go();
        assert!(late.poll(&pacing).is_pending());
        drop(gone);
        assert_eq!(late.woken(), 1);
        assert!(late.poll(&pacing).is_ready());
    }

    #[test]
    fn readers_go_once_every_queue_behind_caught_up() {
        let pacing = Pacing::new();
        let mut first = QueuePace::new(pacing.clone());
        let mut second = QueuePace::new(pacing.clone());
        first.update(true);
        second.update(true);
        first.update(false);
        assert!(pacing.is_holding());
        second.update(false);
        assert!(!pacing.is_holding());
    }

    #[test]
    fn a_client_whose_socket_refuses_a_write_holds_no_one() {
        let pacing = Pacing::new();
        let mut queue = QueuePace::new(pacing.clone());
        queue.update(true);
        assert!(pacing.is_holding());
        queue.written(false);
        assert!(!pacing.is_holding());
        queue.update(true);
        assert!(!pacing.is_holding(), "not while its socket refuses");
        queue.written(true);
        queue.update(true);
        assert!(pacing.is_holding(), "again once it keeps up");
        drop(queue);
        assert!(!pacing.is_holding(), "a dropped queue is no longer counted");
    }

    #[test]
    fn a_stopped_queue_is_never_counted_again() {
        let pacing = Pacing::new();
        let mut queue = QueuePace::new(pacing.clone());
        queue.update(true);
        queue.stop();
        assert!(!pacing.is_holding());
        queue.update(true);
        assert!(!pacing.is_holding());
    }

    #[test]
    fn a_whole_tick_without_progress_lets_the_readers_go() {
        let pacing = Pacing::new();
        let mut stuck = QueuePace::new(pacing.clone());
        let mut reader = Reader::default();
        let mut late = Reader::default();
        stuck.update(true);
        pacing.tick();
        assert!(reader.poll(&pacing).is_pending());
        pacing.tick();
        assert_eq!(reader.woken(), 1);
        assert!(!stuck.is_counted(), "blamed for the stall");
        assert!(reader.poll(&pacing).is_ready());
        assert!(
            late.poll(&pacing).is_ready(),
            "nobody waits for a blamed queue"
        );
        stuck.update(true);
        assert!(!pacing.is_holding(), "blamed until it falls below its mark");
        stuck.update(false);
        stuck.update(true);
        assert!(
            pacing.is_holding(),
            "held again once it fell below its mark and passed it again"
        );
    }

    #[test]
    fn a_stuck_queue_cannot_hold_the_readers_while_others_catch_up() {
        let pacing = Pacing::new();
        let mut stuck = QueuePace::new(pacing.clone());
        let mut busy = QueuePace::new(pacing.clone());
        let mut reader = Reader::default();
        stuck.update(true);
        assert!(reader.poll(&pacing).is_pending());
        // The first tick finds the readers held; each later one, held throughout the tick.
        for tick in 0..HOLD_LIMIT_TICKS {
            // Another queue falls behind and catches up every tick: progress, so no stall.
            busy.update(true);
            busy.update(false);
            pacing.tick();
            assert!(pacing.is_holding(), "still held at tick {tick}");
        }
        assert_eq!(reader.woken(), 0);
        busy.update(true);
        busy.update(false);
        pacing.tick();
        assert!(
            !pacing.is_holding(),
            "held throughout {HOLD_LIMIT_TICKS} ticks in a row"
        );
        assert!(!stuck.is_counted(), "the stuck queue is blamed");
        assert_eq!(reader.woken(), 1);
        assert!(reader.poll(&pacing).is_ready());
        busy.update(true);
        assert!(pacing.is_holding(), "the other queue counts again");
    }

    #[test]
    fn readers_let_go_in_between_restart_the_count_of_ticks_held() {
        let pacing = Pacing::new();
        let mut queue = QueuePace::new(pacing.clone());
        for _ in 0..3 * HOLD_LIMIT_TICKS {
            // Behind at every tick, but caught up (and the readers let go) in between.
            queue.update(true);
            pacing.tick();
            queue.update(false);
            queue.update(true);
        }
        assert!(queue.is_counted(), "never blamed");
    }

    #[test]
    fn a_queue_blamed_for_a_stall_leaves_the_others_counted() {
        let pacing = Pacing::new();
        let mut stuck = QueuePace::new(pacing.clone());
        let mut other = QueuePace::new(pacing.clone());
        stuck.update(true);
        pacing.tick();
        pacing.tick();
        assert!(!pacing.is_holding());
        other.update(true);
        assert!(
            pacing.is_holding(),
            "another queue still holds the readers back"
        );
        stuck.update(false);
        assert!(
            pacing.is_holding(),
            "the blamed queue's catching up is not the other's"
        );
        other.update(false);
        assert!(!pacing.is_holding());
        let mut reader = Reader::default();
        pacing.tick();
        stuck.update(true);
        pacing.tick();
        assert!(
            reader.poll(&pacing).is_pending(),
            "one tick behind is no stall"
        );
        pacing.tick();
        assert!(reader.poll(&pacing).is_ready(), "a whole tick is");
    }
}
