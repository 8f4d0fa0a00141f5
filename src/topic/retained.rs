//! The retained-message tree: the last retained message of every topic on one core, indexed
//! by topic level, so that a new subscription finds the retained messages its filter matches
//! by walking only the branches the filter can reach.
//!
//! As in the subscription trie, topics that do not start with `$` hang under one root and `$`
//! topics under another; a filter whose first level is a wildcard only ever walks the first,
//! so `#` and `+` never reach `$SYS/...` [MQTT-4.7.2-1].

use std::fmt;
use std::mem;

use ahash::AHashMap;
use smallvec::SmallVec;

use super::name::split_first_level;
use super::trie::shrink_map;
use super::{TopicFilter, TopicName};

/// Walks of ordinary depth keep their pending branches on the stack, not the heap.
const INLINE_PENDING: usize = 32;

/// Retained messages of one core, by topic, matched against a subscription filter.
pub struct RetainedTree<V> {
    /// Topics whose first level does not start with `$`: every wildcard-led filter walks here.
    plain: Node<V>,
    /// Topics whose first level starts with `$`: reached only by a literal first level.
    dollar: Node<V>,
    /// Number of retained topics.
    len: usize,
}

impl<V> RetainedTree<V> {
    /// An empty tree.
    pub fn new() -> Self {
        Self {
            plain: Node::default(),
            dollar: Node::default(),
            len: 0,
        }
    }

    /// Retains `value` for `topic`; returns the value it replaced.
    pub fn insert(&mut self, topic: &TopicName, value: V) -> Option<V> {
        let mut node = self.realm_mut(topic.is_dollar());
        for level in topic.levels() {
            node = node.child_or_insert(level);
        }
        match &mut node.retained {
            Some((_, held)) => Some(mem::replace(held, value)),
            empty => {
                *empty = Some((Box::from(topic.as_str()), value));
                self.len += 1;
                None
            }
        }
    }

    /// Forgets `topic`'s retained value and returns it; empty nodes are pruned, so memory
    /// follows the retained topics, not the history.
    pub fn remove(&mut self, topic: &TopicName) -> Option<V> {
        let mut node = self.realm_mut(topic.is_dollar());
        for level in topic.levels() {
            node = node.children.get_mut(level)?;
        }
        let (_, removed) = node.retained.take()?;
        let emptied = node.children.is_empty();
        self.len -= 1;
        if emptied {
            self.prune(topic);
        }
        Some(removed)
    }

    /// The value retained for `topic`.
    pub fn get(&self, topic: &TopicName) -> Option<&V> {
        let mut node = self.realm(topic.is_dollar());
        for level in topic.levels() {
            node = node.children.get(level)?;
        }
        node.retained.as_ref().map(|(_, value)| value)
    }

    /// Calls `visit(topic_string, value)` for every retained topic that `filter` matches.
    pub fn for_each_match(&self, filter: &TopicFilter, mut visit: impl FnMut(&str, &V)) {
        let text = filter.as_str();
        let mut pending: SmallVec<[Pending<'_, '_, V>; INLINE_PENDING]> = SmallVec::new();
        pending.push(Pending::Filter(
            self.realm(text.starts_with('$')),
            Some(text),
        ));
        while let Some(next) = pending.pop() {
            match next {
                Pending::Filter(node, None) => node.visit(&mut visit),
                Pending::Filter(node, Some(rest)) => match split_first_level(rest) {
                    // `#` matches the level it follows and every level below it.
                    ("#", _) => pending.push(Pending::Subtree(node)),
                    ("+", next) => pending.extend(
                        node.children
                            .values()
                            .map(|child| Pending::Filter(child, next)),
                    ),
                    (level, next) => {
                        if let Some(child) = node.children.get(level) {
                            pending.push(Pending::Filter(child, next));
                        }
                    }
                },
                Pending::Subtree(node) => {
                    node.visit(&mut visit);
                    pending.extend(node.children.values().map(Pending::Subtree));
                }
            }
        }
    }

    /// Number of retained topics.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no topic has a retained value.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of level nodes below the two roots: what the tree costs in memory beyond its
    /// values, for diagnostics (it is zero when the tree is empty, since removal prunes).
    pub fn node_count(&self) -> usize {
        let mut count = 0;
        let mut pending: SmallVec<[&Node<V>; INLINE_PENDING]> = SmallVec::new();
        pending.push(&self.plain);
        pending.push(&self.dollar);
        while let Some(node) = pending.pop() {
            count += node.children.len();
            pending.extend(node.children.values());
        }
        count
    }

    /// The root a topic hangs under.
    fn realm(&self, dollar: bool) -> &Node<V> {
        if dollar {
            &self.dollar
        } else {
            &self.plain
        }
    }

    /// The root a topic hangs under, for changes.
    fn realm_mut(&mut self, dollar: bool) -> &mut Node<V> {
        if dollar {
            &mut self.dollar
        } else {
            &mut self.plain
        }
    }

    /// Removes the chain of nodes that `topic` leads to, now that its last node is empty: the
    /// cut is made below the deepest node on the path that still holds something else.
    fn prune(&mut self, topic: &TopicName) {
        let mut cut_depth = 0;
        let mut node = self.realm(topic.is_dollar());
        for (depth, level) in topic.levels().enumerate() {
            if depth > 0 && (node.retained.is_some() || node.children.len() > 1) {
                cut_depth = depth;
            }
            match node.children.get(level) {
                Some(child) => node = child,
                None => return,
            }
        }
        let mut node = self.realm_mut(topic.is_dollar());
        let mut levels = topic.levels();
        for level in levels.by_ref().take(cut_depth) {
            match node.children.get_mut(level) {
                Some(child) => node = child,
                None => return,
            }
        }
        if let Some(level) = levels.next() {
            node.children.remove(level);
            shrink_map(&mut node.children);
        }
    }
}

impl<V> Default for RetainedTree<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> fmt::Debug for RetainedTree<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetainedTree")
            .field("len", &self.len)
            .field("nodes", &self.node_count())
            .finish()
    }
}

/// A branch still to walk.
enum Pending<'t, 's, V> {
    /// A node and the rest of the filter below it (`None` once the filter is consumed).
    Filter(&'t Node<V>, Option<&'s str>),
    /// A node matched by `#`: it and everything below it.
    Subtree(&'t Node<V>),
}

/// One topic level.
struct Node<V> {
    /// The topic ending at this level and its retained value.
    retained: Option<(Box<str>, V)>,
    /// The levels below this one, by their text.
    children: AHashMap<Box<str>, Node<V>>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Self {
            retained: None,
            children: AHashMap::new(),
        }
    }
}

impl<V> Drop for Node<V> {
    /// Takes a subtree apart level by level: the default recursive drop of a topic with tens
    /// of thousands of levels (which a client may publish) could overflow the stack.
    fn drop(&mut self) {
        if self.children.is_empty() {
            return;
        }
        let mut orphans: Vec<Self> = mem::take(&mut self.children).into_values().collect();
        while let Some(mut orphan) = orphans.pop() {
            orphans.extend(mem::take(&mut orphan.children).into_values());
        }
    }
}

impl<V> Node<V> {
    fn child_or_insert(&mut self, level: &str) -> &mut Self {
        if !self.children.contains_key(level) {
            self.children.insert(Box::from(level), Self::default());
        }
        // Cannot fail: the key was inserted just above if it was missing.
        self.children.get_mut(level).expect("child inserted above")
    }

    fn visit(&self, visit: &mut impl FnMut(&str, &V)) {
        if let Some((topic, value)) = &self.retained {
            visit(topic, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::trie::tests::{filter, name, XorShift, SPEC_CASES};
    use super::*;

    fn matches_of(tree: &RetainedTree<u32>, f: &str) -> Vec<(String, u32)> {
        let mut found = Vec::new();
        tree.for_each_match(&filter(f), |topic, value| {
            found.push((topic.to_owned(), *value))
        });
        found.sort_unstable();
        found
    }

    #[test]
    fn specification_examples() {
        for &(f, t, expected) in SPEC_CASES {
            let mut tree = RetainedTree::new();
            tree.insert(&name(t), 7u32);
            let wanted = if expected {
                vec![(t.to_owned(), 7)]
            } else {
                vec![]
            };
            assert_eq!(matches_of(&tree, f), wanted, "{f} vs {t}");
        }
    }

    #[test]
    fn dollar_topics_need_a_literal_first_level() {
        let mut tree = RetainedTree::new();
        tree.insert(&name("$SYS/uptime"), 1u32);
        tree.insert(&name("SYS/uptime"), 2);
        assert_eq!(matches_of(&tree, "#"), vec![("SYS/uptime".to_owned(), 2)]);
        assert_eq!(
            matches_of(&tree, "+/uptime"),
            vec![("SYS/uptime".to_owned(), 2)]
        );
        assert_eq!(
            matches_of(&tree, "$SYS/#"),
            vec![("$SYS/uptime".to_owned(), 1)]
        );
        assert_eq!(
            matches_of(&tree, "$SYS/+"),
            vec![("$SYS/uptime".to_owned(), 1)]
        );
    }

    #[test]
    fn insert_replaces_get_reads_and_remove_prunes() {
        let mut tree = RetainedTree::new();
        assert_eq!(tree.insert(&name("a/b/c"), 1u32), None);
        assert_eq!(tree.insert(&name("a/b/c"), 2), Some(1));
        assert_eq!(tree.insert(&name("a"), 3), None);
        assert_eq!(tree.insert(&name("/"), 4), None);
        assert_eq!(tree.insert(&name("$SYS/x"), 5), None);
        assert_eq!(tree.len(), 4);
        assert_eq!(tree.node_count(), 7);
        assert_eq!(tree.get(&name("a/b/c")), Some(&2));
        assert_eq!(tree.get(&name("a/b")), None);
        assert_eq!(tree.get(&name("a/b/c/d")), None);
        assert_eq!(tree.get(&name("/")), Some(&4));

        assert_eq!(tree.remove(&name("a/b")), None);
        assert_eq!(tree.remove(&name("a")), Some(3));
        assert_eq!(tree.node_count(), 7);
        assert_eq!(tree.get(&name("a/b/c")), Some(&2));
        assert_eq!(tree.remove(&name("a/b/c")), Some(2));
        assert_eq!(tree.remove(&name("a/b/c")), None);
        assert_eq!(tree.node_count(), 4);
        assert_eq!(tree.remove(&name("/")), Some(4));
        assert_eq!(tree.remove(&name("$SYS/x")), Some(5));
        assert!(tree.is_empty());
        assert_eq!(tree.node_count(), 0);
        assert!(matches_of(&tree, "#").is_empty());
    }

    #[test]
    fn deep_topics_do_not_recurse() {
        let topic = name(&("x/".repeat(20_000) + "y"));
        let mut tree = RetainedTree::new();
        tree.insert(&topic, 1u32);
        assert_eq!(matches_of(&tree, "x/#").len(), 1);
        assert_eq!(tree.remove(&topic), Some(1));
        assert_eq!(tree.node_count(), 0);
        tree.insert(&topic, 1);
        drop(tree);
    }

    #[test]
    fn randomized_cross_check_against_the_reference() {
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let mut tree = RetainedTree::new();
        let mut live: Vec<(TopicName, u32)> = Vec::new();
        for value in 0..2000u32 {
            let topic = name(&rng.topic());
            let replaced = tree.insert(&topic, value);
            match live.iter_mut().find(|(t, _)| *t == topic) {
                Some(entry) => {
                    assert_eq!(replaced, Some(entry.1));
                    entry.1 = value;
                }
                None => {
                    assert_eq!(replaced, None);
                    live.push((topic, value));
                }
            }
        }
        let filters: Vec<String> = (0..1500).map(|_| rng.filter()).collect();
        let check = |tree: &RetainedTree<u32>, live: &[(TopicName, u32)]| {
            assert_eq!(tree.len(), live.len());
            for f in &filters {
                let parsed = filter(f);
                let mut wanted: Vec<(String, u32)> = live
                    .iter()
                    .filter(|(t, _)| parsed.matches(t))
                    .map(|(t, v)| (t.as_str().to_owned(), *v))
                    .collect();
                wanted.sort_unstable();
                assert_eq!(matches_of(tree, f), wanted, "{f}");
            }
            for (topic, value) in live {
                assert_eq!(tree.get(topic), Some(value));
            }
        };
        check(&tree, &live);
        while live.len() > 60 {
            let (topic, value) = live.swap_remove(rng.below(live.len()));
            assert_eq!(tree.remove(&topic), Some(value));
            assert_eq!(tree.get(&topic), None);
        }
        check(&tree, &live);
        for (topic, value) in live.drain(..) {
            assert_eq!(tree.remove(&topic), Some(value));
        }
        check(&tree, &live);
        assert_eq!(tree.node_count(), 0);
    }
}
