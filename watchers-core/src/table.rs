//! The frozen table: every static watcher, one contiguous array of function pointers
//! per event, in a deterministic order.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::counter::EventCounters;
use crate::error::FreezeError;
use crate::event::{EventKind, EventSet};
use crate::runtime::Runtime;
use crate::watcher::{Location, Watcher, WatcherFn};

/// The immutable dispatch table.
///
/// Built once from every `#[task_watcher]` in the program ([`WatcherTable::global`],
/// [`freeze`](crate::freeze)) or from an explicit list ([`WatcherTable::from_watchers`]).
/// After that nothing in it changes but counters, so dispatch takes no lock.
///
/// **Order.** Watchers run by descending priority, ties broken by name; `exit` and
/// `free` run in the reverse of that order, so what was set up last is torn down first.
///
/// ```
/// use watchers_core::{Event, EventData, EventKind, EventSet, Task, Watcher, WatcherTable};
///
/// fn early(_: &Event<'_>) -> watchers_core::WatcherResult { Ok(()) }
/// fn late(_: &Event<'_>) -> watchers_core::WatcherResult { Ok(()) }
///
/// let table = WatcherTable::from_watchers([
///     Watcher::new("late", EventSet::FORK | EventSet::EXIT, late),
///     Watcher::new("early", EventSet::FORK | EventSet::EXIT, early).with_priority(10),
/// ])?;
/// let names = |kind| table.order(kind).map(|w| w.name()).collect::<Vec<_>>();
/// assert_eq!(names(EventKind::Fork), ["early", "late"]);
/// assert_eq!(names(EventKind::Exit), ["late", "early"]);
/// # Ok::<(), watchers_core::FreezeError>(())
/// ```
pub struct WatcherTable {
    pub(crate) entries: Box<[Entry]>,
    pub(crate) chains: [Chain; EventKind::COUNT],
    pub(crate) dispatched: EventCounters,
    pub(crate) runtime: Runtime,
}

/// One static watcher and the counters that cannot be derived from dispatch counts.
pub(crate) struct Entry {
    pub(crate) watcher: Watcher,
    pub(crate) errors: AtomicU64,
    /// Forks stopped by an earlier watcher before reaching this one.
    pub(crate) skipped: AtomicU64,
    /// `free` calls made by fork rollbacks.
    pub(crate) rollback_frees: AtomicU64,
}

/// The watchers of one event, in dispatch order.
#[derive(Default)]
pub(crate) struct Chain {
    pub(crate) funcs: Box<[WatcherFn]>,
    /// Each function's entry index.
    pub(crate) ids: Box<[u32]>,
    /// For the `fork` chain: whether each watcher also asked for `free`.
    pub(crate) wants_free: Box<[bool]>,
}

impl WatcherTable {
    /// Builds a table from an explicit list of watchers (for tests, Miri, or programs
    /// that do not use link-time registration).
    ///
    /// # Errors
    /// [`FreezeError::DuplicateName`] if two watchers share a name, with both locations;
    /// [`FreezeError::NoEvents`] for a watcher with an empty event set.
    pub fn from_watchers(watchers: impl IntoIterator<Item = Watcher>) -> Result<Self, FreezeError> {
        let input: Vec<Watcher> = watchers.into_iter().collect();
        // Sort small keys rather than the records: priority, then name, then the input
        // position, which makes the order the same as a stable sort by priority and name.
        let mut keys: Vec<(Reverse<i32>, &'static str, usize)> = input
            .iter()
            .enumerate()
            .map(|(i, w)| (Reverse(w.priority()), w.name(), i))
            .collect();
        keys.sort_unstable();

        let mut seen: HashMap<&'static str, usize, BuildHasherDefault<NameHasher>> =
            HashMap::with_capacity_and_hasher(keys.len(), BuildHasherDefault::default());
        for &(_, name, i) in &keys {
            let watcher = &input[i];
            if watcher.events().is_empty() {
                return Err(FreezeError::NoEvents {
                    name,
                    location: watcher.location(),
                });
            }
            if let Some(first) = seen.insert(name, i) {
                return Err(FreezeError::DuplicateName {
                    name,
                    first: input[first].location(),
                    second: watcher.location(),
                });
            }
        }
        drop(seen);

        let watchers: Vec<Watcher> = keys.iter().map(|&(_, _, i)| input[i]).collect();
        let chains = Chain::build_all(&watchers);
        let entries = watchers
            .into_iter()
            .map(|watcher| Entry {
                watcher,
                errors: AtomicU64::new(0),
                skipped: AtomicU64::new(0),
                rollback_frees: AtomicU64::new(0),
            })
            .collect();
        Ok(WatcherTable {
            entries,
            chains,
            dispatched: EventCounters::default(),
            runtime: Runtime::default(),
        })
    }

    /// Builds a table from every watcher registered with `#[task_watcher]` in the
    /// program. Most programs want [`WatcherTable::global`] instead, which does this once.
    ///
    /// # Errors
    /// As [`WatcherTable::from_watchers`].
    pub fn from_inventory() -> Result<Self, FreezeError> {
        WatcherTable::from_watchers(inventory::iter::<Watcher>.into_iter().copied())
    }

    /// The program-wide table, built from every `#[task_watcher]` on first use.
    ///
    /// # Panics
    /// If the registered watchers cannot form a table (two share a name). Call
    /// [`freeze`](crate::freeze) at start-up to get that as an error value instead.
    pub fn global() -> &'static WatcherTable {
        match freeze() {
            Ok(table) => table,
            Err(error) => panic!("task watchers: {error}"),
        }
    }

    /// Leaks the table, for a [`TaskTable`](crate::TaskTable) or an event source that
    /// needs one for the rest of the program.
    pub fn leak(self) -> &'static WatcherTable {
        Box::leak(Box::new(self))
    }

    /// How many static watchers the table holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table holds no static watchers.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The static watchers of `kind`, in the order a dispatch calls them.
    pub fn order(&self, kind: EventKind) -> impl ExactSizeIterator<Item = &Watcher> + '_ {
        self.chains[kind.index()]
            .ids
            .iter()
            .map(|&id| &self.entries[id as usize].watcher)
    }

    /// The events at least one watcher (static or runtime) asked for: what an event
    /// source needs to deliver.
    pub fn wanted_events(&self) -> EventSet {
        self.entries
            .iter()
            .fold(self.runtime.wanted_events(), |set, entry| {
                set | entry.watcher.events()
            })
    }

    /// How many times `kind` was dispatched to at least one watcher.
    pub fn dispatched(&self, kind: EventKind) -> u64 {
        self.dispatched.get(kind)
    }

    /// Every watcher, static and runtime, in `fork` order (priority, then name), with
    /// its call and error counts.
    pub fn watchers(&self) -> Vec<WatcherStats> {
        let mut all = self.static_watchers();
        all.extend(self.runtime.registered().iter().map(|w| WatcherStats {
            name: w.name.clone(),
            events: w.events,
            priority: w.priority,
            location: Location::UNKNOWN,
            runtime: true,
            calls: w.calls.load(Ordering::Relaxed),
            errors: w.errors.load(Ordering::Relaxed),
        }));
        all.sort_by(|a, b| (Reverse(a.priority), &a.name).cmp(&(Reverse(b.priority), &b.name)));
        all
    }

    fn static_watchers(&self) -> Vec<WatcherStats> {
        let dispatched = EventKind::ALL.map(|kind| self.dispatched.get(kind));
        self.entries
            .iter()
            .map(|entry| {
                let watcher = entry.watcher;
                // Every dispatch of an event runs each of its watchers, except forks that
                // an earlier watcher stopped; rollbacks add `free` calls of their own.
                let calls = watcher
                    .events()
                    .iter()
                    .map(|kind| dispatched[kind.index()])
                    .sum::<u64>()
                    .saturating_sub(entry.skipped.load(Ordering::Relaxed))
                    + entry.rollback_frees.load(Ordering::Relaxed);
                WatcherStats {
                    name: watcher.name().into(),
                    events: watcher.events(),
                    priority: watcher.priority(),
                    location: watcher.location(),
                    runtime: false,
                    calls,
                    errors: entry.errors.load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}

impl std::fmt::Debug for WatcherTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatcherTable")
            .field(
                "watchers",
                &self
                    .entries
                    .iter()
                    .map(|e| e.watcher.name())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Chain {
    /// Every event's chain, in one pass over the watchers (sorted in `fork` order).
    fn build_all(sorted: &[Watcher]) -> [Chain; EventKind::COUNT] {
        let mut ids: [Vec<u32>; EventKind::COUNT] = Default::default();
        for (id, watcher) in sorted.iter().enumerate() {
            let id = u32::try_from(id).expect("fewer than 2^32 watchers");
            for kind in watcher.events().iter() {
                ids[kind.index()].push(id);
            }
        }
        let mut kinds = EventKind::ALL.into_iter();
        ids.map(|mut ids| {
            let kind = kinds.next().expect("one list per kind");
            if kind.is_teardown() {
                ids.reverse();
            }
            Chain {
                funcs: ids.iter().map(|&id| sorted[id as usize].func()).collect(),
                wants_free: ids
                    .iter()
                    .map(|&id| sorted[id as usize].events().contains(EventKind::Free))
                    .collect(),
                ids: ids.into_boxed_slice(),
            }
        })
    }
}

/// A fast hasher for the duplicate-name check of the freeze: FxHash's rotate, xor and
/// multiply, eight bytes at a time. The names are the program's own, not adversarial
/// input, so a DoS-resistant hash (std's SipHash, a third of the freeze time of 10,000
/// watchers) buys nothing here.
#[derive(Default)]
struct NameHasher(u64);

impl NameHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for NameHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A watcher and what it has done so far, as [`WatcherTable::watchers`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatcherStats {
    /// Its name.
    pub name: String,
    /// The events it asked for.
    pub events: EventSet,
    /// Its priority.
    pub priority: i32,
    /// Where it was declared ([`Location::UNKNOWN`] for a runtime watcher).
    pub location: Location,
    /// Whether it was registered at run time rather than with `#[task_watcher]`.
    pub runtime: bool,
    /// How many times it was called.
    pub calls: u64,
    /// How many of those calls failed (returned an error or panicked).
    pub errors: u64,
}

static GLOBAL: OnceLock<Result<WatcherTable, FreezeError>> = OnceLock::new();

/// Builds the program-wide table from every `#[task_watcher]` now, rather than on the
/// first dispatch, and reports a broken registration as an error value.
///
/// Calling it again returns the same table (or the same error).
///
/// # Errors
/// [`FreezeError::DuplicateName`] if two watchers share a name (both locations are in
/// the message).
pub fn freeze() -> Result<&'static WatcherTable, FreezeError> {
    GLOBAL
        .get_or_init(WatcherTable::from_inventory)
        .as_ref()
        .map_err(Clone::clone)
}
