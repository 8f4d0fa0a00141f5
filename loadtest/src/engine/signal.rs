//! A one-shot, executor-local broadcast: many tasks wait for it, one raise wakes them all.
//! Waiting is cancel-safe and leaves nothing behind, so a task may race it against a socket
//! read on every loop turn.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// The waiters of a signal, in a slab so a dropped wait frees its slot.
#[derive(Default)]
struct Waiters {
    /// Slot per waiting future; `None` = free.
    slots: Vec<Option<Waker>>,
    /// Free slot indices.
    free: Vec<usize>,
}

#[derive(Default)]
struct Inner {
    raised: Cell<bool>,
    waiters: RefCell<Waiters>,
}

/// A cloneable handle to one signal.
#[derive(Clone, Default)]
pub struct Signal {
    inner: Rc<Inner>,
}

impl Signal {
    /// A signal not yet raised.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises the signal and wakes every waiter; later waits finish at once.
    pub fn raise(&self) {
        if self.inner.raised.replace(true) {
            return;
        }
        let wakers: Vec<Waker> = {
            let mut waiters = self.inner.waiters.borrow_mut();
            waiters.free.clear();
            waiters.slots.drain(..).flatten().collect()
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// Whether the signal was raised.
    pub fn is_raised(&self) -> bool {
        self.inner.raised.get()
    }

    /// Waits until the signal is raised.
    pub fn wait(&self) -> SignalWait {
        SignalWait {
            inner: self.inner.clone(),
            slot: None,
        }
    }
}

/// The future of [`Signal::wait`].
pub struct SignalWait {
    inner: Rc<Inner>,
    slot: Option<usize>,
}

impl Future for SignalWait {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.raised.get() {
            return Poll::Ready(());
        }
        let inner = self.inner.clone();
        let mut waiters = inner.waiters.borrow_mut();
        match self.slot {
            Some(slot) => {
                if let Some(entry) = waiters.slots.get_mut(slot) {
                    *entry = Some(cx.waker().clone());
                }
            }
            None => {
                let slot = match waiters.free.pop() {
                    Some(slot) => {
                        waiters.slots[slot] = Some(cx.waker().clone());
                        slot
                    }
                    None => {
                        waiters.slots.push(Some(cx.waker().clone()));
                        waiters.slots.len() - 1
                    }
                };
                self.slot = Some(slot);
            }
        }
        Poll::Pending
    }
}

impl Drop for SignalWait {
    fn drop(&mut self) {
        let Some(slot) = self.slot else { return };
        if self.inner.raised.get() {
            return;
        }
        let mut waiters = self.inner.waiters.borrow_mut();
        if let Some(entry) = waiters.slots.get_mut(slot) {
            *entry = None;
            waiters.free.push(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;

    #[test]
    fn waits_finish_after_raise_and_dropped_waits_free_their_slot() {
        let signal = Signal::new();
        let mut first = Box::pin(signal.wait());
        let waker =
            futures_lite::future::block_on(future::poll_fn(|cx| Poll::Ready(cx.waker().clone())));
        let mut cx = Context::from_waker(&waker);
        assert!(first.as_mut().poll(&mut cx).is_pending());
        for _ in 0..100 {
            let mut other = Box::pin(signal.wait());
            assert!(other.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(signal.inner.waiters.borrow().slots.len(), 2);
        signal.raise();
        assert!(first.as_mut().poll(&mut cx).is_ready());
        assert!(signal.is_raised());
        future::block_on(signal.wait());
    }
}
