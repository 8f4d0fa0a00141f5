//! The subscription trie: every subscription of one core, indexed by filter level, so that
//! finding the subscribers of a PUBLISH costs one walk down the topic's levels rather than a
//! scan over every filter.
//!
//! Shape: a node per filter level. Literal levels hang in a hash map keyed by their text, the
//! `+` level has its own slot, and the subscribers of `<level>/#` are kept on the node of
//! `<level>` itself, beside the subscribers whose filter ends there. Like Mosquitto, filters
//! and topics that do not start with `$` live under one root (Mosquitto's empty root token)
//! and `$` topics under another whose wildcard slots are never filled, so `#` and `+` cannot
//! reach `$SYS/...` by the shape of the tree rather than by a test during the walk
//! [MQTT-4.7.2-1].

use std::fmt;
use std::hash::Hash;
use std::mem;

use ahash::AHashMap;
use smallvec::SmallVec;

use super::name::split_first_level;
use super::{TopicFilter, TopicName};

/// Walks of ordinary depth keep their pending branches on the stack, not the heap.
const INLINE_PENDING: usize = 32;

/// A subscriber set builds its key index once it holds this many entries; below it a linear
/// scan over the contiguous entries is faster than hashing and costs no memory.
const INDEX_FROM_LEN: usize = 16;

/// A subscriber set drops its key index once it shrinks to this many entries (hysteresis, so
/// a set hovering around the threshold does not rebuild its index on every change).
const INDEX_UNTIL_LEN: usize = 4;

/// Every subscription of one core: filter -> subscribers, matched against a topic name.
pub struct SubscriptionTrie<K, V> {
    /// Mosquitto's empty root token: everything whose first level does not start with `$`,
    /// including every filter whose first level is a wildcard.
    plain: Node<K, V>,
    /// Root of first levels starting with `$`: only literal children, so a wildcard filter
    /// can never match a `$` topic.
    dollar: Node<K, V>,
    /// Number of (filter, key) subscriptions.
    len: usize,
}

impl<K: Copy + Eq + Hash, V> SubscriptionTrie<K, V> {
    /// An empty trie.
    pub fn new() -> Self {
        Self {
            plain: Node::default(),
            dollar: Node::default(),
            len: 0,
        }
    }

    /// Adds or replaces `key`'s subscription to `filter`; returns the value it replaced.
    pub fn insert(&mut self, filter: &TopicFilter, key: K, value: V) -> Option<V> {
        let route = Route::of(filter);
        let mut node = self.realm_mut(route.dollar);
        for edge in route.edges() {
            node = node.child_or_insert(edge);
        }
        let replaced = node.slot_mut(route.slot).insert(key, value);
        if replaced.is_none() {
            self.len += 1;
        }
        replaced
    }

    /// Removes `key`'s subscription to `filter`; returns its value. Empty nodes are pruned, so
    /// memory follows the live subscriptions, not the history.
    pub fn remove(&mut self, filter: &TopicFilter, key: K) -> Option<V> {
        let route = Route::of(filter);
        let mut node = self.realm_mut(route.dollar);
        for edge in route.edges() {
            node = node.child_mut(edge)?;
        }
        let removed = node.slot_mut(route.slot).remove(key)?;
        let emptied = node.is_empty();
        self.len -= 1;
        if emptied {
            self.prune(&route);
        }
        Some(removed)
    }

    /// Calls `visit` once for every (key, value) whose filter matches `topic` (a key
    /// subscribed through two overlapping filters is visited twice: the caller dedupes).
    pub fn for_each_match(&self, topic: &TopicName, mut visit: impl FnMut(K, &V)) {
        let mut pending: Pending<'_, '_, K, V> = SmallVec::new();
        let mut step = Some((self.realm(topic.is_dollar()), Some(topic.as_str())));
        while let Some((node, rest)) = step.take().or_else(|| pending.pop()) {
            // `#` matches the level it hangs under and every level below it.
            node.multi.visit(&mut visit);
            match rest {
                None => node.exact.visit(&mut visit),
                Some(rest) => step = node.descend(rest, &mut pending),
            }
        }
    }

    /// Whether any subscription matches `topic` (early exit; used to decide whether to forward
    /// a publish to a core).
    pub fn has_match(&self, topic: &TopicName) -> bool {
        let mut pending: Pending<'_, '_, K, V> = SmallVec::new();
        let mut step = Some((self.realm(topic.is_dollar()), Some(topic.as_str())));
        while let Some((node, rest)) = step.take().or_else(|| pending.pop()) {
            if !node.multi.is_empty() {
                return true;
            }
            match rest {
                None if !node.exact.is_empty() => return true,
                None => {}
                Some(rest) => step = node.descend(rest, &mut pending),
            }
        }
        false
    }

    /// Subscriptions of one filter (exact filter, no matching), for diagnostics and tests.
    pub fn subscribers(&self, filter: &TopicFilter) -> impl Iterator<Item = (K, &V)> {
        let route = Route::of(filter);
        let mut node = Some(self.realm(route.dollar));
        for edge in route.edges() {
            node = node.and_then(|n| n.child(edge));
        }
        let entries = node.map_or(&[][..], |n| n.slot(route.slot).entries.as_slice());
        entries.iter().map(|(key, value)| (*key, value))
    }

    /// Number of (filter, key) subscriptions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the trie holds no subscription.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of level nodes below the two roots: what the trie costs in memory beyond its
    /// subscribers, for diagnostics (it is zero when the trie is empty, since removal prunes).
    pub fn node_count(&self) -> usize {
        let mut count = 0;
        let mut pending: SmallVec<[&Node<K, V>; INLINE_PENDING]> = SmallVec::new();
        pending.push(&self.plain);
        pending.push(&self.dollar);
        while let Some(node) = pending.pop() {
            let before = pending.len();
            pending.extend(node.children.values());
            pending.extend(node.single.as_deref());
            count += pending.len() - before;
        }
        count
    }

    /// The root a topic or filter hangs under.
    fn realm(&self, dollar: bool) -> &Node<K, V> {
        if dollar {
            &self.dollar
        } else {
            &self.plain
        }
    }

    /// The root a topic or filter hangs under, for changes.
    fn realm_mut(&mut self, dollar: bool) -> &mut Node<K, V> {
        if dollar {
            &mut self.dollar
        } else {
            &mut self.plain
        }
    }

    /// Removes the chain of nodes that `route` leads to, now that its last node is empty: the
    /// cut is made below the deepest node on the path that still holds something else.
    fn prune(&mut self, route: &Route<'_>) {
        let mut cut_depth = 0;
        let mut node = self.realm(route.dollar);
        for (depth, edge) in route.edges().enumerate() {
            if depth > 0 && !node.is_only_a_link() {
                cut_depth = depth;
            }
            match node.child(edge) {
                Some(child) => node = child,
                None => return,
            }
        }
        let mut node = self.realm_mut(route.dollar);
        let mut edges = route.edges();
        for edge in edges.by_ref().take(cut_depth) {
            match node.child_mut(edge) {
                Some(child) => node = child,
                None => return,
            }
        }
        if let Some(edge) = edges.next() {
            node.remove_child(edge);
        }
    }
}

impl<K: Copy + Eq + Hash, V> Default for SubscriptionTrie<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Copy + Eq + Hash, V> fmt::Debug for SubscriptionTrie<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionTrie")
            .field("len", &self.len)
            .field("nodes", &self.node_count())
            .finish()
    }
}

/// Branches still to walk: a node and the rest of the topic below it (`None` once every
/// level of the topic has been consumed).
type Pending<'t, 's, K, V> = SmallVec<[(&'t Node<K, V>, Option<&'s str>); INLINE_PENDING]>;

/// One level of the trie.
struct Node<K, V> {
    /// Subscribers whose filter ends at this level (`a/b` on the node of `b`).
    exact: Subscribers<K, V>,
    /// Subscribers of `<this level>/#`, which match this level and every level below.
    multi: Subscribers<K, V>,
    /// The `+` level below this one.
    single: Option<Box<Node<K, V>>>,
    /// The literal levels below this one, by their text.
    children: AHashMap<Box<str>, Node<K, V>>,
}

impl<K, V> Default for Node<K, V> {
    fn default() -> Self {
        Self {
            exact: Subscribers::default(),
            multi: Subscribers::default(),
            single: None,
            children: AHashMap::new(),
        }
    }
}

impl<K, V> Drop for Node<K, V> {
    /// Takes a subtree apart level by level: the default recursive drop of a filter with
    /// tens of thousands of levels (which a client may send) could overflow the stack.
    fn drop(&mut self) {
        if self.children.is_empty() && self.single.is_none() {
            return;
        }
        let mut orphans = Vec::new();
        self.detach_children(&mut orphans);
        while let Some(mut orphan) = orphans.pop() {
            orphan.detach_children(&mut orphans);
        }
    }
}

impl<K, V> Node<K, V> {
    /// Moves the nodes below this one into `orphans`.
    fn detach_children(&mut self, orphans: &mut Vec<Self>) {
        orphans.extend(mem::take(&mut self.children).into_values());
        orphans.extend(self.single.take().map(|single| *single));
    }
}

impl<K: Copy + Eq + Hash, V> Node<K, V> {
    /// The next step of a walk down the first level of `rest`: the literal child of that
    /// level, else the `+` level, with what remains after it. When both exist the `+` level
    /// is queued in `pending`, so a walk that does not branch never touches the queue.
    fn descend<'t, 's>(
        &'t self,
        rest: &'s str,
        pending: &mut Pending<'t, 's, K, V>,
    ) -> Option<(&'t Self, Option<&'s str>)> {
        let (level, next) = split_first_level(rest);
        let single = self.single.as_deref();
        let literal = if self.children.is_empty() {
            None
        } else {
            self.children.get(level)
        };
        match (literal, single) {
            (Some(literal), Some(single)) => {
                pending.push((single, next));
                Some((literal, next))
            }
            (Some(node), None) | (None, Some(node)) => Some((node, next)),
            (None, None) => None,
        }
    }

    fn child(&self, edge: Edge<'_>) -> Option<&Self> {
        match edge {
            Edge::Literal(level) => self.children.get(level),
            Edge::Single => self.single.as_deref(),
        }
    }

    fn child_mut(&mut self, edge: Edge<'_>) -> Option<&mut Self> {
        match edge {
            Edge::Literal(level) => self.children.get_mut(level),
            Edge::Single => self.single.as_deref_mut(),
        }
    }

    fn child_or_insert(&mut self, edge: Edge<'_>) -> &mut Self {
        match edge {
            Edge::Literal(level) => {
                if !self.children.contains_key(level) {
                    self.children.insert(Box::from(level), Self::default());
                }
                // Cannot fail: the key was inserted just above if it was missing.
                self.children.get_mut(level).expect("child inserted above")
            }
            Edge::Single => self.single.get_or_insert_with(Box::default),
        }
    }

    fn remove_child(&mut self, edge: Edge<'_>) {
        match edge {
            Edge::Literal(level) => {
                self.children.remove(level);
                shrink_map(&mut self.children);
            }
            Edge::Single => self.single = None,
        }
    }

    fn slot(&self, slot: Slot) -> &Subscribers<K, V> {
        match slot {
            Slot::Exact => &self.exact,
            Slot::Multi => &self.multi,
        }
    }

    fn slot_mut(&mut self, slot: Slot) -> &mut Subscribers<K, V> {
        match slot {
            Slot::Exact => &mut self.exact,
            Slot::Multi => &mut self.multi,
        }
    }

    /// Whether the node holds nothing at all and can be removed from its parent.
    fn is_empty(&self) -> bool {
        self.exact.is_empty()
            && self.multi.is_empty()
            && self.single.is_none()
            && self.children.is_empty()
    }

    /// Whether the node holds nothing but a single link further down: removing what is below
    /// that link would leave it empty.
    fn is_only_a_link(&self) -> bool {
        self.exact.is_empty()
            && self.multi.is_empty()
            && self.children.len() + usize::from(self.single.is_some()) == 1
    }
}

/// The subscribers of one filter: contiguous so that fan-out is a linear scan, with a key
/// index once the set is large so that a subscribe or unsubscribe stays O(1) expected.
struct Subscribers<K, V> {
    /// (subscriber, value), in no particular order.
    entries: Vec<(K, V)>,
    /// Position of each key in `entries`, present only while the set is large.
    index: Option<Box<AHashMap<K, usize>>>,
}

impl<K, V> Default for Subscribers<K, V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            index: None,
        }
    }
}

impl<K: Copy + Eq + Hash, V> Subscribers<K, V> {
    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn visit(&self, visit: &mut impl FnMut(K, &V)) {
        for (key, value) in &self.entries {
            visit(*key, value);
        }
    }

    fn position(&self, key: K) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(&key).copied(),
            None => self.entries.iter().position(|(k, _)| *k == key),
        }
    }

    fn insert(&mut self, key: K, value: V) -> Option<V> {
        if let Some(entry) = self.position(key).and_then(|at| self.entries.get_mut(at)) {
            return Some(mem::replace(&mut entry.1, value));
        }
        let at = self.entries.len();
        self.entries.push((key, value));
        match &mut self.index {
            Some(index) => {
                index.insert(key, at);
            }
            None if self.entries.len() >= INDEX_FROM_LEN => {
                let index = self.entries.iter().enumerate().map(|(at, (k, _))| (*k, at));
                self.index = Some(Box::new(index.collect()));
            }
            None => {}
        }
        None
    }

    fn remove(&mut self, key: K) -> Option<V> {
        let at = self.position(key).filter(|&at| at < self.entries.len())?;
        let (_, value) = self.entries.swap_remove(at);
        if self.entries.len() <= INDEX_UNTIL_LEN {
            self.index = None;
        }
        if let Some(index) = &mut self.index {
            index.remove(&key);
            if let Some((moved, _)) = self.entries.get(at) {
                index.insert(*moved, at);
            }
            shrink_map(index);
        }
        if self.entries.len() * 4 <= self.entries.capacity() {
            self.entries.shrink_to(self.entries.len() * 2);
        }
        Some(value)
    }
}

/// Gives memory back once a map is mostly empty (amortized: only after many removals).
pub(super) fn shrink_map<Q: Eq + Hash, T>(map: &mut AHashMap<Q, T>) {
    let len = map.len();
    if len * 4 <= map.capacity() {
        map.shrink_to(len * 2);
    }
}

/// A step down the trie.
#[derive(Clone, Copy)]
enum Edge<'a> {
    /// A literal level, by its text (possibly empty).
    Literal(&'a str),
    /// The `+` level.
    Single,
}

/// Which subscriber set of its last node a filter belongs to.
#[derive(Clone, Copy)]
enum Slot {
    /// The filter ends with a literal or `+` level.
    Exact,
    /// The filter ends with `#`: it hangs on the node of the level before it.
    Multi,
}

/// Where a filter's subscribers live: which root, the levels below it, and which set.
struct Route<'a> {
    /// Whether the first level starts with `$` (it is then literal: the filter is valid).
    dollar: bool,
    /// The levels leading to the subscriber set, `None` for the bare filter `#`.
    path: Option<&'a str>,
    slot: Slot,
}

impl<'a> Route<'a> {
    fn of(filter: &'a TopicFilter) -> Self {
        let text = filter.as_str();
        let dollar = text.starts_with('$');
        if let Some(parent) = text.strip_suffix("/#") {
            Self {
                dollar,
                path: Some(parent),
                slot: Slot::Multi,
            }
        } else if text == "#" {
            Self {
                dollar,
                path: None,
                slot: Slot::Multi,
            }
        } else {
            Self {
                dollar,
                path: Some(text),
                slot: Slot::Exact,
            }
        }
    }

    fn edges(&self) -> impl Iterator<Item = Edge<'a>> {
        self.path
            .into_iter()
            .flat_map(|path| path.split('/'))
            .map(|level| match level {
                "+" => Edge::Single,
                literal => Edge::Literal(literal),
            })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn name(s: &str) -> TopicName {
        TopicName::try_from(s).expect("valid test topic")
    }

    pub(crate) fn filter(s: &str) -> TopicFilter {
        TopicFilter::try_from(s).expect("valid test filter")
    }

    /// (filter, topic, matches): the examples of [MQTT-4.7] and the `$` rules.
    pub(crate) const SPEC_CASES: &[(&str, &str, bool)] = &[
        ("sport/tennis/player1/#", "sport/tennis/player1", true),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking",
            true,
        ),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon",
            true,
        ),
        ("sport/#", "sport", true),
        ("#", "sport/tennis", true),
        ("sport/tennis/#", "sport/tennis", true),
        ("sport/tennis/+", "sport/tennis/player1", true),
        ("sport/tennis/+", "sport/tennis/player1/ranking", false),
        ("sport/+", "sport", false),
        ("sport/+", "sport/", true),
        ("+", "sport", true),
        ("+/tennis/#", "sport/tennis/player1", true),
        ("+/+", "/finance", true),
        ("/+", "/finance", true),
        ("+", "/finance", false),
        ("+", "a/", false),
        ("+/", "a/", true),
        ("/", "/", true),
        ("#", "/", true),
        ("#", "$SYS/uptime", false),
        ("#", "$", false),
        ("+", "$SYS", false),
        ("+/#", "$SYS/x", false),
        ("+/monitor/Clients", "$SYS/monitor/Clients", false),
        ("$SYS/#", "$SYS/monitor/Clients", true),
        ("$SYS/#", "$SYS", true),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
        ("$SYS/+/+", "$SYS/monitor/Clients", true),
        ("a/$SYS", "a/$SYS", true),
        ("a/+", "a/$SYS", true),
        ("a/#", "a/$SYS", true),
        ("a/b", "a/b", true),
        ("a/b", "a/b/c", false),
        ("a/b/c", "a/b", false),
    ];

    fn matches_of(trie: &SubscriptionTrie<u32, u32>, topic: &str) -> Vec<(u32, u32)> {
        let mut found = Vec::new();
        trie.for_each_match(&name(topic), |key, value| found.push((key, *value)));
        found.sort_unstable();
        found
    }

    #[test]
    fn specification_examples() {
        for &(f, t, expected) in SPEC_CASES {
            assert_eq!(
                filter(f).matches(&name(t)),
                expected,
                "reference: {f} vs {t}"
            );
            let mut trie = SubscriptionTrie::new();
            trie.insert(&filter(f), 1u32, 7u32);
            let found = matches_of(&trie, t);
            let wanted = if expected { vec![(1, 7)] } else { vec![] };
            assert_eq!(found, wanted, "{f} vs {t}");
            assert_eq!(trie.has_match(&name(t)), expected, "{f} vs {t}");
        }
    }

    #[test]
    fn all_examples_in_one_trie() {
        let mut trie = SubscriptionTrie::new();
        let filters: Vec<&str> = SPEC_CASES.iter().map(|c| c.0).collect();
        for (i, f) in filters.iter().enumerate() {
            trie.insert(&filter(f), i as u32, i as u32);
        }
        for &(_, t, _) in SPEC_CASES {
            let topic = name(t);
            let wanted: Vec<(u32, u32)> = filters
                .iter()
                .enumerate()
                .filter(|(_, f)| filter(f).matches(&topic))
                .map(|(i, _)| (i as u32, i as u32))
                .collect();
            assert_eq!(matches_of(&trie, t), wanted, "{t}");
        }
    }

    #[test]
    fn dollar_topics_need_a_literal_first_level() {
        let mut trie = SubscriptionTrie::new();
        for (key, f) in ["#", "+/#", "+/uptime", "+"].into_iter().enumerate() {
            trie.insert(&filter(f), key as u32, 0u32);
        }
        assert!(!trie.has_match(&name("$SYS/uptime")));
        assert!(!trie.has_match(&name("$SYS")));
        assert!(matches_of(&trie, "$SYS/uptime").is_empty());
        trie.insert(&filter("$SYS/#"), 9, 0);
        assert_eq!(matches_of(&trie, "$SYS/uptime"), vec![(9, 0)]);
        assert_eq!(
            matches_of(&trie, "SYS/uptime"),
            vec![(0, 0), (1, 0), (2, 0)]
        );
    }

    #[test]
    fn overlapping_filters_visit_a_key_once_per_filter() {
        let mut trie = SubscriptionTrie::new();
        for (value, f) in ["a/b", "a/+", "a/#", "#", "+/b", "a/b/#"]
            .into_iter()
            .enumerate()
        {
            trie.insert(&filter(f), 1u32, value as u32);
        }
        trie.insert(&filter("a/c"), 2, 99);
        assert_eq!(
            matches_of(&trie, "a/b"),
            vec![(1, 0), (1, 1), (1, 2), (1, 3), (1, 4), (1, 5)]
        );
        assert_eq!(
            matches_of(&trie, "a/c"),
            vec![(1, 1), (1, 2), (1, 3), (2, 99)]
        );
        assert_eq!(trie.len(), 7);
    }

    #[test]
    fn insert_replaces_and_remove_prunes() {
        let mut trie = SubscriptionTrie::new();
        assert_eq!(trie.insert(&filter("a/b/c"), 1u32, 1u32), None);
        assert_eq!(trie.insert(&filter("a/b/c"), 1, 2), Some(1));
        assert_eq!(trie.len(), 1);
        assert_eq!(trie.node_count(), 3);
        assert_eq!(trie.insert(&filter("a/+/#"), 1, 3), None);
        assert_eq!(trie.insert(&filter("a/b"), 2, 4), None);
        assert_eq!(trie.insert(&filter("$SYS/x"), 2, 5), None);
        assert_eq!(trie.insert(&filter("#"), 3, 6), None);
        assert_eq!(trie.len(), 5);
        assert_eq!(trie.node_count(), 6);

        assert_eq!(trie.remove(&filter("a/b/c"), 2), None);
        assert_eq!(trie.remove(&filter("a/b/d"), 1), None);
        assert_eq!(trie.remove(&filter("a/b/c"), 1), Some(2));
        assert_eq!(trie.node_count(), 5);
        assert_eq!(trie.remove(&filter("a/b/c"), 1), None);
        assert_eq!(trie.remove(&filter("a/+/#"), 1), Some(3));
        assert_eq!(trie.node_count(), 4);
        assert_eq!(trie.remove(&filter("a/b"), 2), Some(4));
        assert_eq!(trie.node_count(), 2);
        assert_eq!(trie.remove(&filter("$SYS/x"), 2), Some(5));
        assert_eq!(trie.remove(&filter("#"), 3), Some(6));
        assert_eq!(trie.len(), 0);
        assert!(trie.is_empty());
        assert_eq!(trie.node_count(), 0);
        assert!(!trie.has_match(&name("a/b")));
    }

    #[test]
    fn pruning_keeps_nodes_still_in_use() {
        let mut trie = SubscriptionTrie::new();
        trie.insert(&filter("a/b/c/d"), 1u32, 0u32);
        trie.insert(&filter("a/b"), 1, 0);
        trie.insert(&filter("a/b/x/y"), 1, 0);
        trie.remove(&filter("a/b/c/d"), 1);
        assert_eq!(trie.node_count(), 4);
        assert_eq!(matches_of(&trie, "a/b"), vec![(1, 0)]);
        trie.remove(&filter("a/b"), 1);
        assert_eq!(trie.node_count(), 4);
        assert_eq!(matches_of(&trie, "a/b/x/y"), vec![(1, 0)]);
        trie.remove(&filter("a/b/x/y"), 1);
        assert_eq!(trie.node_count(), 0);
    }

    #[test]
    fn many_subscribers_on_one_filter() {
        const N: u32 = 100_000;
        let mut trie = SubscriptionTrie::new();
        let f = filter("fleet/+/telemetry");
        for key in 0..N {
            assert_eq!(trie.insert(&f, key, key * 2), None);
        }
        assert_eq!(trie.insert(&f, 5, 0), Some(10));
        assert_eq!(trie.insert(&f, 5, 10), Some(0));
        assert_eq!(trie.len(), N as usize);
        let mut count = 0;
        trie.for_each_match(&name("fleet/truck7/telemetry"), |key, value| {
            assert_eq!(*value, key * 2);
            count += 1;
        });
        assert_eq!(count, N);
        for key in (0..N).filter(|k| k % 2 == 0) {
            assert_eq!(trie.remove(&f, key), Some(key * 2));
        }
        assert_eq!(trie.remove(&f, 0), None);
        let mut left: Vec<u32> = trie.subscribers(&f).map(|(key, _)| key).collect();
        left.sort_unstable();
        assert_eq!(left, (0..N).filter(|k| k % 2 == 1).collect::<Vec<_>>());
        for key in (0..N).rev().filter(|k| k % 2 == 1) {
            assert_eq!(trie.remove(&f, key), Some(key * 2));
        }
        assert!(trie.is_empty());
        assert_eq!(trie.node_count(), 0);
    }

    #[test]
    fn deep_filters_do_not_recurse() {
        let deep = "x/".repeat(20_000) + "#";
        let mut trie = SubscriptionTrie::new();
        trie.insert(&filter(&deep), 1u32, ());
        let topic = "x/".repeat(20_000) + "y/z";
        assert!(trie.has_match(&name(&topic)));
        assert_eq!(trie.node_count(), 20_000);
        assert_eq!(trie.remove(&filter(&deep), 1), Some(()));
        assert_eq!(trie.node_count(), 0);
        trie.insert(&filter(&deep), 1u32, ());
        drop(trie);
    }

    /// A tiny deterministic generator, so the randomized tests need no crate and replay.
    pub(crate) struct XorShift(pub(crate) u64);

    impl XorShift {
        pub(crate) fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        fn level(&mut self) -> &'static str {
            const LEVELS: [&str; 6] = ["", "a", "b", "$a", "$SYS", "c"];
            LEVELS[self.below(LEVELS.len())]
        }

        /// A valid topic name: a lone empty level would be the empty string, so retry.
        pub(crate) fn topic(&mut self) -> String {
            loop {
                let depth = 1 + self.below(4);
                let levels: Vec<&str> = (0..depth).map(|_| self.level()).collect();
                if levels != [""] {
                    return levels.join("/");
                }
            }
        }

        /// A valid topic filter: levels as in `topic`, some `+`, sometimes a final `#`.
        pub(crate) fn filter(&mut self) -> String {
            let depth = self.below(4);
            let mut levels: Vec<&str> = (0..depth)
                .map(|_| match self.below(4) {
                    0 => "+",
                    _ => self.level(),
                })
                .collect();
            if levels.is_empty() || levels == [""] || self.below(3) == 0 {
                levels.push("#");
            }
            levels.join("/")
        }
    }

    #[test]
    fn randomized_cross_check_against_the_reference() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut trie = SubscriptionTrie::new();
        let mut live: Vec<(TopicFilter, u32, u32)> = Vec::new();
        // Half the subscriptions share a few filters, so their sets grow past the key index
        // threshold and shrink back below it during the removals.
        let crowded: Vec<TopicFilter> = (0..12).map(|_| filter(&rng.filter())).collect();
        for value in 0..4000u32 {
            let f = match rng.below(2) {
                0 => crowded[rng.below(crowded.len())].clone(),
                _ => filter(&rng.filter()),
            };
            let key = rng.below(100) as u32;
            let replaced = trie.insert(&f, key, value);
            match live.iter_mut().find(|(lf, lk, _)| *lf == f && *lk == key) {
                Some(entry) => {
                    assert_eq!(replaced, Some(entry.2));
                    entry.2 = value;
                }
                None => {
                    assert_eq!(replaced, None);
                    live.push((f, key, value));
                }
            }
        }
        let topics: Vec<TopicName> = (0..1000).map(|_| name(&rng.topic())).collect();
        let check = |trie: &SubscriptionTrie<u32, u32>, live: &[(TopicFilter, u32, u32)]| {
            assert_eq!(trie.len(), live.len());
            for topic in &topics {
                let mut wanted: Vec<(u32, u32)> = live
                    .iter()
                    .filter(|(f, _, _)| f.matches(topic))
                    .map(|(_, k, v)| (*k, *v))
                    .collect();
                wanted.sort_unstable();
                assert_eq!(matches_of(trie, topic.as_str()), wanted, "{topic}");
                assert_eq!(trie.has_match(topic), !wanted.is_empty(), "{topic}");
            }
        };
        check(&trie, &live);
        while live.len() > 200 {
            let at = rng.below(live.len());
            let (f, key, value) = live.swap_remove(at);
            assert_eq!(trie.remove(&f, key), Some(value));
            assert_eq!(trie.remove(&f, key), None);
        }
        check(&trie, &live);
        for (f, key, value) in live.drain(..) {
            assert_eq!(trie.remove(&f, key), Some(value));
        }
        check(&trie, &live);
        assert_eq!(trie.node_count(), 0);
    }
}
