//! Delivery accounting: which messages each subscriber received from each stream, and from that
//! how many were lost, duplicated or delivered out of order.
//!
//! A subscriber keeps one [`SeqTracker`] per stream it hears from. After the run, [`reconcile`]
//! compares them with what the publishers sent: a subscriber *expects* every message sent
//! inside the measurement window on each stream whose topic its filter matches. Then
//! - `lost` = expected − distinct sequence numbers received,
//! - `duplicated` = deliveries of a sequence number already received,
//! - `reordered` = deliveries of a sequence number below the highest one already received,
//! - `unexpected` = distinct deliveries beyond what was expected (a broker or generator bug).
//!
//! Untracked messages (payloads too short for the header) can only be counted: their loss is
//! expected − received, and any surplus is reported as duplicated.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use hydrant::topic::{TopicFilter, TopicName};
use serde::Serialize;

/// What one delivery was, compared with the deliveries before it on its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// A new sequence number, above all seen before.
    InOrder,
    /// A new sequence number, below one seen before.
    Reordered,
    /// A sequence number seen before.
    Duplicate,
}

/// The sequence numbers received on one stream, as sorted, disjoint, non-adjacent ranges:
/// one range while delivery is complete and in order, one more per gap.
#[derive(Clone, Debug, Default)]
pub struct SeqTracker {
    /// Half-open ranges `[start, end)` of received sequence numbers.
    ranges: Vec<(u64, u64)>,
    /// Distinct sequence numbers received.
    unique: u64,
    /// Deliveries of a number already received.
    duplicates: u64,
    /// Deliveries below the highest number already received.
    reordered: u64,
}

impl SeqTracker {
    /// Records the delivery of `seq` and says what it was.
    pub fn record(&mut self, seq: u64) -> Arrival {
        let arrival = self.insert(seq);
        match arrival {
            Arrival::InOrder => self.unique += 1,
            Arrival::Reordered => {
                self.unique += 1;
                self.reordered += 1;
            }
            Arrival::Duplicate => self.duplicates += 1,
        }
        arrival
    }

    fn insert(&mut self, seq: u64) -> Arrival {
        let Some(last) = self.ranges.last_mut() else {
            self.ranges.push((seq, seq + 1));
            return Arrival::InOrder;
        };
        if seq == last.1 {
            last.1 += 1;
            return Arrival::InOrder;
        }
        if seq > last.1 {
            self.ranges.push((seq, seq + 1));
            return Arrival::InOrder;
        }
        // Below the highest seen: find the first range that ends after `seq`.
        let at = self.ranges.partition_point(|&(_, end)| end <= seq);
        if at < self.ranges.len() && self.ranges[at].0 <= seq {
            return Arrival::Duplicate;
        }
        let joins_previous = at > 0 && self.ranges[at - 1].1 == seq;
        let joins_next = at < self.ranges.len() && self.ranges[at].0 == seq + 1;
        match (joins_previous, joins_next) {
            (true, true) => {
                self.ranges[at - 1].1 = self.ranges[at].1;
                self.ranges.remove(at);
            }
            (true, false) => self.ranges[at - 1].1 = seq + 1,
            (false, true) => self.ranges[at].0 = seq,
            (false, false) => self.ranges.insert(at, (seq, seq + 1)),
        }
        Arrival::Reordered
    }

    /// Distinct sequence numbers received.
    pub fn unique(&self) -> u64 {
        self.unique
    }

    /// Deliveries of a number already received.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Deliveries below the highest number already received.
    pub fn reordered(&self) -> u64 {
        self.reordered
    }

    /// Number of gaps between received ranges (each is at least one lost or late message).
    pub fn gaps(&self) -> usize {
        self.ranges.len().saturating_sub(1)
    }
}

/// Hashes stream ids (dense small integers) with one multiplication instead of SipHash: the
/// lookup is on every delivery.
#[derive(Default, Clone, Copy)]
pub struct StreamIdHasher(u64);

impl Hasher for StreamIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, value: u32) {
        self.0 = u64::from(value).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Trackers by stream id.
pub type StreamTrackers = HashMap<u32, SeqTracker, BuildHasherDefault<StreamIdHasher>>;

/// Everything one subscriber received inside the measurement window.
#[derive(Clone, Debug, Default)]
pub struct SubscriberLedger {
    /// One tracker per stream heard from.
    pub streams: StreamTrackers,
    /// Deliveries whose payload carried no tracking header (counted only).
    pub untracked: u64,
}

impl SubscriberLedger {
    /// Records a tracked delivery.
    pub fn record(&mut self, stream: u32, seq: u64) -> Arrival {
        self.streams.entry(stream).or_default().record(seq)
    }
}

/// One stream as the publishers report it after the run.
#[derive(Clone, Debug)]
pub struct StreamOutcome {
    /// Index of the publisher that owns the stream.
    pub publisher: usize,
    /// The topic the stream publishes on.
    pub topic: TopicName,
    /// Messages sent inside the measurement window.
    pub sent_in_window: u64,
    /// Whether its payloads carry the tracking header.
    pub tracked: bool,
}

/// One subscriber as it is known after the run.
#[derive(Clone, Debug)]
pub struct SubscriberOutcome<'a> {
    /// The subscriber's filter.
    pub filter: &'a TopicFilter,
    /// What it received.
    pub ledger: &'a SubscriberLedger,
}

/// Delivery figures, for one (publisher, subscriber) pair or added up over the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryCounts {
    /// Messages the subscriber should have received.
    pub expected: u64,
    /// Deliveries, duplicates included.
    pub delivered: u64,
    /// Distinct messages received.
    pub unique: u64,
    /// Expected messages never received.
    pub lost: u64,
    /// Deliveries of a message already received.
    pub duplicated: u64,
    /// Deliveries that came after a later message of the same stream.
    pub reordered: u64,
    /// Distinct messages received that were not expected.
    pub unexpected: u64,
}

impl DeliveryCounts {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &DeliveryCounts) {
        self.expected += other.expected;
        self.delivered += other.delivered;
        self.unique += other.unique;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.unexpected += other.unexpected;
    }

    /// True when something went wrong for this pair.
    pub fn is_anomalous(&self) -> bool {
        self.lost + self.duplicated + self.reordered + self.unexpected > 0
    }

    /// Lost messages as a fraction of expected ones (0 when nothing was expected).
    pub fn loss_ratio(&self) -> f64 {
        if self.expected == 0 {
            0.0
        } else {
            self.lost as f64 / self.expected as f64
        }
    }
}

/// The figures of one (publisher, subscriber) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PairCounts {
    /// Publisher index.
    pub publisher: usize,
    /// Subscriber index.
    pub subscriber: usize,
    /// Its figures.
    pub counts: DeliveryCounts,
}

/// The reconciled result of a run.
#[derive(Clone, Debug, Default)]
pub struct Reconciliation {
    /// Totals over every pair.
    pub totals: DeliveryCounts,
    /// Every (publisher, subscriber) pair with at least one expected or received message.
    pub pairs: Vec<PairCounts>,
}

/// Compares what every subscriber received with what the publishers sent (see the module doc).
pub fn reconcile(
    streams: &[StreamOutcome],
    subscribers: &[SubscriberOutcome<'_>],
) -> Reconciliation {
    let mut result = Reconciliation::default();
    for (sub_index, subscriber) in subscribers.iter().enumerate() {
        let mut per_publisher: HashMap<usize, DeliveryCounts> = HashMap::new();
        let mut untracked_expected = 0u64;
        let mut untracked_publisher = None;
        for (stream_id, stream) in streams.iter().enumerate() {
            let matches = subscriber.filter.matches(&stream.topic);
            if !stream.tracked {
                if matches {
                    untracked_expected += stream.sent_in_window;
                    untracked_publisher.get_or_insert(stream.publisher);
                }
                continue;
            }
            let tracker = u32::try_from(stream_id)
                .ok()
                .and_then(|id| subscriber.ledger.streams.get(&id));
            if !matches && tracker.is_none() {
                continue;
            }
            let expected = if matches { stream.sent_in_window } else { 0 };
            let (unique, duplicates, reordered) =
                tracker.map_or((0, 0, 0), |t| (t.unique(), t.duplicates(), t.reordered()));
            let counts = per_publisher.entry(stream.publisher).or_default();
            counts.add(&DeliveryCounts {
                expected,
                delivered: unique + duplicates,
                unique,
                lost: expected.saturating_sub(unique),
                duplicated: duplicates,
                reordered,
                unexpected: unique.saturating_sub(expected),
            });
        }
        let received = subscriber.ledger.untracked;
        if untracked_expected > 0 || received > 0 {
            let counted = received.min(untracked_expected);
            let counts = per_publisher
                .entry(untracked_publisher.unwrap_or(usize::MAX))
                .or_default();
            counts.add(&DeliveryCounts {
                expected: untracked_expected,
                delivered: received,
                unique: counted,
                lost: untracked_expected - counted,
                duplicated: received - counted,
                reordered: 0,
                unexpected: 0,
            });
        }
        let mut pairs: Vec<_> = per_publisher.into_iter().collect();
        pairs.sort_by_key(|&(publisher, _)| publisher);
        for (publisher, counts) in pairs {
            result.totals.add(&counts);
            result.pairs.push(PairCounts {
                publisher,
                subscriber: sub_index,
                counts,
            });
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker_of(seqs: &[u64]) -> SeqTracker {
        let mut tracker = SeqTracker::default();
        for &seq in seqs {
            tracker.record(seq);
        }
        tracker
    }

    #[test]
    fn in_order_delivery_is_one_range() {
        let mut tracker = SeqTracker::default();
        for seq in 0..1000 {
            assert_eq!(tracker.record(seq), Arrival::InOrder);
        }
        assert_eq!(tracker.unique(), 1000);
        assert_eq!(tracker.gaps(), 0);
        assert_eq!((tracker.duplicates(), tracker.reordered()), (0, 0));
    }

    #[test]
    fn gaps_duplicates_and_late_arrivals_are_told_apart() {
        let mut tracker = SeqTracker::default();
        assert_eq!(tracker.record(0), Arrival::InOrder);
        assert_eq!(tracker.record(1), Arrival::InOrder);
        assert_eq!(tracker.record(4), Arrival::InOrder);
        assert_eq!(tracker.gaps(), 1);
        assert_eq!(tracker.record(1), Arrival::Duplicate);
        assert_eq!(tracker.record(4), Arrival::Duplicate);
        assert_eq!(tracker.record(3), Arrival::Reordered);
        assert_eq!(tracker.record(2), Arrival::Reordered);
        assert_eq!(tracker.gaps(), 0);
        assert_eq!(tracker.record(2), Arrival::Duplicate);
        assert_eq!(tracker.unique(), 5);
        assert_eq!(tracker.duplicates(), 3);
        assert_eq!(tracker.reordered(), 2);
    }

    #[test]
    fn late_arrivals_below_the_first_seen_are_reordered_not_duplicates() {
        let mut tracker = tracker_of(&[10, 11]);
        assert_eq!(tracker.record(5), Arrival::Reordered);
        assert_eq!(tracker.record(9), Arrival::Reordered);
        assert_eq!(tracker.record(7), Arrival::Reordered);
        assert_eq!(tracker.record(7), Arrival::Duplicate);
        assert_eq!(tracker.gaps(), 2);
        assert_eq!(tracker.unique(), 5);
    }

    #[test]
    fn tracker_matches_a_naive_set_on_random_sequences() {
        let mut rng = crate::rng::Rng::new(11);
        for _ in 0..200 {
            let mut tracker = SeqTracker::default();
            let mut seen = std::collections::BTreeSet::new();
            let mut max = None;
            for _ in 0..200 {
                let seq = rng.below(120) as u64;
                let expected = if seen.contains(&seq) {
                    Arrival::Duplicate
                } else if max.is_some_and(|m| seq < m) {
                    Arrival::Reordered
                } else {
                    Arrival::InOrder
                };
                assert_eq!(tracker.record(seq), expected);
                seen.insert(seq);
                max = max.max(Some(seq));
            }
            assert_eq!(tracker.unique(), seen.len() as u64);
        }
    }

    fn topic(text: &str) -> TopicName {
        TopicName::try_from(text).unwrap()
    }

    fn filter(text: &str) -> TopicFilter {
        TopicFilter::try_from(text).unwrap()
    }

    #[test]
    fn reconcile_counts_loss_per_pair_and_only_for_matching_topics() {
        let streams = vec![
            StreamOutcome {
                publisher: 0,
                topic: topic("a/1"),
                sent_in_window: 10,
                tracked: true,
            },
            StreamOutcome {
                publisher: 1,
                topic: topic("b/1"),
                sent_in_window: 5,
                tracked: true,
            },
        ];
        let mut complete = SubscriberLedger::default();
        for seq in 0..10 {
            complete.record(0, seq);
        }
        let mut lossy = SubscriberLedger::default();
        for seq in [0, 1, 2, 2, 5, 4] {
            lossy.record(0, seq);
        }
        for seq in 0..5 {
            lossy.record(1, seq);
        }
        let (all, a_only) = (filter("#"), filter("a/+"));
        let subscribers = [
            SubscriberOutcome {
                filter: &a_only,
                ledger: &complete,
            },
            SubscriberOutcome {
                filter: &all,
                ledger: &lossy,
            },
        ];
        let result = reconcile(&streams, &subscribers);
        assert_eq!(result.pairs.len(), 3);
        assert!(!result.pairs[0].counts.is_anomalous());
        let lossy_a = result.pairs[1].counts;
        assert_eq!(lossy_a.expected, 10);
        assert_eq!(lossy_a.unique, 5);
        assert_eq!(lossy_a.lost, 5);
        assert_eq!(lossy_a.duplicated, 1);
        assert_eq!(lossy_a.reordered, 1);
        assert_eq!(result.totals.expected, 25);
        assert_eq!(result.totals.delivered, 21);
        assert_eq!(result.totals.lost, 5);
    }

    #[test]
    fn deliveries_on_a_stream_the_filter_does_not_match_are_unexpected() {
        let streams = vec![StreamOutcome {
            publisher: 0,
            topic: topic("x"),
            sent_in_window: 3,
            tracked: true,
        }];
        let mut ledger = SubscriberLedger::default();
        ledger.record(0, 0);
        let other = filter("y");
        let result = reconcile(
            &streams,
            &[SubscriberOutcome {
                filter: &other,
                ledger: &ledger,
            }],
        );
        assert_eq!(result.totals.expected, 0);
        assert_eq!(result.totals.unexpected, 1);
    }

    #[test]
    fn untracked_messages_are_counted() {
        let streams = vec![StreamOutcome {
            publisher: 0,
            topic: topic("pybench"),
            sent_in_window: 100,
            tracked: false,
        }];
        let all = filter("pybench/#");
        let short = SubscriberLedger {
            untracked: 90,
            ..SubscriberLedger::default()
        };
        let surplus = SubscriberLedger {
            untracked: 103,
            ..SubscriberLedger::default()
        };
        let result = reconcile(
            &streams,
            &[
                SubscriberOutcome {
                    filter: &all,
                    ledger: &short,
                },
                SubscriberOutcome {
                    filter: &all,
                    ledger: &surplus,
                },
            ],
        );
        assert_eq!(result.totals.expected, 200);
        assert_eq!(result.totals.delivered, 193);
        assert_eq!(result.totals.lost, 10);
        assert_eq!(result.totals.duplicated, 3);
    }
}
