//! The event-loop lag probe: a task that sleeps for a fixed interval, again and again, and
//! measures how late each wake-up comes. On a thread-per-core broker the delay is the time
//! the core's event loop spent on other tasks: an overload signal that no queue shows.

use std::time::{Duration, Instant};

/// Default time between two measurements.
pub const DEFAULT_LAG_PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// Wake-ups ignored at the start: glommio's first timers of a process may fire tens of
/// milliseconds late, which says nothing about the load.
pub const LAG_PROBE_WARMUP_TICKS: u32 = 10;

/// How late one timer of `interval` fired, given when it was armed and when it fired.
#[must_use]
pub fn lateness(armed: Instant, fired: Instant, interval: Duration) -> Duration {
    fired
        .saturating_duration_since(armed)
        .saturating_sub(interval)
}

/// Runs the probe on the current glommio executor until `keep_running` says otherwise
/// (checked once per interval), handing every measurement after the warm-up to `record`
/// (typically `|lag| core_metrics.record(Latency::EventLoopLag, lag)`). Spawn it in the
/// task queue whose latency matters (the one serving connections).
pub async fn run_lag_probe(
    interval: Duration,
    mut record: impl FnMut(Duration),
    keep_running: impl Fn() -> bool,
) {
    let mut warmup = LAG_PROBE_WARMUP_TICKS;
    while keep_running() {
        let armed = Instant::now();
        glommio::timer::sleep(interval).await;
        let late = lateness(armed, Instant::now(), interval);
        if warmup > 0 {
            warmup -= 1;
        } else {
            record(late);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use glommio::{LocalExecutorBuilder, Placement};

    use super::*;

    #[test]
    fn lateness_is_the_delay_beyond_the_interval() {
        let armed = Instant::now();
        let interval = Duration::from_millis(10);
        assert_eq!(
            lateness(armed, armed + Duration::from_millis(13), interval),
            Duration::from_millis(3)
        );
        assert_eq!(lateness(armed, armed + interval, interval), Duration::ZERO);
        assert_eq!(lateness(armed, armed, interval), Duration::ZERO);
    }

    #[test]
    fn a_blocked_event_loop_shows_as_lag() {
        let samples = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(256 * 1024)
            .spawn(|| async {
                let samples = Rc::new(RefCell::new(Vec::new()));
                let recorded = samples.clone();
                let counted = samples.clone();
                let probe = glommio::spawn_local(run_lag_probe(
                    Duration::from_millis(2),
                    move |lag| recorded.borrow_mut().push(lag),
                    move || counted.borrow().len() < 8,
                ));
                // After the warm-up, hog the executor: the probe's next wake-up is late.
                while samples.borrow().is_empty() {
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
                std::thread::sleep(Duration::from_millis(40));
                probe.await;
                let samples = samples.borrow().clone();
                samples
            })
            .expect("executor starts")
            .join()
            .expect("executor runs");
        assert_eq!(samples.len(), 8);
        let worst = samples.iter().max().copied().unwrap_or_default();
        assert!(worst >= Duration::from_millis(30), "{samples:?}");
    }
}
