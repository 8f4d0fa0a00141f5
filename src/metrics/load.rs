//! Mosquitto's `load` figures: a counter's rate, in events per minute, as exponentially
//! weighted moving averages over 1, 5 and 15 minutes (the way Unix load averages are kept),
//! updated whenever the counters are sampled.
//!
//! After a sample `dt` seconds after the previous one, with `rate` the counter's increase in
//! that time scaled to one minute, each average moves toward the rate by the fraction
//! `1 - exp(-dt / window)`. The averages start at zero, so they climb over their windows.

use std::time::Duration;

use super::registry::Counter;
use super::snapshot::MetricsSnapshot;

/// One averaging window of the load figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LoadWindow {
    /// One minute.
    OneMinute,
    /// Five minutes.
    FiveMinutes,
    /// Fifteen minutes.
    FifteenMinutes,
}

impl LoadWindow {
    /// Every window, shortest first.
    pub const ALL: [LoadWindow; 3] = [
        LoadWindow::OneMinute,
        LoadWindow::FiveMinutes,
        LoadWindow::FifteenMinutes,
    ];

    /// The window's length.
    #[must_use]
    pub const fn length(self) -> Duration {
        match self {
            LoadWindow::OneMinute => Duration::from_secs(60),
            LoadWindow::FiveMinutes => Duration::from_secs(300),
            LoadWindow::FifteenMinutes => Duration::from_secs(900),
        }
    }

    /// The last `$SYS` topic level naming it, as Mosquitto writes it.
    #[must_use]
    pub const fn topic_level(self) -> &'static str {
        match self {
            LoadWindow::OneMinute => "1min",
            LoadWindow::FiveMinutes => "5min",
            LoadWindow::FifteenMinutes => "15min",
        }
    }
}

/// The 1, 5 and 15-minute moving averages of one counter's rate per minute.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LoadAverage {
    averages: [f64; 3],
    /// The counter's value at the previous sample.
    previous: u64,
}

impl LoadAverage {
    /// Takes a sample: the counter's value now, `elapsed` after the previous sample (or after
    /// the counter started at zero). A zero `elapsed` changes nothing.
    pub fn sample(&mut self, value: u64, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if seconds <= 0.0 {
            return;
        }
        let increase = value.saturating_sub(self.previous) as f64;
        self.previous = value;
        let rate_per_minute = increase * 60.0 / seconds;
        for (average, window) in self.averages.iter_mut().zip(LoadWindow::ALL) {
            let keep = (-seconds / window.length().as_secs_f64()).exp();
            *average = rate_per_minute + keep * (*average - rate_per_minute);
        }
    }

    /// The average over one window, in events per minute.
    #[must_use]
    pub fn get(&self, window: LoadWindow) -> f64 {
        self.averages[window as usize]
    }
}

/// A counter that Mosquitto publishes a load figure for, under `$SYS/broker/load/<level>/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LoadFigure {
    /// MQTT packets of any type received.
    MessagesReceived,
    /// MQTT packets of any type sent.
    MessagesSent,
    /// PUBLISH packets dropped, for any reason.
    PublishDropped,
    /// PUBLISH packets received.
    PublishReceived,
    /// PUBLISH packets sent.
    PublishSent,
    /// Bytes received.
    BytesReceived,
    /// Bytes sent.
    BytesSent,
    /// TCP connections accepted.
    Sockets,
    /// CONNECT packets accepted.
    Connections,
}

impl LoadFigure {
    /// Every figure, in Mosquitto's order.
    pub const ALL: [LoadFigure; 9] = [
        LoadFigure::MessagesReceived,
        LoadFigure::MessagesSent,
        LoadFigure::PublishDropped,
        LoadFigure::PublishReceived,
        LoadFigure::PublishSent,
        LoadFigure::BytesReceived,
        LoadFigure::BytesSent,
        LoadFigure::Sockets,
        LoadFigure::Connections,
    ];
    /// How many figures there are.
    pub const COUNT: usize = Self::ALL.len();

    /// The topic levels between `$SYS/broker/load/` and the window.
    #[must_use]
    pub const fn topic_levels(self) -> &'static str {
        match self {
            LoadFigure::MessagesReceived => "messages/received",
            LoadFigure::MessagesSent => "messages/sent",
            LoadFigure::PublishDropped => "publish/dropped",
            LoadFigure::PublishReceived => "publish/received",
            LoadFigure::PublishSent => "publish/sent",
            LoadFigure::BytesReceived => "bytes/received",
            LoadFigure::BytesSent => "bytes/sent",
            LoadFigure::Sockets => "sockets",
            LoadFigure::Connections => "connections",
        }
    }

    /// The counter's value in a snapshot.
    #[must_use]
    pub fn value(self, snapshot: &MetricsSnapshot) -> u64 {
        match self {
            LoadFigure::MessagesReceived => snapshot.counter(Counter::MessagesReceived),
            LoadFigure::MessagesSent => snapshot.counter(Counter::MessagesSent),
            LoadFigure::PublishDropped => snapshot.dropped_total(),
            LoadFigure::PublishReceived => snapshot.counter(Counter::PublishReceived),
            LoadFigure::PublishSent => snapshot.counter(Counter::PublishSent),
            LoadFigure::BytesReceived => snapshot.counter(Counter::BytesReceived),
            LoadFigure::BytesSent => snapshot.counter(Counter::BytesSent),
            LoadFigure::Sockets => snapshot.counter(Counter::SocketsAccepted),
            LoadFigure::Connections => snapshot.counter(Counter::Connects),
        }
    }
}

/// The load averages of every [`LoadFigure`], sampled from a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LoadFigures {
    figures: [LoadAverage; LoadFigure::COUNT],
}

impl LoadFigures {
    /// Samples every figure from `snapshot`, `elapsed` after the previous sample.
    pub fn sample(&mut self, snapshot: &MetricsSnapshot, elapsed: Duration) {
        for (average, figure) in self.figures.iter_mut().zip(LoadFigure::ALL) {
            average.sample(figure.value(snapshot), elapsed);
        }
    }

    /// The averages of one figure.
    #[must_use]
    pub fn get(&self, figure: LoadFigure) -> &LoadAverage {
        &self.figures[figure as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_SECONDS: Duration = Duration::from_secs(10);

    #[test]
    fn a_steady_rate_converges_to_itself() {
        let mut load = LoadAverage::default();
        let mut total = 0;
        // 5 events per second = 300 per minute, sampled every 10 s for two hours.
        for _ in 0..720 {
            total += 50;
            load.sample(total, TEN_SECONDS);
        }
        for window in LoadWindow::ALL {
            assert!((load.get(window) - 300.0).abs() < 0.5, "{window:?}");
        }
    }

    #[test]
    fn one_sample_moves_each_window_by_its_share() {
        let mut load = LoadAverage::default();
        load.sample(600, Duration::from_secs(60));
        // Rate 600/min; after one minute the 1-minute average has moved 1 - e^-1 of the way.
        let expected_one = 600.0 * (1.0 - (-1.0f64).exp());
        let expected_five = 600.0 * (1.0 - (-0.2f64).exp());
        let expected_fifteen = 600.0 * (1.0 - (-1.0f64 / 15.0).exp());
        assert!((load.get(LoadWindow::OneMinute) - expected_one).abs() < 1e-9);
        assert!((load.get(LoadWindow::FiveMinutes) - expected_five).abs() < 1e-9);
        assert!((load.get(LoadWindow::FifteenMinutes) - expected_fifteen).abs() < 1e-9);
    }

    #[test]
    fn shorter_windows_react_faster_and_decay_faster() {
        let mut load = LoadAverage::default();
        load.sample(1000, TEN_SECONDS);
        assert!(load.get(LoadWindow::OneMinute) > load.get(LoadWindow::FiveMinutes));
        assert!(load.get(LoadWindow::FiveMinutes) > load.get(LoadWindow::FifteenMinutes));
        for _ in 0..120 {
            load.sample(1000, TEN_SECONDS);
        }
        assert!(load.get(LoadWindow::OneMinute) < 0.01);
        assert!(load.get(LoadWindow::FifteenMinutes) > load.get(LoadWindow::OneMinute));
    }

    #[test]
    fn zero_elapsed_and_counter_resets_are_harmless() {
        let mut load = LoadAverage::default();
        load.sample(100, Duration::ZERO);
        assert_eq!(load, LoadAverage::default());
        load.sample(100, TEN_SECONDS);
        load.sample(10, TEN_SECONDS);
        assert!(load.get(LoadWindow::OneMinute).is_finite());
        assert!(load.get(LoadWindow::OneMinute) >= 0.0);
    }

    #[test]
    fn figures_read_their_counters() {
        let mut snapshot = MetricsSnapshot::empty(0, 0);
        snapshot.counters[Counter::SocketsAccepted.index()] = 60;
        snapshot.drops[0] = 6;
        snapshot.drops[1] = 6;
        let mut figures = LoadFigures::default();
        figures.sample(&snapshot, Duration::from_secs(60));
        let sockets = figures.get(LoadFigure::Sockets).get(LoadWindow::OneMinute);
        let dropped = figures
            .get(LoadFigure::PublishDropped)
            .get(LoadWindow::OneMinute);
        assert!((sockets / dropped - 5.0).abs() < 1e-9);
        assert_eq!(
            figures
                .get(LoadFigure::BytesSent)
                .get(LoadWindow::OneMinute),
            0.0
        );
    }
}
