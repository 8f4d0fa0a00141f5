//! A single-waiter wake-up flag for tasks of one shard: cheaper than a channel, and never
//! grows (many notifications before the waiter runs collapse into one).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Wakes one task of the same shard. Notifications do not queue: one pending flag is kept.
///
/// Every connection has one (24 bytes): the waker is kept in a `Cell`, taken out and put
/// back whole, so it needs no borrow flag.
#[derive(Default)]
pub struct Notify {
    pending: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl fmt::Debug for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notify")
            .field("pending", &self.pending.get())
            .finish_non_exhaustive()
    }
}

impl Notify {
    /// Marks the flag and wakes the waiting task, if any.
    pub fn notify(&self) {
        self.pending.set(true);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Resolves once the flag is set (clearing it); resolves at once if it is already set.
    pub fn notified(&self) -> Notified<'_> {
        Notified { notify: self }
    }

    /// Polls for the flag: `Ready` (clearing it) when it is set, else `Pending` with the
    /// task of `cx` as the one to wake.
    pub fn poll_notified(&self, cx: &Context<'_>) -> Poll<()> {
        if self.pending.replace(false) {
            return Poll::Ready(());
        }
        self.waker.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}

/// Future returned by [`Notify::notified`].
pub struct Notified<'a> {
    notify: &'a Notify,
}

impl Future for Notified<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.notify.poll_notified(cx)
    }
}

/// Wakes every task of the same shard waiting for a condition to change (waiters re-check
/// their condition after each wake-up). Each waiting task holds one waker slot at most.
#[derive(Default, Debug)]
pub struct Broadcast {
    waiters: RefCell<Vec<Waker>>,
}

impl Broadcast {
    /// Wakes every waiting task.
    pub fn notify_all(&self) {
        for waker in self.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Resolves at the next [`Broadcast::notify_all`].
    pub fn wait(&self) -> Wait<'_> {
        Wait {
            broadcast: self,
            registered: false,
        }
    }
}

/// Future returned by [`Broadcast::wait`].
pub struct Wait<'a> {
    broadcast: &'a Broadcast,
    registered: bool,
}

impl Future for Wait<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.registered {
            // Woken (or polled spuriously, which the caller's re-check absorbs).
            return Poll::Ready(());
        }
        self.registered = true;
        self.broadcast.waiters.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    }
}
