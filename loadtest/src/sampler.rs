//! Samples a process's resident memory and CPU time from /proc while a run goes on: the broker
//! (`--broker-pid`) to report its cost, and the generator itself to show it is not the
//! bottleneck.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

use crate::bounded::join_within;
use crate::payload::Clock;

/// Time between two background samples.
pub const SAMPLE_PERIOD: Duration = Duration::from_millis(100);

/// Longest [`ProcessSampler::finish`] waits for the sampling thread to end (it ends at once
/// unless a /proc read hangs); after that the thread is left behind and the samples taken so
/// far are returned.
pub const SAMPLER_JOIN_GRACE: Duration = Duration::from_secs(1);

/// Why a process cannot be sampled.
#[derive(Debug, Error)]
pub enum SamplerError {
    /// /proc has no such process, or it cannot be read.
    #[error("cannot read /proc/{pid}: {reason} (is --broker-pid the broker's process id?)")]
    Unreadable {
        /// The process id.
        pid: u32,
        /// The system's reason.
        reason: String,
    },
    /// The sampling thread could not be started.
    #[error("cannot start the sampling thread: {0}")]
    Thread(String),
}

/// One reading of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// When, in run clock nanoseconds.
    pub at_ns: u64,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
    /// User plus system CPU time consumed since the process started, in nanoseconds.
    pub cpu_ns: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/statm` (`pid` 0 = this process).
pub fn read_process(pid: u32, at_ns: u64) -> Result<Sample, SamplerError> {
    let dir = if pid == 0 {
        "/proc/self".to_owned()
    } else {
        format!("/proc/{pid}")
    };
    let unreadable = |reason: String| SamplerError::Unreadable { pid, reason };
    let stat =
        std::fs::read_to_string(format!("{dir}/stat")).map_err(|e| unreadable(e.to_string()))?;
    let statm =
        std::fs::read_to_string(format!("{dir}/statm")).map_err(|e| unreadable(e.to_string()))?;
    let (ticks, pages) = parse_proc(&stat, &statm)
        .ok_or_else(|| unreadable("unexpected /proc format".to_owned()))?;
    Ok(Sample {
        at_ns,
        rss_bytes: pages.saturating_mul(page_size()),
        cpu_ns: ticks.saturating_mul(1_000_000_000) / clock_ticks_per_second(),
    })
}

/// CPU ticks (utime + stime) from a stat line and resident pages from a statm line.
pub fn parse_proc(stat: &str, statm: &str) -> Option<(u64, u64)> {
    // The command name (field 2) is in parentheses and may contain spaces: fields are counted
    // from the last ')'. After it come field 3 (state) onwards; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let resident: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some((utime + stime, resident))
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// A background thread sampling one process.
pub struct ProcessSampler {
    pid: u32,
    clock: Clock,
    samples: Arc<Mutex<Vec<Sample>>>,
    /// Dropping it stops the thread at once (its wait for the next sample ends).
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ProcessSampler {
    /// Starts sampling `pid` (0 = this process); fails at once if it cannot be read.
    pub fn start(pid: u32, clock: Clock) -> Result<Self, SamplerError> {
        let first = read_process(pid, clock.now_ns())?;
        let samples = Arc::new(Mutex::new(vec![first]));
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = {
            let samples = samples.clone();
            std::thread::Builder::new()
                .name(format!("sample-{pid}"))
                .spawn(move || {
                    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(SAMPLE_PERIOD) {
                        if let Ok(sample) = read_process(pid, clock.now_ns()) {
                            if let Ok(mut samples) = samples.lock() {
                                samples.push(sample);
                            }
                        }
                    }
                })
                .map_err(|e| SamplerError::Thread(e.to_string()))?
        };
        Ok(Self {
            pid,
            clock,
            samples,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Takes a sample now (at a phase boundary), so CPU deltas start and end exactly there.
    pub fn sample_now(&self) {
        if let Ok(sample) = read_process(self.pid, self.clock.now_ns()) {
            if let Ok(mut samples) = self.samples.lock() {
                samples.push(sample);
            }
        }
    }

    /// Stops sampling and returns every sample in time order. Waits at most
    /// [`SAMPLER_JOIN_GRACE`] for the thread.
    pub fn finish(mut self) -> Vec<Sample> {
        self.sample_now();
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            join_within(thread, SAMPLER_JOIN_GRACE);
        }
        let mut samples = self.samples.lock().map(|s| s.clone()).unwrap_or_default();
        samples.sort_by_key(|s| s.at_ns);
        samples
    }
}

impl Drop for ProcessSampler {
    /// A sampler dropped without [`ProcessSampler::finish`] (a failed run) stops its thread.
    fn drop(&mut self) {
        self.stop.take();
    }
}

/// What a process used during part of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Usage {
    /// Largest resident set seen during the whole run, in bytes.
    pub peak_rss_bytes: u64,
    /// Resident set at the first sample (before any client connected), in bytes.
    pub baseline_rss_bytes: u64,
    /// Resident set at the end of the measured part, in bytes.
    pub end_rss_bytes: u64,
    /// CPU seconds consumed during the measured part.
    pub cpu_seconds: f64,
    /// `cpu_seconds` per wall-clock second, in percent (100 = one core busy).
    pub cpu_percent: f64,
}

/// The usage over `[from_ns, to_ns]`: CPU from the last sample at or before `from_ns` to the
/// first at or after `to_ns` (the nearest ones otherwise), peak RSS over all samples.
pub fn usage_between(samples: &[Sample], from_ns: u64, to_ns: u64) -> Option<Usage> {
    let first = samples.first()?;
    let start = samples
        .iter()
        .rev()
        .find(|s| s.at_ns <= from_ns)
        .unwrap_or(first);
    let end = samples
        .iter()
        .find(|s| s.at_ns >= to_ns)
        .or(samples.last())?;
    let wall = end.at_ns.saturating_sub(start.at_ns) as f64 / 1e9;
    let cpu_seconds = end.cpu_ns.saturating_sub(start.cpu_ns) as f64 / 1e9;
    Some(Usage {
        peak_rss_bytes: samples.iter().map(|s| s.rss_bytes).max().unwrap_or(0),
        baseline_rss_bytes: first.rss_bytes,
        end_rss_bytes: end.rss_bytes,
        cpu_seconds,
        cpu_percent: if wall > 0.0 {
            cpu_seconds / wall * 100.0
        } else {
            0.0
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn parses_stat_with_spaces_in_the_command_name() {
        let stat = "1234 (my broker) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 \
                    100 123456 789 18446744073709551615";
        assert_eq!(
            parse_proc(stat, "5000 789 100 1 0 300 0\n"),
            Some((300, 789))
        );
        assert_eq!(parse_proc("garbage", "1 2"), None);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let sample = read_process(0, 5).unwrap();
        assert!(sample.rss_bytes > 0);
        assert_eq!(sample.at_ns, 5);
        assert!(read_process(u32::MAX, 0).is_err());
    }

    #[test]
    fn finish_stops_the_thread_at_once() {
        let sampler = ProcessSampler::start(0, Clock::start()).unwrap();
        std::thread::sleep(SAMPLE_PERIOD * 2 + SAMPLE_PERIOD / 2);
        let started = Instant::now();
        let samples = sampler.finish();
        assert!(started.elapsed() < SAMPLE_PERIOD, "{:?}", started.elapsed());
        assert!(samples.len() >= 3, "{samples:?}");
        assert!(samples.windows(2).all(|w| w[0].at_ns <= w[1].at_ns));
    }

    #[test]
    fn usage_takes_cpu_over_the_window_and_peak_over_the_run() {
        let samples = [
            Sample {
                at_ns: 0,
                rss_bytes: 10,
                cpu_ns: 0,
            },
            Sample {
                at_ns: 1_000_000_000,
                rss_bytes: 50,
                cpu_ns: 100_000_000,
            },
            Sample {
                at_ns: 2_000_000_000,
                rss_bytes: 30,
                cpu_ns: 600_000_000,
            },
            Sample {
                at_ns: 3_000_000_000,
                rss_bytes: 20,
                cpu_ns: 700_000_000,
            },
        ];
        let usage = usage_between(&samples, 1_000_000_000, 2_000_000_000).unwrap();
        assert_eq!(usage.peak_rss_bytes, 50);
        assert_eq!(usage.baseline_rss_bytes, 10);
        assert_eq!(usage.end_rss_bytes, 30);
        assert!((usage.cpu_seconds - 0.5).abs() < 1e-9);
        assert!((usage.cpu_percent - 50.0).abs() < 1e-6);
        assert_eq!(usage_between(&[], 0, 1), None);
    }
}
