//! Holding back a core's readers while one of its clients that keeps up is falling behind.
//!
//! A connection's task writes its client's queue once per turn of the core's event loop, and
//! every other task of the core runs once in between: each publisher decodes and routes a
//! whole read's worth of packets, and each link from another core hands over everything its
//! channel holds. When many of them feed one subscriber (fan-in), one round of the others
//! brings that subscriber more than its queue holds, though its socket takes everything it is
//! given: the rest is decoded, matched and dropped, work done for nothing on the busy core.
//!
//! So when a queue passes half its limit while its socket still took every byte of its last
//! write (the client keeps up; only its turn is late), the queue counts itself *behind*, and
//! while any queue of the core is behind, the core's readers (connections reading their
//! client, links reading another core) wait before their next read. The subscriber's task
//! runs, writes, and the readers go on. The client that publishes sees TCP flow control, as a
//! client of a busy broker does. A client that does not keep up (its socket refused a write)
//! never holds anyone back: its queue's limits drop what it cannot take, as before.
//!
//! Nothing waits for long: a queue that is behind is counted only until its task writes it,
//! and should one ever stay counted for a whole tick of the core's clock with no queue
//! catching up, the readers stop waiting until every queue has caught up again.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

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
    /// Readers waiting for `behind` to fall to zero.
    waiting: RefCell<Vec<Waker>>,
    /// Counts the times the waiting readers were woken, so that a reader registers once per
    /// wait however often its task is polled meanwhile.
    round: Cell<u32>,
    /// A queue caught up since the last clock tick.
    progressed: Cell<bool>,
    /// Some queue was behind at the last clock tick.
    held_at_tick: Cell<bool>,
    /// Queues stayed behind for a whole tick without any catching up: readers do not wait
    /// until the count is back to zero.
    stalled: Cell<bool>,
}

/// Where a reader stands in the wait (see [`Pacing::poll_go`]): kept by the reader, starting
/// at its default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaitTicket(u32);

impl Pacing {
    /// A count with no queue behind.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether readers may read now; otherwise registers `cx` to be woken when they may.
    pub fn poll_go(&self, cx: &Context<'_>, ticket: &mut WaitTicket) -> Poll<()> {
        let state = &self.state;
        if state.behind.get() == 0 || state.stalled.get() {
            return Poll::Ready(());
        }
        // +1: a fresh ticket (0) never matches, so a reader registers on its first wait.
        let round = state.round.get().wrapping_add(1);
        if ticket.0 != round {
            ticket.0 = round;
            state.waiting.borrow_mut().push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Waits until readers may read (for a task that does nothing else meanwhile).
    pub fn go(&self) -> impl Future<Output = ()> + '_ {
        let mut ticket = WaitTicket::default();
        futures_lite::future::poll_fn(move |cx| self.poll_go(cx, &mut ticket))
    }

    /// Whether any queue is behind (and readers are held back).
    #[must_use]
    pub fn is_holding(&self) -> bool {
        self.state.behind.get() != 0 && !self.state.stalled.get()
    }

    /// Counts one more queue behind.
    fn fall_behind(&self) {
        let behind = &self.state.behind;
        behind.set(behind.get() + 1);
    }

    /// Counts one queue less behind; the last one lets the readers go.
    fn catch_up(&self) {
        let state = &self.state;
        let behind = state.behind.get().saturating_sub(1);
        state.behind.set(behind);
        state.progressed.set(true);
        if behind == 0 {
            state.stalled.set(false);
            self.wake_readers();
        }
    }

    /// Called once per tick of the core's clock: queues behind with none catching up since
    /// the last tick stop holding the readers back.
    pub fn tick(&self) {
        let state = &self.state;
        let holding = state.behind.get() != 0;
        let held_before = state.held_at_tick.replace(holding);
        let held_throughout = holding && held_before;
        if held_throughout && !state.progressed.get() && !state.stalled.get() {
            tracing::debug!(
                behind = state.behind.get(),
                "queues behind for a whole tick: readers no longer wait for them"
            );
            state.stalled.set(true);
            self.wake_readers();
        }
        state.progressed.set(false);
    }

    fn wake_readers(&self) {
        let state = &self.state;
        state.round.set(state.round.get().wrapping_add(1));
        let waiting = std::mem::take(&mut *state.waiting.borrow_mut());
        for waker in waiting {
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
    /// Counted in `pacing` as behind.
    counted: bool,
    /// The client's socket refused part of the last write: the client does not keep up, and
    /// the queue never counts as behind until a write is taken whole again.
    refused: bool,
}

impl QueuePace {
    /// A queue counted in `pacing`.
    pub fn new(pacing: Pacing) -> Self {
        Self {
            pacing: Some(pacing),
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
            self.counted = true;
            pacing.fall_behind();
        }
    }

    /// Notes whether the client's socket took the last write whole (`false`: it refused part
    /// of it, and the client is not keeping up).
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
                pacing.catch_up();
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

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll(pacing: &Pacing, waker: &Arc<CountingWaker>, ticket: &mut WaitTicket) -> Poll<()> {
        let waker = Waker::from(waker.clone());
        pacing.poll_go(&Context::from_waker(&waker), ticket)
    }

    #[test]
    fn a_queue_past_its_mark_holds_readers_until_it_is_drained() {
        let pacing = Pacing::new();
        let mut queue = QueuePace::new(pacing.clone());
        let reader = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let mut ticket = WaitTicket::default();
        queue.update(false);
        assert!(poll(&pacing, &reader, &mut ticket).is_ready());
        queue.update(true);
        assert!(poll(&pacing, &reader, &mut ticket).is_pending());
        assert!(
            poll(&pacing, &reader, &mut ticket).is_pending(),
            "polled again"
        );
        queue.update(true);
        assert!(pacing.is_holding(), "still past the mark");
        assert_eq!(reader.0.load(Ordering::SeqCst), 0);
        queue.update(false);
        assert_eq!(reader.0.load(Ordering::SeqCst), 1, "woken once");
        assert!(poll(&pacing, &reader, &mut ticket).is_ready());
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
        let reader = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let mut ticket = WaitTicket::default();
        stuck.update(true);
        pacing.tick();
        assert!(poll(&pacing, &reader, &mut ticket).is_pending());
        pacing.tick();
        assert_eq!(reader.0.load(Ordering::SeqCst), 1);
        assert!(poll(&pacing, &reader, &mut ticket).is_ready());
        stuck.update(false);
        stuck.update(true);
        assert!(
            pacing.is_holding(),
            "held again after every queue caught up"
        );
    }
}
