//! The progress line printed to stderr once a second while a run goes on. Lines are written
//! by a printer thread of their own, so a stderr nobody reads (a full pipe) can never stall the
//! run: lines it cannot take are dropped.

use std::io::Write;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::bounded::join_within;
use crate::engine::Phase;

/// How often a progress line is printed.
pub const PROGRESS_PERIOD: Duration = Duration::from_secs(1);

/// Lines waiting for the printer at most; more are dropped.
const PRINTER_BACKLOG: usize = 4;

/// Longest [`ProgressLine::finish`] waits for the printer to write what it was given.
const PRINTER_GRACE: Duration = Duration::from_secs(1);

/// The counters one progress line shows.
#[derive(Clone, Copy, Debug)]
pub struct ProgressSnapshot {
    /// Current phase.
    pub phase: Phase,
    /// Time since the run started.
    pub elapsed: Duration,
    /// Messages published so far.
    pub sent: u64,
    /// Messages delivered so far.
    pub delivered: u64,
    /// Connections opened so far.
    pub connects: u64,
    /// Client errors so far.
    pub errors: u64,
}

/// Prints progress lines, each with the rates since the previous one.
pub struct ProgressLine {
    /// Feeds the printer thread; `None` when quiet (or the thread could not start).
    lines: Option<SyncSender<String>>,
    printer: Option<JoinHandle<()>>,
    last_print: Instant,
    last: Option<ProgressSnapshot>,
}

impl ProgressLine {
    /// A printer; `quiet` prints nothing.
    pub fn new(quiet: bool) -> Self {
        let (lines, printer) = if quiet {
            (None, None)
        } else {
            let (sender, receiver) = mpsc::sync_channel::<String>(PRINTER_BACKLOG);
            let printer = std::thread::Builder::new()
                .name("progress".into())
                .spawn(move || {
                    for line in receiver {
                        let _ = writeln!(std::io::stderr().lock(), "{line}");
                    }
                });
            match printer {
                Ok(printer) => (Some(sender), Some(printer)),
                Err(_) => (None, None),
            }
        };
        Self {
            lines,
            printer,
            last_print: Instant::now(),
            last: Some(ProgressSnapshot {
                phase: Phase::Setup,
                elapsed: Duration::ZERO,
                sent: 0,
                delivered: 0,
                connects: 0,
                errors: 0,
            }),
        }
    }

    /// True when a line is due.
    pub fn due(&self) -> bool {
        self.last_print.elapsed() >= PROGRESS_PERIOD
    }

    /// Prints a line for `now`, with the p99 latency of the interval when there was any.
    pub fn print(&mut self, now: &ProgressSnapshot, p99_ms: Option<f64>) {
        let line = format_line(now, self.last.as_ref(), p99_ms);
        self.last = Some(*now);
        self.last_print = Instant::now();
        if let Some(lines) = &self.lines {
            if let Err(TrySendError::Disconnected(_)) = lines.try_send(line) {
                self.lines = None;
            }
        }
    }

    /// Ends the progress output: the printer writes what it holds, for at most
    /// [`PRINTER_GRACE`], and is then left behind.
    pub fn finish(&mut self) {
        self.lines = None;
        if let Some(printer) = self.printer.take() {
            join_within(printer, PRINTER_GRACE);
        }
    }
}

/// One progress line: time, phase, totals, rates since `previous`, p99 of the interval.
pub fn format_line(
    now: &ProgressSnapshot,
    previous: Option<&ProgressSnapshot>,
    p99_ms: Option<f64>,
) -> String {
    let span = previous
        .map(|p| now.elapsed.saturating_sub(p.elapsed).as_secs_f64())
        .filter(|&s| s > 0.0);
    let rate = |current: u64, before: fn(&ProgressSnapshot) -> u64| match (span, previous) {
        (Some(span), Some(p)) => current.saturating_sub(before(p)) as f64 / span,
        _ => 0.0,
    };
    let sent_rate = rate(now.sent, |p| p.sent);
    let delivered_rate = rate(now.delivered, |p| p.delivered);
    let p99 = p99_ms.map_or_else(|| "-".to_owned(), format_ms);
    format!(
        "[{:>6.1}s] {:<5} sent {:>12} ({:>10}/s)  delivered {:>13} ({:>11}/s)  p99 {:>9}  conns {}  errors {}",
        now.elapsed.as_secs_f64(),
        now.phase.name(),
        group(now.sent),
        group(sent_rate.round() as u64),
        group(now.delivered),
        group(delivered_rate.round() as u64),
        p99,
        group(now.connects),
        now.errors
    )
}

/// A latency in milliseconds with a precision that suits its size.
pub fn format_ms(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.3} ms")
    }
}

/// An integer with thousands separators.
pub fn group(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1234567), "1,234,567");
    }

    #[test]
    fn line_shows_rates_since_the_previous_line() {
        let before = ProgressSnapshot {
            phase: Phase::Running,
            elapsed: Duration::from_secs(1),
            sent: 1000,
            delivered: 100_000,
            connects: 101,
            errors: 0,
        };
        let now = ProgressSnapshot {
            elapsed: Duration::from_secs(2),
            sent: 3000,
            delivered: 300_000,
            ..before
        };
        let line = format_line(&now, Some(&before), Some(1.5));
        assert!(line.contains("run"), "{line}");
        assert!(line.contains("2,000/s"), "{line}");
        assert!(line.contains("200,000/s"), "{line}");
        assert!(line.contains("1.500 ms"), "{line}");
        assert!(format_line(&now, None, None).contains("p99         -"));
    }
}
