//! Event kinds and sets of them: plain values, used by every layer above.

use std::fmt;

/// The lifecycle events a task watcher can ask for.
///
/// The first seven come from the task-watchers patches (`WATCH_TASK_INIT` is
/// [`Fork`](EventKind::Fork)); `Sid`, `Comm`, `Ptrace` and `Coredump` come from the
/// kernel's process-events connector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum EventKind {
    /// A child is being set up, before anyone can see it. The only event that can fail:
    /// an error aborts the fork.
    Fork = 0,
    /// A task replaced its program image.
    Exec = 1,
    /// A task's real, effective, saved or filesystem user ids changed.
    Uid = 2,
    /// A task's real, effective, saved or filesystem group ids changed.
    Gid = 3,
    /// A task started a new session.
    Sid = 4,
    /// A task's name changed.
    Comm = 5,
    /// A tracer attached to or detached from a task.
    Ptrace = 6,
    /// A task dumped core.
    Coredump = 7,
    /// A task is exiting; it still holds its resources.
    Exit = 8,
    /// A task's resources are released. Sent exactly once to every watcher whose
    /// `fork` succeeded for that task.
    Free = 9,
}

impl EventKind {
    /// Every kind, in declaration order.
    pub const ALL: [EventKind; 10] = [
        EventKind::Fork,
        EventKind::Exec,
        EventKind::Uid,
        EventKind::Gid,
        EventKind::Sid,
        EventKind::Comm,
        EventKind::Ptrace,
        EventKind::Coredump,
        EventKind::Exit,
        EventKind::Free,
    ];

    /// How many kinds there are.
    pub const COUNT: usize = 10;

    /// The lower-case name used in `#[task_watcher(events = ...)]` and on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            EventKind::Fork => "fork",
            EventKind::Exec => "exec",
            EventKind::Uid => "uid",
            EventKind::Gid => "gid",
            EventKind::Sid => "sid",
            EventKind::Comm => "comm",
            EventKind::Ptrace => "ptrace",
            EventKind::Coredump => "coredump",
            EventKind::Exit => "exit",
            EventKind::Free => "free",
        }
    }

    /// Parses a lower-case event name.
    ///
    /// ```
    /// use watchers_core::EventKind;
    /// assert_eq!(EventKind::from_name("exit"), Some(EventKind::Exit));
    /// assert_eq!(EventKind::from_name("exot"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The position of this kind in [`EventKind::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Whether this is a teardown event (`exit`, `free`), which runs watchers in the
    /// reverse of `fork` order.
    pub const fn is_teardown(self) -> bool {
        matches!(self, EventKind::Exit | EventKind::Free)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of [`EventKind`]s, constructible in `const` context.
///
/// `#[task_watcher(events = fork | exit)]` builds one of these at compile time.
///
/// ```
/// use watchers_core::{EventKind, EventSet};
/// const SET: EventSet = EventSet::FORK.union(EventSet::EXIT);
/// assert!(SET.contains(EventKind::Exit));
/// assert!(!SET.contains(EventKind::Exec));
/// assert_eq!(SET.to_string(), "fork|exit");
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct EventSet(u16);

impl EventSet {
    /// No events.
    pub const EMPTY: EventSet = EventSet(0);
    /// Every event.
    pub const ALL: EventSet = EventSet((1 << EventKind::COUNT) - 1);
    /// `fork` alone.
    pub const FORK: EventSet = EventSet::of(EventKind::Fork);
    /// `exec` alone.
    pub const EXEC: EventSet = EventSet::of(EventKind::Exec);
    /// `uid` alone.
    pub const UID: EventSet = EventSet::of(EventKind::Uid);
    /// `gid` alone.
    pub const GID: EventSet = EventSet::of(EventKind::Gid);
    /// `sid` alone.
    pub const SID: EventSet = EventSet::of(EventKind::Sid);
    /// `comm` alone.
    pub const COMM: EventSet = EventSet::of(EventKind::Comm);
    /// `ptrace` alone.
    pub const PTRACE: EventSet = EventSet::of(EventKind::Ptrace);
    /// `coredump` alone.
    pub const COREDUMP: EventSet = EventSet::of(EventKind::Coredump);
    /// `exit` alone.
    pub const EXIT: EventSet = EventSet::of(EventKind::Exit);
    /// `free` alone.
    pub const FREE: EventSet = EventSet::of(EventKind::Free);

    /// The set holding only `kind`.
    pub const fn of(kind: EventKind) -> EventSet {
        EventSet(1 << kind as u16)
    }

    /// Both sets together.
    #[must_use]
    pub const fn union(self, other: EventSet) -> EventSet {
        EventSet(self.0 | other.0)
    }

    /// The kinds in both sets.
    #[must_use]
    pub const fn intersection(self, other: EventSet) -> EventSet {
        EventSet(self.0 & other.0)
    }

    /// This set with `kind` added.
    #[must_use]
    pub const fn with(self, kind: EventKind) -> EventSet {
        self.union(EventSet::of(kind))
    }

    /// Whether `kind` is in the set.
    pub const fn contains(self, kind: EventKind) -> bool {
        self.0 & (1 << kind as u16) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// How many kinds the set holds.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The raw bits, bit `n` standing for `EventKind::ALL[n]`.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// The set with these raw bits; bits above the last kind are dropped.
    pub const fn from_bits_truncate(bits: u16) -> EventSet {
        EventSet(bits & EventSet::ALL.0)
    }

    /// The kinds in the set, in declaration order.
    pub fn iter(self) -> impl Iterator<Item = EventKind> {
        EventKind::ALL
            .into_iter()
            .filter(move |kind| self.contains(*kind))
    }

    /// Parses a list such as `fork,exec,exit` or `fork|exit` (the `taskwatch -e` form).
    ///
    /// ```
    /// use watchers_core::EventSet;
    /// assert_eq!(EventSet::parse("fork, exit").unwrap(), EventSet::FORK | EventSet::EXIT);
    /// assert!(EventSet::parse("fork,exot").is_err());
    /// ```
    pub fn parse(list: &str) -> Result<EventSet, UnknownEvent> {
        list.split([',', '|'])
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .try_fold(EventSet::EMPTY, |set, name| {
                EventKind::from_name(name)
                    .map(|kind| set.with(kind))
                    .ok_or_else(|| UnknownEvent(name.to_owned()))
            })
    }
}

/// An event name that is not one of the ten kinds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown event `{0}`; the events are fork, exec, uid, gid, sid, comm, ptrace, coredump, exit, free"
)]
pub struct UnknownEvent(pub String);

impl std::ops::BitOr for EventSet {
    type Output = EventSet;
    fn bitor(self, rhs: EventSet) -> EventSet {
        self.union(rhs)
    }
}

impl std::ops::BitOrAssign for EventSet {
    fn bitor_assign(&mut self, rhs: EventSet) {
        *self = self.union(rhs);
    }
}

impl From<EventKind> for EventSet {
    fn from(kind: EventKind) -> EventSet {
        EventSet::of(kind)
    }
}

impl FromIterator<EventKind> for EventSet {
    fn from_iter<I: IntoIterator<Item = EventKind>>(iter: I) -> EventSet {
        iter.into_iter().fold(EventSet::EMPTY, EventSet::with)
    }
}

impl fmt::Display for EventSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        for (i, kind) in self.iter().enumerate() {
            if i > 0 {
                f.write_str("|")?;
            }
            f.write_str(kind.name())?;
        }
        Ok(())
    }
}

impl fmt::Debug for EventSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventSet({self})")
    }
}
