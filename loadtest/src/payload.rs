//! What a generated message carries: a fixed 24-byte tracking header, then a body.
//!
//! ```text
//! offset  size  field
//!      0     4  magic "HLT1"
//!      4     8  send time, nanoseconds since the run's clock epoch (big endian)
//!     12     4  stream id: one (publisher, topic) pair of the run (big endian)
//!     16     8  sequence number within the stream, from 0 (big endian)
//!     24     …  body: filler text, or a JSON document for the firehose scenario
//! ```
//!
//! Publishers and subscribers of one run live in one process and read one [`Clock`], so the
//! difference between a header's send time and the time of delivery is the publish→deliver
//! latency. A payload shorter than the header (pymqttbench's original 0-byte payloads) cannot
//! be tracked: such deliveries are only counted.

use std::time::{Duration, Instant};

use crate::rng::Rng;

/// Size of the tracking header; the smallest payload that can be tracked.
pub const HEADER_LEN: usize = 24;

/// First bytes of every tracked payload, so foreign messages on the same topics are told apart.
pub const MAGIC: [u8; 4] = *b"HLT1";

/// The tracking fields of one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// When the publisher wrote the message, in [`Clock`] nanoseconds.
    pub sent_at_ns: u64,
    /// The (publisher, topic) stream the message belongs to.
    pub stream: u32,
    /// Position of the message in its stream, from 0 without gaps.
    pub seq: u64,
}

impl Header {
    /// Writes the header over the first [`HEADER_LEN`] bytes of `out`; a shorter `out` is left
    /// untouched (its message is untracked).
    pub fn write(&self, out: &mut [u8]) {
        let Some(head) = out.get_mut(..HEADER_LEN) else {
            return;
        };
        head[0..4].copy_from_slice(&MAGIC);
        head[4..12].copy_from_slice(&self.sent_at_ns.to_be_bytes());
        head[12..16].copy_from_slice(&self.stream.to_be_bytes());
        head[16..24].copy_from_slice(&self.seq.to_be_bytes());
    }

    /// Reads the header of a payload, or `None` if it does not start with one.
    pub fn read(payload: &[u8]) -> Option<Header> {
        let head: &[u8; HEADER_LEN] = payload.get(..HEADER_LEN)?.try_into().ok()?;
        if head[0..4] != MAGIC {
            return None;
        }
        let u64_at = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&head[at..at + 8]);
            u64::from_be_bytes(word)
        };
        let mut stream = [0u8; 4];
        stream.copy_from_slice(&head[12..16]);
        Some(Header {
            sent_at_ns: u64_at(4),
            stream: u32::from_be_bytes(stream),
            seq: u64_at(16),
        })
    }
}

/// What "never" becomes when a clock reading is turned into an instant.
const FAR_FUTURE: Duration = Duration::from_secs(365 * 24 * 3600);

/// The run's shared time base: nanoseconds since an epoch taken once at start-up.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// The instant that reads as 0.
    epoch: Instant,
}

impl Clock {
    /// A clock whose epoch is now.
    pub fn start() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }

    /// Nanoseconds since the epoch.
    pub fn now_ns(&self) -> u64 {
        self.ns_at(Instant::now())
    }

    /// The clock reading of `instant` (0 before the epoch; saturates after 584 years).
    pub fn ns_at(&self, instant: Instant) -> u64 {
        u64::try_from(instant.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The instant of a clock reading (readings beyond a year from now, such as "never",
    /// give an instant a year from now).
    pub fn instant_at(&self, ns: u64) -> Instant {
        let far = Instant::now() + FAR_FUTURE;
        self.epoch
            .checked_add(Duration::from_nanos(ns))
            .map_or(far, |at| at.min(far))
    }
}

/// Filler text for bodies that need no structure.
const FILLER: &[u8] = b"hydrant-loadtest payload filler; ";

/// A payload of `size` bytes: room for the header (zeroed, written per message), then filler.
pub fn filler_payload(size: usize) -> Vec<u8> {
    let mut payload = vec![0u8; size];
    for (i, byte) in payload.iter_mut().enumerate().skip(HEADER_LEN) {
        *byte = FILLER[(i - HEADER_LEN) % FILLER.len()];
    }
    payload
}

/// The Gerrit event types the firehose publishes, as in its topic tree's last level.
pub const GERRIT_EVENTS: [&str; 11] = [
    "change-abandoned",
    "change-merged",
    "change-restored",
    "comment-added",
    "draft-published",
    "hashtags-changed",
    "merge-failed",
    "patchset-created",
    "ref-updated",
    "reviewer-added",
    "topic-changed",
];

/// Words for review comments, so JSON bodies read like the real event stream.
const COMMENT_WORDS: [&str; 16] = [
    "patch", "looks", "good", "recheck", "zuul", "gate", "nit:", "please", "rebase", "the", "test",
    "fails", "on", "py3", "workflow", "+1",
];

/// A payload of exactly `size` bytes: the header's room, then a Gerrit-like event as JSON whose
/// comment text is padded so the whole payload has the requested size. Sizes too small for the
/// JSON skeleton fall back to filler.
pub fn gerrit_event_payload(
    rng: &mut Rng,
    size: usize,
    namespace: &str,
    repo: &str,
    event: &str,
) -> Vec<u8> {
    let change = 100_000 + rng.below(900_000);
    let patchset = 1 + rng.below(30);
    let head = format!(
        concat!(
            "{{\"type\":\"{event}\",\"change\":{{\"project\":\"{ns}/{repo}\",",
            "\"branch\":\"master\",\"id\":\"I{id:040x}\",\"number\":{change},",
            "\"subject\":\"Update {repo} for the firehose\",\"owner\":{{\"name\":",
            "\"Jane Developer\",\"username\":\"jdev\"}},\"url\":",
            "\"https://review.example.org/{change}\",\"status\":\"NEW\"}},",
            "\"patchSet\":{{\"number\":{ps},\"revision\":\"{rev:040x}\",",
            "\"ref\":\"refs/changes/{short:02}/{change}/{ps}\",\"kind\":\"REWORK\"}},",
            "\"author\":{{\"name\":\"Zuul\",\"username\":\"zuul\"}},",
            "\"eventCreatedOn\":{created},\"comment\":\""
        ),
        event = event,
        ns = namespace,
        repo = repo,
        id = rng.next_u64(),
        change = change,
        ps = patchset,
        rev = rng.next_u64(),
        short = change % 100,
        created = 1_500_000_000 + rng.below(100_000_000),
    );
    let tail = "\"}";
    let fixed = HEADER_LEN + head.len() + tail.len();
    if size < fixed {
        return filler_payload(size);
    }
    let mut payload = Vec::with_capacity(size);
    payload.resize(HEADER_LEN, 0);
    payload.extend_from_slice(head.as_bytes());
    let mut room = size - fixed;
    while room > 0 {
        let word = COMMENT_WORDS[rng.below(COMMENT_WORDS.len())].as_bytes();
        let take = word.len().min(room);
        payload.extend_from_slice(&word[..take]);
        room -= take;
        if room > 0 {
            payload.push(b' ');
            room -= 1;
        }
    }
    payload.extend_from_slice(tail.as_bytes());
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_has_fixed_wire_layout() {
        let header = Header {
            sent_at_ns: 0x0102_0304_0506_0708,
            stream: 0x0A0B_0C0D,
            seq: 42,
        };
        let mut payload = filler_payload(40);
        header.write(&mut payload);
        assert_eq!(&payload[..4], b"HLT1");
        assert_eq!(&payload[4..12], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&payload[12..16], &[0x0A, 0x0B, 0x0C, 0x0D]);
        assert_eq!(&payload[16..24], &[0, 0, 0, 0, 0, 0, 0, 42]);
        assert_eq!(Header::read(&payload), Some(header));
        assert_eq!(&payload[24..28], b"hydr");
    }

    #[test]
    fn short_or_foreign_payloads_are_untracked() {
        assert_eq!(Header::read(b""), None);
        assert_eq!(Header::read(&[0u8; 23]), None);
        assert_eq!(Header::read(&filler_payload(64)), None);
        let mut short = vec![0u8; 10];
        Header {
            sent_at_ns: 1,
            stream: 1,
            seq: 1,
        }
        .write(&mut short);
        assert_eq!(short, vec![0u8; 10]);
    }

    #[test]
    fn gerrit_payloads_have_the_exact_size_and_a_json_body() {
        let mut rng = Rng::new(3);
        for size in [700, 1024, 4096, 10_240] {
            let payload =
                gerrit_event_payload(&mut rng, size, "openstack", "nova", "comment-added");
            assert_eq!(payload.len(), size);
            let body = std::str::from_utf8(&payload[HEADER_LEN..]).unwrap();
            let value: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(value["type"], "comment-added");
            assert_eq!(value["change"]["project"], "openstack/nova");
        }
        assert_eq!(
            gerrit_event_payload(&mut rng, 100, "a", "b", "c").len(),
            100
        );
    }

    #[test]
    fn clock_readings_map_back_to_instants() {
        let clock = Clock::start();
        let ns = clock.now_ns();
        let back = clock.ns_at(clock.instant_at(ns));
        assert_eq!(back, ns);
    }
}
