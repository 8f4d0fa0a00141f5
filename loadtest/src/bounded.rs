//! Waits that end: the generator's helper threads (samplers, the progress printer, the output
//! writer) are joined for a bounded time only, so a thread stuck in a read of /proc or a write
//! to a full pipe can delay the end of a run by at most its grace, never hold it forever.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a bounded join looks whether the thread has ended.
const JOIN_POLL: Duration = Duration::from_millis(1);

/// Joins `thread` if it ends within `grace`; otherwise leaves it running (detached) and
/// returns false.
pub fn join_within<T>(thread: JoinHandle<T>, grace: Duration) -> bool {
    let give_up = Instant::now() + grace;
    while !thread.is_finished() {
        if Instant::now() >= give_up {
            return false;
        }
        std::thread::sleep(JOIN_POLL);
    }
    let _ = thread.join();
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_a_thread_that_ends_and_leaves_one_that_does_not() {
        let quick = std::thread::spawn(|| ());
        assert!(join_within(quick, Duration::from_secs(5)));
        let (_keep, stuck) = std::sync::mpsc::channel::<()>();
        let slow = std::thread::spawn(move || {
            let _ = stuck.recv();
        });
        let started = Instant::now();
        assert!(!join_within(slow, Duration::from_millis(50)));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
