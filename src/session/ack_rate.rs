//! How fast a client acknowledges its QoS 1/2 messages when it has work, counted per tick of
//! its core's clock.
//!
//! Pacing (see `pacing`) holds a core's readers back while a session queue is past its mark,
//! for a client that keeps up. A client that acknowledges, but slowly (far away, or busy),
//! keeps its socket writable and so would seem to keep up, and would hold every publisher of
//! its core to its own pace. Its rate of acknowledgements tells it apart: a client that cannot
//! drain its queue within [`DRAIN_TICKS`] ticks at its recent rate is not worth waiting for,
//! and its queue's limits drop what it cannot take, as they did before pacing.
//!
//! The recent rate is the best whole tick's count, halved for every whole tick since: a client
//! that acknowledged fast a tick ago and paused (the client's machine, or the broker's, did
//! not run it for a while) is still waited for, where judging it by that one tick alone let
//! the publishers run and its queue overflow; a client that stays slow is judged slow within
//! a few ticks.
//!
//! Only acknowledgements given while messages wait behind the client's window are counted
//! (the caller's part): a fast client held to a slow one's pace acknowledges little because
//! it is given little, and that must not be taken for slowness.

/// Ticks of the core's clock (100 ms each) within which a client must be able to drain its
/// session queue, at its recent rate, for its queue to hold the core's readers.
pub const DRAIN_TICKS: usize = 3;

/// Acknowledgements counted per tick of the core's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct AckRate {
    /// The tick being counted and the acknowledgements in it so far (`None`: none yet).
    current: Option<(u32, u32)>,
    /// Whether the tick being counted was seen whole: the one before it had acknowledgements
    /// too, so the client was busy across the boundary.
    whole: bool,
    /// The most acknowledgements in a tick seen whole, halved for every whole tick since
    /// (`None`: no such tick yet).
    peak: Option<u32>,
}

impl AckRate {
    /// Counts an acknowledgement during tick `now`.
    pub fn record(&mut self, now: u32) {
        match &mut self.current {
            Some((tick, count)) if *tick == now => *count = count.saturating_add(1),
            Some((tick, count)) if tick.wrapping_add(1) == now => {
                // The first tick of a busy spell began before the first acknowledgement: its
                // count says nothing of the rate.
                if self.whole {
                    self.peak = Some(self.peak.map_or(*count, |peak| (*count).max(peak / 2)));
                }
                self.whole = true;
                self.current = Some((now, 1));
            }
            _ => {
                // A first acknowledgement, or one after whole ticks without any: what the
                // client did before says nothing of what it does now.
                self.peak = None;
                self.whole = false;
                self.current = Some((now, 1));
            }
        }
    }

    /// Whether a client with `queued` messages waiting can acknowledge them within
    /// [`DRAIN_TICKS`] ticks at its recent rate, at tick `now`. A client not yet measured (no
    /// whole tick, or silent for a whole tick) is given the benefit of the doubt: the valve in
    /// `pacing` ends a wait for one that does not acknowledge at all.
    #[must_use]
    pub fn drains(&self, queued: usize, now: u32) -> bool {
        let (Some((tick, count)), Some(peak)) = (self.current, self.peak) else {
            return true;
        };
        if now.wrapping_sub(tick) > 1 {
            return true;
        }
        let rate = usize::try_from(peak.max(count)).unwrap_or(usize::MAX);
        queued <= rate.saturating_mul(DRAIN_TICKS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acks(rate: &mut AckRate, tick: u32, count: u32) {
        for _ in 0..count {
            rate.record(tick);
        }
    }

    #[test]
    fn a_client_is_measured_from_its_first_whole_tick() {
        let mut rate = AckRate::default();
        assert!(rate.drains(1000, 0), "not measured yet");
        acks(&mut rate, 5, 2);
        acks(&mut rate, 6, 10);
        assert!(rate.drains(1000, 6), "the first tick was not seen whole");
        acks(&mut rate, 7, 1);
        assert!(rate.drains(30, 7), "10 a tick drain 30 in three ticks");
        assert!(!rate.drains(31, 7));
    }

    #[test]
    fn a_fast_client_drains_its_queue_and_a_slow_one_does_not() {
        let mut fast = AckRate::default();
        let mut slow = AckRate::default();
        for tick in 0..4 {
            acks(&mut fast, tick, 800);
            acks(&mut slow, tick, 20);
        }
        assert!(fast.drains(500, 3));
        assert!(!slow.drains(500, 3));
        assert!(slow.drains(60, 3), "a short queue drains even slowly");
    }

    #[test]
    fn one_slow_tick_does_not_make_a_fast_client_slow_but_staying_slow_does() {
        let mut rate = AckRate::default();
        for tick in 0..4 {
            acks(&mut rate, tick, 800);
        }
        acks(&mut rate, 4, 20);
        acks(&mut rate, 5, 1);
        assert!(
            rate.drains(1000, 5),
            "one tick of 20 after 800 a tick: still 400 a tick"
        );
        let mut tick = 5;
        while rate.drains(500, tick) {
            acks(&mut rate, tick, 19);
            tick += 1;
            acks(&mut rate, tick, 1);
            assert!(tick < 12, "a client acknowledging 20 a tick is judged slow");
        }
        assert!(
            tick >= 7,
            "not at the first slow tick: judged at tick {tick}"
        );
    }

    #[test]
    fn a_pause_forgets_the_rate() {
        let mut rate = AckRate::default();
        for tick in 0..3 {
            acks(&mut rate, tick, 5);
        }
        assert!(!rate.drains(500, 2));
        assert!(
            rate.drains(500, 4),
            "silent for a whole tick: not measured any more"
        );
        acks(&mut rate, 9, 1);
        assert!(rate.drains(500, 9), "a new busy spell is measured afresh");
    }
}
