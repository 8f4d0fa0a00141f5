//! Slow-consumer visibility with bounded cardinality: the few clients whose outgoing queues
//! lag most, and the start and end of a client's dropping episodes (for one log line each,
//! not one per dropped message).

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Default number of slow clients reported (`slow_clients_top`).
pub const DEFAULT_SLOW_CLIENTS_TOP: usize = 10;

/// How far behind one client's outgoing queue is, as its core saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlowClient {
    /// The client id (shared with the session that holds it).
    pub client_id: Arc<str>,
    /// The core holding the client's session.
    pub core: usize,
    /// Messages waiting in its outgoing queue.
    pub queued_messages: u64,
    /// Bytes waiting in its outgoing queue.
    pub queued_bytes: u64,
    /// Age of the oldest message waiting: how far behind the live stream the client is.
    pub oldest_queued: Duration,
    /// Messages dropped for it since it connected.
    pub dropped: u64,
}

impl SlowClient {
    /// Orders clients worst first: the oldest waiting message, then the longest queue, then
    /// the most drops; the client id last, so that the order is total.
    fn worse_first(&self, other: &SlowClient) -> Ordering {
        other
            .oldest_queued
            .cmp(&self.oldest_queued)
            .then(other.queued_messages.cmp(&self.queued_messages))
            .then(other.dropped.cmp(&self.dropped))
            .then_with(|| self.client_id.cmp(&other.client_id))
    }
}

/// The `limit` worst [`SlowClient`]s among those offered, worst first, each client id once:
/// each core keeps one for its own clients, and the aggregating core merges them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopSlowClients {
    limit: usize,
    clients: Vec<SlowClient>,
}

impl TopSlowClients {
    /// An empty list that keeps at most `limit` clients (0 keeps none).
    #[must_use]
    pub fn new(limit: usize) -> Self {
        TopSlowClients {
            limit,
            clients: Vec::new(),
        }
    }

    /// How many clients the list keeps at most.
    #[must_use]
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Considers one client: kept if it is among the `limit` worst. A client id already in
    /// the list keeps its worse record (a client seen on two cores around a takeover).
    pub fn offer(&mut self, client: SlowClient) {
        if self.limit == 0 {
            return;
        }
        if let Some(position) = self
            .clients
            .iter()
            .position(|known| known.client_id == client.client_id)
        {
            if client.worse_first(&self.clients[position]) != Ordering::Less {
                return;
            }
            self.clients.remove(position);
        }
        let position = self
            .clients
            .partition_point(|known| known.worse_first(&client) == Ordering::Less);
        if position >= self.limit {
            return;
        }
        self.clients.insert(position, client);
        self.clients.truncate(self.limit);
    }

    /// Offers every client of `other`.
    pub fn merge(&mut self, other: &TopSlowClients) {
        for client in &other.clients {
            self.offer(client.clone());
        }
    }

    /// The clients kept, worst first.
    pub fn iter(&self) -> impl Iterator<Item = &SlowClient> {
        self.clients.iter()
    }

    /// How many clients are kept.
    #[must_use]
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether no client is kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

impl Default for TopSlowClients {
    fn default() -> Self {
        TopSlowClients::new(DEFAULT_SLOW_CLIENTS_TOP)
    }
}

/// A change in whether a client is losing messages, worth one log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropTransition {
    /// The client started losing messages: `dropped` were lost since the last look.
    Started {
        /// Messages dropped since the previous observation.
        dropped: u64,
    },
    /// The client lost nothing for a whole observation period; `dropped` were lost in the
    /// episode that ended.
    Stopped {
        /// Messages dropped during the episode.
        dropped: u64,
    },
}

/// Per-connection memory of its drop count at the previous look (kept by the connection,
/// looked at once per snapshot period), so that a client dropping for minutes gives two log
/// lines rather than one per message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropWatch {
    /// The connection's drop count at the previous observation.
    seen: u64,
    /// The count when the current episode started, if one is under way.
    episode_start: Option<u64>,
}

impl DropWatch {
    /// Compares the connection's drop count so far with the previous look.
    pub fn observe(&mut self, dropped_so_far: u64) -> Option<DropTransition> {
        let new = dropped_so_far.saturating_sub(self.seen);
        let previous = self.seen;
        self.seen = dropped_so_far;
        match (self.episode_start, new) {
            (None, 0) | (Some(_), 1..) => None,
            (None, _) => {
                self.episode_start = Some(previous);
                Some(DropTransition::Started { dropped: new })
            }
            (Some(start), 0) => {
                self.episode_start = None;
                Some(DropTransition::Stopped {
                    dropped: dropped_so_far.saturating_sub(start),
                })
            }
        }
    }

    /// Whether the client lost messages during the last observation period.
    #[must_use]
    pub fn is_dropping(&self) -> bool {
        self.episode_start.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: &str, oldest_ms: u64, queued: u64) -> SlowClient {
        SlowClient {
            client_id: Arc::from(id),
            core: 0,
            queued_messages: queued,
            queued_bytes: queued * 100,
            oldest_queued: Duration::from_millis(oldest_ms),
            dropped: 0,
        }
    }

    fn ids(top: &TopSlowClients) -> Vec<&str> {
        top.iter().map(|c| &*c.client_id).collect()
    }

    #[test]
    fn keeps_the_worst_in_order() {
        let mut top = TopSlowClients::new(3);
        for (id, age) in [("a", 5), ("b", 50), ("c", 1), ("d", 500), ("e", 20)] {
            top.offer(client(id, age, 1));
        }
        assert_eq!(ids(&top), ["d", "b", "e"]);
        assert_eq!(top.len(), 3);
    }

    #[test]
    fn ties_break_on_queue_length_then_id() {
        let mut top = TopSlowClients::new(3);
        top.offer(client("b", 10, 1));
        top.offer(client("a", 10, 1));
        top.offer(client("c", 10, 7));
        assert_eq!(ids(&top), ["c", "a", "b"]);
    }

    #[test]
    fn a_client_appears_once_with_its_worst_record() {
        let mut top = TopSlowClients::new(5);
        top.offer(client("a", 10, 1));
        top.offer(client("a", 90, 3));
        top.offer(client("a", 20, 1));
        assert_eq!(top.len(), 1);
        assert_eq!(
            top.iter().next().unwrap().oldest_queued,
            Duration::from_millis(90)
        );
    }

    #[test]
    fn limit_zero_keeps_nothing() {
        let mut top = TopSlowClients::new(0);
        top.offer(client("a", 10, 1));
        assert!(top.is_empty());
    }

    #[test]
    fn merging_cores_keeps_the_global_worst() {
        let mut first = TopSlowClients::new(2);
        first.offer(client("a", 10, 1));
        first.offer(client("b", 30, 1));
        let mut second = TopSlowClients::new(2);
        second.offer(client("c", 20, 1));
        second.offer(client("d", 40, 1));
        first.merge(&second);
        assert_eq!(ids(&first), ["d", "b"]);
    }

    #[test]
    fn drop_watch_reports_episodes_once() {
        let mut watch = DropWatch::default();
        assert_eq!(watch.observe(0), None);
        assert_eq!(
            watch.observe(5),
            Some(DropTransition::Started { dropped: 5 })
        );
        assert!(watch.is_dropping());
        assert_eq!(watch.observe(9), None);
        assert_eq!(watch.observe(12), None);
        assert_eq!(
            watch.observe(12),
            Some(DropTransition::Stopped { dropped: 12 })
        );
        assert!(!watch.is_dropping());
        assert_eq!(watch.observe(12), None);
        assert_eq!(
            watch.observe(13),
            Some(DropTransition::Started { dropped: 1 })
        );
        assert_eq!(
            watch.observe(13),
            Some(DropTransition::Stopped { dropped: 1 })
        );
    }
}
