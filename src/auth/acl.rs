//! The ACL file, in Mosquitto's format, and the three questions the broker asks it: may this
//! client subscribe to this filter, receive a message on this topic, publish to this topic?
//!
//! ```text
//! # comments and blank lines are ignored
//! topic read #                # rules before any `user` line: anonymous clients
//! topic read $SYS/#
//! user infra                  # rules after it: the client logged in as `infra`
//! topic readwrite #
//! pattern write devices/%c/#  # patterns: every client, wherever they appear
//! ```
//!
//! `topic [read|write|readwrite|deny] FILTER` (no access word means `readwrite`; the filter
//! is the rest of the line and may contain spaces), `user NAME`, `pattern [access] FILTER`
//! with whole-level `%u` (user name) and `%c` (client id) placeholders.
//!
//! Semantics, as Mosquitto's, with deliberate differences marked:
//! - a client with a user name gets that user's rules (none if the file has no section for
//!   it); a client without one gets the anonymous rules; every client gets the patterns;
//! - a message is readable/writable when some applicable grant matches its topic and no
//!   applicable `deny` does: `deny` wins (Mosquitto lets a user's grant win over a pattern's
//!   deny; hydrant lets the deny win everywhere);
//! - a rule whose filter starts with a wildcard never matches `$SYS/...` topics (`#` alone does
//!   not reveal `$SYS`; grant `$SYS/#` explicitly);
//! - subscribing (Mosquitto 2.0 lets any subscription through and filters deliveries only):
//!   a filter is allowed when one read grant covers every topic it can match and no deny
//!   covers it; when a deny only overlaps it, the subscription is allowed and each delivery
//!   must be checked with [`Acl::can_read`]. Deliveries are always guarded by `can_read`
//!   unless [`Acl::subscription_access`] said the whole filter is readable.
//! - a user name or client id that is not a safe topic level (empty, or containing `/`, `+`,
//!   `#`) is never substituted into a grant (Mosquitto refuses those too); a deny is cut
//!   there and ends in `#` (`devices/%c/config` then denies all of `devices/#`).
//!
//! An absent ACL file means no restriction ([`Acl::allow_all`]), as in Mosquitto.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::rule_filter::{RuleFilter, Substitution, UnsafeValue};
use crate::topic::{TopicError, TopicFilter, TopicName};

/// Who is asking: what the ACL needs to know about a connected client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The user name the client was accepted with (`None`: anonymous rules apply).
    pub username: Option<String>,
    /// The client identifier (the one the server assigned, if the client sent none).
    pub client_id: String,
}

impl ClientIdentity {
    /// A client without a user name.
    pub fn anonymous(client_id: impl Into<String>) -> Self {
        Self {
            username: None,
            client_id: client_id.into(),
        }
    }

    /// A client accepted as `username`.
    pub fn user(username: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            username: Some(username.into()),
            client_id: client_id.into(),
        }
    }

    fn substitution(&self) -> Substitution<'_> {
        Substitution {
            username: self.username.as_deref(),
            client_id: &self.client_id,
        }
    }
}

/// What the ACL says about one SUBSCRIBE filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionAccess {
    /// Not allowed: answer this filter with the failure code (0x80, or 0x87 in MQTT 5).
    Refused,
    /// Every topic the filter can match is readable: deliveries need no further check.
    Readable,
    /// Allowed, but some topics it can match are denied: check [`Acl::can_read`] for each
    /// delivery.
    CheckEachMessage,
}

impl SubscriptionAccess {
    /// Whether the subscription may be made.
    pub fn is_allowed(self) -> bool {
        self != Self::Refused
    }
}

/// The access a rule line gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

/// What is wrong with one line of an ACL file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AclLineError {
    /// The line starts with a word other than `topic`, `pattern` or `user`.
    #[error("unknown keyword {0:?} (expected topic, pattern or user)")]
    UnknownKeyword(String),
    /// `topic` or `pattern` without a filter.
    #[error("'{0}' needs a topic filter")]
    MissingFilter(&'static str),
    /// An access word other than read, write, readwrite, deny.
    #[error("unknown access {0:?} (expected read, write, readwrite or deny)")]
    UnknownAccess(String),
    /// The filter is not a valid MQTT topic filter.
    #[error("invalid topic filter {filter:?}: {reason}")]
    InvalidFilter {
        /// The filter as written.
        filter: String,
        /// Which rule it breaks.
        reason: TopicError,
    },
    /// `user` without a name.
    #[error("'user' needs a user name")]
    MissingUsername,
}

/// An ACL file's text that does not parse: where and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {reason}")]
pub struct AclParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with that line.
    pub reason: AclLineError,
}

/// Why an ACL file could not be loaded.
#[derive(Debug, Error)]
pub enum AclFileError {
    /// The file could not be read.
    #[error("cannot read ACL file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A line is invalid.
    #[error("ACL file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line and what is wrong with it.
        source: AclParseError,
    },
}

/// The rules of one section (anonymous, one user, or the patterns), split by what they do
/// so a check scans only the rules that can decide it.
#[derive(Debug, Clone, Default)]
struct RuleSet {
    deny: Vec<RuleFilter>,
    read: Vec<RuleFilter>,
    write: Vec<RuleFilter>,
}

impl RuleSet {
    fn add(&mut self, access: Access, filter: RuleFilter) {
        match access {
            Access::Read => self.read.push(filter),
            Access::Write => self.write.push(filter),
            Access::ReadWrite => {
                self.read.push(filter.clone());
                self.write.push(filter);
            }
            Access::Deny => self.deny.push(filter),
        }
    }

    /// The grants that allow `operation`.
    fn grants(&self, operation: Operation) -> &[RuleFilter] {
        match operation {
            Operation::Read => &self.read,
            Operation::Write => &self.write,
        }
    }

    fn rule_count(&self) -> usize {
        self.deny.len() + self.read.len() + self.write.len()
    }
}

/// The operation a topic check is for.
#[derive(Debug, Clone, Copy)]
enum Operation {
    Read,
    Write,
}

/// A loaded ACL: immutable, shared by every core behind an `Arc`, replaced whole on reload.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    /// No ACL file is configured: everything is allowed.
    unrestricted: bool,
    /// Rules before the first `user` line.
    anonymous: RuleSet,
    /// Each user's rules, by exact user name (sections for the same user are merged).
    users: HashMap<String, RuleSet>,
    /// `pattern` rules, for every client.
    patterns: RuleSet,
}

impl Acl {
    /// The ACL of a broker without an ACL file: every operation is allowed.
    pub fn allow_all() -> Self {
        Self {
            unrestricted: true,
            ..Self::default()
        }
    }

    /// Reads and parses the ACL file at `path`.
    pub fn load(path: &Path) -> Result<Self, AclFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| AclFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|source| AclFileError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Parses an ACL file's text.
    pub fn parse(text: &str) -> Result<Self, AclParseError> {
        let mut acl = Self::default();
        let mut current_user: Option<String> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |reason| AclParseError {
                line: index + 1,
                reason,
            };
            let (keyword, rest) = split_word(line);
            match keyword {
                "topic" | "pattern" => {
                    let keyword: &'static str = if keyword == "topic" {
                        "topic"
                    } else {
                        "pattern"
                    };
                    let (access, filter) = parse_rule(keyword, rest).map_err(error)?;
                    if keyword == "pattern" {
                        acl.patterns.add(access, RuleFilter::pattern(filter));
                    } else {
                        let section = match &current_user {
                            Some(user) => acl.users.entry(user.clone()).or_default(),
                            None => &mut acl.anonymous,
                        };
                        section.add(access, RuleFilter::literal(filter));
                    }
                }
                "user" => {
                    if rest.is_empty() {
                        return Err(error(AclLineError::MissingUsername));
                    }
                    current_user = Some(rest.to_owned());
                }
                other => return Err(error(AclLineError::UnknownKeyword(other.to_owned()))),
            }
        }
        Ok(acl)
    }

    /// Whether the client may subscribe to `filter` (checked per filter of a SUBSCRIBE).
    pub fn can_subscribe(&self, client: &ClientIdentity, filter: &TopicFilter) -> bool {
        self.subscription_access(client, filter).is_allowed()
    }

    /// What the ACL says about subscribing to `filter`, including whether deliveries through
    /// it still need [`Acl::can_read`]. Re-evaluate existing subscriptions after a reload.
    pub fn subscription_access(
        &self,
        client: &ClientIdentity,
        filter: &TopicFilter,
    ) -> SubscriptionAccess {
        if self.unrestricted {
            return SubscriptionAccess::Readable;
        }
        let who = client.substitution();
        let own = self.own_rules(client);
        let denies = own
            .into_iter()
            .flat_map(|set| set.deny.iter())
            .chain(&self.patterns.deny);
        let mut partly_denied = false;
        for deny in denies {
            if deny.covers(filter, who, UnsafeValue::Widen) {
                return SubscriptionAccess::Refused;
            }
            partly_denied |= deny.overlaps(filter, who, UnsafeValue::Widen);
        }
        let covered = own
            .into_iter()
            .flat_map(|set| set.read.iter())
            .chain(&self.patterns.read)
            .any(|grant| grant.covers(filter, who, UnsafeValue::SkipRule));
        match (covered, partly_denied) {
            (false, _) => SubscriptionAccess::Refused,
            (true, false) => SubscriptionAccess::Readable,
            (true, true) => SubscriptionAccess::CheckEachMessage,
        }
    }

    /// Whether the client may receive a message published on `topic`: the final guard on
    /// every delivery, retained messages included.
    pub fn can_read(&self, client: &ClientIdentity, topic: &TopicName) -> bool {
        self.allows(client, topic, Operation::Read)
    }

    /// Whether the client may publish on `topic` (PUBLISH, and a will when it is sent).
    pub fn can_write(&self, client: &ClientIdentity, topic: &TopicName) -> bool {
        self.allows(client, topic, Operation::Write)
    }

    /// Whether this ACL restricts anything (false for [`Acl::allow_all`]).
    pub fn is_restrictive(&self) -> bool {
        !self.unrestricted
    }

    /// Number of rules loaded (for the reload log line).
    pub fn rule_count(&self) -> usize {
        self.anonymous.rule_count()
            + self.patterns.rule_count()
            + self.users.values().map(RuleSet::rule_count).sum::<usize>()
    }

    fn allows(&self, client: &ClientIdentity, topic: &TopicName, operation: Operation) -> bool {
        if self.unrestricted {
            return true;
        }
        let who = client.substitution();
        let own = self.own_rules(client);
        let denied = own
            .into_iter()
            .flat_map(|set| set.deny.iter())
            .chain(&self.patterns.deny)
            .any(|deny| deny.matches_topic(topic, who, UnsafeValue::Widen));
        if denied {
            return false;
        }
        own.into_iter()
            .flat_map(|set| set.grants(operation))
            .chain(self.patterns.grants(operation))
            .any(|grant| grant.matches_topic(topic, who, UnsafeValue::SkipRule))
    }

    /// The section that applies to this client besides the patterns.
    fn own_rules(&self, client: &ClientIdentity) -> Option<&RuleSet> {
        match &client.username {
            Some(user) => self.users.get(user),
            None => Some(&self.anonymous),
        }
    }
}

/// Splits off the first blank-separated word; the rest is trimmed.
fn split_word(text: &str) -> (&str, &str) {
    match text.split_once([' ', '\t']) {
        Some((word, rest)) => (word, rest.trim()),
        None => (text, ""),
    }
}

/// `[access] FILTER` after `topic` or `pattern`.
fn parse_rule(keyword: &'static str, rest: &str) -> Result<(Access, TopicFilter), AclLineError> {
    if rest.is_empty() {
        return Err(AclLineError::MissingFilter(keyword));
    }
    let (first, remainder) = split_word(rest);
    let (access, filter) = if remainder.is_empty() {
        (Access::ReadWrite, first)
    } else {
        let access = match first {
            "read" => Access::Read,
            "write" => Access::Write,
            "readwrite" => Access::ReadWrite,
            "deny" => Access::Deny,
            other => return Err(AclLineError::UnknownAccess(other.to_owned())),
        };
        (access, remainder)
    };
    let parsed = TopicFilter::try_from(filter).map_err(|reason| AclLineError::InvalidFilter {
        filter: filter.to_owned(),
        reason,
    })?;
    Ok((access, parsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(text: &str) -> Acl {
        Acl::parse(text).expect("valid test ACL")
    }
    fn topic(text: &str) -> TopicName {
        TopicName::try_from(text).expect("valid test topic")
    }
    fn filter(text: &str) -> TopicFilter {
        TopicFilter::try_from(text).expect("valid test filter")
    }

    /// The public firehose's ACL, in substance.
    const FIREHOSE: &str = "\
# anonymous clients may watch everything
topic read #
topic read $SYS/#

user infra
topic readwrite #
";

    #[test]
    fn firehose_anonymous_clients_read_everything_and_write_nothing() {
        let acl = acl(FIREHOSE);
        let anon = ClientIdentity::anonymous("watcher-1");
        for t in [
            "gerrit/openstack/nova/change-merged",
            "launchpad/nova/bug/1",
            "$SYS/broker/uptime",
        ] {
            assert!(acl.can_read(&anon, &topic(t)), "{t}");
            assert!(!acl.can_write(&anon, &topic(t)), "{t}");
        }
        for f in ["#", "gerrit/#", "+/+/nova/#", "$SYS/#", "$SYS/broker/+"] {
            assert_eq!(
                acl.subscription_access(&anon, &filter(f)),
                SubscriptionAccess::Readable,
                "{f}"
            );
        }
    }

    #[test]
    fn firehose_publisher_writes_and_strangers_get_nothing() {
        let acl = acl(FIREHOSE);
        let infra = ClientIdentity::user("infra", "gerrit-publisher");
        assert!(acl.can_write(&infra, &topic("gerrit/openstack/nova/patchset-created")));
        assert!(acl.can_read(&infra, &topic("gerrit/x")));
        assert!(acl.can_subscribe(&infra, &filter("#")));
        // `#` does not reach `$SYS` and the infra section does not grant it.
        assert!(!acl.can_read(&infra, &topic("$SYS/broker/uptime")));
        assert!(!acl.can_subscribe(&infra, &filter("$SYS/#")));
        // A user without a section gets no anonymous rules and there are no patterns.
        let stranger = ClientIdentity::user("mallory", "m");
        assert!(!acl.can_read(&stranger, &topic("gerrit/x")));
        assert!(!acl.can_write(&stranger, &topic("gerrit/x")));
        assert!(!acl.can_subscribe(&stranger, &filter("#")));
    }

    #[test]
    fn a_narrow_writer_cannot_write_elsewhere() {
        let acl = acl("topic read #\nuser gerrit\ntopic write gerrit/#\n");
        let gerrit = ClientIdentity::user("gerrit", "g");
        assert!(acl.can_write(&gerrit, &topic("gerrit/a/b/comment-added")));
        assert!(acl.can_write(&gerrit, &topic("gerrit")));
        assert!(!acl.can_write(&gerrit, &topic("launchpad/x")));
        assert!(
            !acl.can_read(&gerrit, &topic("gerrit/a")),
            "write-only section"
        );
        assert!(!acl.can_subscribe(&gerrit, &filter("gerrit/#")));
    }

    #[test]
    fn access_words_and_the_default() {
        let acl = acl(
            "topic read r/#\ntopic write w/#\ntopic readwrite rw/#\ntopic plain/#\ntopic deny rw/secret\n",
        );
        let anon = ClientIdentity::anonymous("c");
        let cases = [
            ("r/x", true, false),
            ("w/x", false, true),
            ("rw/x", true, true),
            ("plain/x", true, true),
            ("rw/secret", false, false),
            ("other", false, false),
        ];
        for (t, read, write) in cases {
            assert_eq!(acl.can_read(&anon, &topic(t)), read, "read {t}");
            assert_eq!(acl.can_write(&anon, &topic(t)), write, "write {t}");
        }
    }

    #[test]
    fn deny_wins_over_any_grant() {
        let text = "\
topic read #
topic deny private/#
user bob
topic readwrite #
pattern deny users/%u/locked
";
        let acl = acl(text);
        let anon = ClientIdentity::anonymous("c");
        assert!(!acl.can_read(&anon, &topic("private/x")));
        assert!(acl.can_read(&anon, &topic("public/x")));
        assert_eq!(
            acl.subscription_access(&anon, &filter("#")),
            SubscriptionAccess::CheckEachMessage
        );
        assert_eq!(
            acl.subscription_access(&anon, &filter("private/#")),
            SubscriptionAccess::Refused
        );
        assert_eq!(
            acl.subscription_access(&anon, &filter("private/a/+")),
            SubscriptionAccess::Refused
        );
        assert_eq!(
            acl.subscription_access(&anon, &filter("public/#")),
            SubscriptionAccess::Readable
        );
        let bob = ClientIdentity::user("bob", "c");
        assert!(acl.can_write(&bob, &topic("users/bob/open")));
        assert!(!acl.can_write(&bob, &topic("users/bob/locked")));
        assert!(!acl.can_read(&bob, &topic("users/bob/locked")));
        assert!(
            acl.can_read(&bob, &topic("private/x")),
            "anonymous denies are not bob's"
        );
    }

    #[test]
    fn subscriptions_must_be_covered_by_one_grant() {
        let acl = acl("topic read gerrit/#\ntopic read launchpad/+/bug/+\n");
        let anon = ClientIdentity::anonymous("c");
        for (f, allowed) in [
            ("gerrit/#", true),
            ("gerrit", true),
            ("gerrit/+/nova/+", true),
            ("launchpad/nova/bug/+", true),
            ("launchpad/+/bug/#", false),
            ("#", false),
            ("+/x", false),
            ("$SYS/#", false),
        ] {
            assert_eq!(acl.can_subscribe(&anon, &filter(f)), allowed, "{f}");
        }
    }

    #[test]
    fn patterns_substitute_user_name_and_client_id() {
        let acl = acl(
            "pattern readwrite clients/%c/#\npattern read users/%u/+\nuser x\npattern write out/%u\n",
        );
        let bob = ClientIdentity::user("bob", "dev-7");
        assert!(acl.can_write(&bob, &topic("clients/dev-7/state")));
        assert!(!acl.can_write(&bob, &topic("clients/dev-8/state")));
        assert!(acl.can_read(&bob, &topic("users/bob/inbox")));
        assert!(!acl.can_read(&bob, &topic("users/alice/inbox")));
        assert!(
            acl.can_write(&bob, &topic("out/bob")),
            "patterns apply after any user line"
        );
        assert!(acl.can_subscribe(&bob, &filter("clients/dev-7/#")));
        assert!(!acl.can_subscribe(&bob, &filter("clients/+/#")));
        let anon = ClientIdentity::anonymous("dev-9");
        assert!(acl.can_read(&anon, &topic("clients/dev-9/x")));
        assert!(
            !acl.can_read(&anon, &topic("users/dev-9/x")),
            "%u needs a user name"
        );
    }

    #[test]
    fn dangerous_names_are_never_substituted_into_grants() {
        let acl = acl("topic read public/#\npattern readwrite clients/%c/#\npattern write u/%u\n");
        for id in ["+", "#", "a/b", ""] {
            let client = ClientIdentity::anonymous(id);
            assert!(!acl.can_write(&client, &topic("clients/x/y")), "{id:?}");
            assert!(!acl.can_write(&client, &topic("clients/a/b/y")), "{id:?}");
            assert!(!acl.can_subscribe(&client, &filter("clients/#")), "{id:?}");
            assert!(acl.can_read(&client, &topic("public/x")), "{id:?}");
        }
        let plus = ClientIdentity::user("+", "c");
        assert!(!acl.can_write(&plus, &topic("u/x")));
    }

    #[test]
    fn dangerous_names_widen_denies() {
        let acl = acl("topic readwrite #\npattern deny devices/%c/config\n");
        let sneaky = ClientIdentity::anonymous("a/b");
        assert!(!acl.can_write(&sneaky, &topic("devices/a/b/config")));
        assert!(!acl.can_write(&sneaky, &topic("devices/other/config")));
        assert!(acl.can_write(&sneaky, &topic("elsewhere/x")));
        let normal = ClientIdentity::anonymous("a");
        assert!(!acl.can_write(&normal, &topic("devices/a/config")));
        assert!(acl.can_write(&normal, &topic("devices/other/config")));
    }

    #[test]
    fn sys_topics_need_an_explicit_grant() {
        let acl = acl("topic read #\ntopic read +/broker/#\n");
        let anon = ClientIdentity::anonymous("c");
        assert!(!acl.can_read(&anon, &topic("$SYS/broker/uptime")));
        assert!(!acl.can_subscribe(&anon, &filter("$SYS/#")));
        let with_sys = self::acl("topic read $SYS/broker/#\n");
        assert!(with_sys.can_read(&anon, &topic("$SYS/broker/uptime")));
        assert!(!with_sys.can_read(&anon, &topic("$SYS/other")));
        assert!(with_sys.can_subscribe(&anon, &filter("$SYS/broker/+")));
        assert!(!with_sys.can_subscribe(&anon, &filter("$SYS/#")));
    }

    #[test]
    fn no_acl_file_allows_everything() {
        let acl = Acl::allow_all();
        let anon = ClientIdentity::anonymous("c");
        assert!(acl.can_read(&anon, &topic("$SYS/x")));
        assert!(acl.can_write(&anon, &topic("a")));
        assert_eq!(
            acl.subscription_access(&anon, &filter("#")),
            SubscriptionAccess::Readable
        );
        assert!(!acl.is_restrictive());
        let empty = self::acl("# nothing\n");
        assert!(empty.is_restrictive());
        assert!(!empty.can_read(&anon, &topic("a")));
    }

    #[test]
    fn filters_keep_spaces_and_sections_merge() {
        let acl =
            acl("user bob\ntopic read a b/c\nuser alice\ntopic read x\nuser bob\ntopic write w\n");
        let bob = ClientIdentity::user("bob", "c");
        assert!(acl.can_read(&bob, &topic("a b/c")));
        assert!(acl.can_write(&bob, &topic("w")));
        assert!(!acl.can_read(&bob, &topic("x")));
        assert_eq!(acl.rule_count(), 3);
        let spaced = self::acl("user john doe\ntopic read j\n");
        assert!(spaced.can_read(&ClientIdentity::user("john doe", "c"), &topic("j")));
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let cases = [
            (
                "topic read #\nsubscribe #\n",
                2,
                AclLineError::UnknownKeyword("subscribe".into()),
            ),
            ("\n\ntopic\n", 3, AclLineError::MissingFilter("topic")),
            ("pattern   \n", 1, AclLineError::MissingFilter("pattern")),
            (
                "topic reed #\n",
                1,
                AclLineError::UnknownAccess("reed".into()),
            ),
            ("user\n", 1, AclLineError::MissingUsername),
            (
                "topic read a/#/b\n",
                1,
                AclLineError::InvalidFilter {
                    filter: "a/#/b".into(),
                    reason: TopicError::MisplacedMultiLevelWildcard,
                },
            ),
            (
                "pattern write dev/%c+\n",
                1,
                AclLineError::InvalidFilter {
                    filter: "dev/%c+".into(),
                    reason: TopicError::MisplacedSingleLevelWildcard,
                },
            ),
        ];
        for (text, line, reason) in cases {
            assert_eq!(
                Acl::parse(text).err(),
                Some(AclParseError { line, reason }),
                "{text:?}"
            );
        }
        let message = Acl::parse("topic reed #").err().map(|e| e.to_string());
        assert_eq!(
            message.as_deref(),
            Some("line 1: unknown access \"reed\" (expected read, write, readwrite or deny)")
        );
        assert!(matches!(
            Acl::load(Path::new("/nonexistent/hydrant.acl")),
            Err(AclFileError::Read { .. })
        ));
    }

    #[test]
    fn comments_blanks_and_tabs() {
        let acl = acl("  # indented comment\n\t\ntopic\tread\tt/#\r\n");
        assert!(acl.can_read(&ClientIdentity::anonymous("c"), &topic("t/x")));
    }
}
