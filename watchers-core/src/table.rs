//! The frozen table: every static watcher, one contiguous array of function pointers
//! per event, in a deterministic order.

use std::cmp::Reverse;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::counter::EventCounters;
use crate::error::{DuplicateName, FreezeError};
use crate::event_kind::{EventKind, EventSet};
use crate::location::Location;
use crate::routing::{Routing, SLOW as ROUTE_SLOW};
use crate::runtime::Runtime;
use crate::watcher::{Watcher, WatcherFn};

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
    /// The routing word (see [`routing`](crate::routing)): its own part is rebuilt by
    /// [`WatcherTable::reroute`].
    pub(crate) route: Arc<Routing>,
    pub(crate) entries: Box<[Entry]>,
    pub(crate) chains: [Chain; EventKind::COUNT],
    pub(crate) dispatched: EventCounters,
    /// Whether dispatches are counted (see [`WatcherTable::without_call_counts`]).
    counting: bool,
    pub(crate) runtime: Runtime,
}

const _: () = assert!(EventKind::COUNT <= ROUTE_SLOW as usize);

/// One static watcher and the counters that cannot be derived from dispatch counts.
pub(crate) struct Entry {
    pub(crate) watcher: Watcher,
    pub(crate) errors: AtomicU64,
    /// Forks stopped by an earlier watcher before reaching this one.
    pub(crate) skipped: AtomicU64,
    /// `free` calls made by fork rollbacks.
    pub(crate) rollback_frees: AtomicU64,
}

/// How many calls a static walk makes per step of its loop (see
/// [`dispatch`](crate::dispatch)); a chain keeps its functions in blocks of this size.
pub(crate) const UNROLL: usize = 8;

/// The watchers of one event, in dispatch order.
#[derive(Default)]
pub(crate) struct Chain {
    /// The functions, in whole blocks of [`UNROLL`]…
    pub(crate) blocks: Box<[[WatcherFn; UNROLL]]>,
    /// … and the rest: split when the table is built, so that a walk does no
    /// arithmetic to find its loops' bounds.
    pub(crate) rest: Box<[WatcherFn]>,
    /// Each function's entry index.
    pub(crate) ids: Box<[u32]>,
    /// For the `fork` chain: whether each watcher also asked for `free`.
    pub(crate) wants_free: Box<[bool]>,
}

impl WatcherTable {
    /// Builds a table from an explicit list of watchers (for tests, Miri, or programs
    /// that do not use link-time registration). The record of a `#[task_watcher]`
    /// function is [`watcher_record!`](crate::watcher_record):
    ///
    /// ```
    /// use watchers_core::{Event, EventKind, EventSet, WatcherTable, task_watcher, watcher_record};
    ///
    /// #[task_watcher(events = fork | exit, priority = 3)]
    /// fn tracker(_: &Event<'_>) {}
    ///
    /// let table = WatcherTable::from_watchers([watcher_record!(tracker)])?;
    /// let tracker = table.order(EventKind::Exit).next().unwrap();
    /// assert_eq!((tracker.events(), tracker.priority()), (EventSet::FORK | EventSet::EXIT, 3));
    /// # Ok::<(), watchers_core::FreezeError>(())
    /// ```
    ///
    /// # Errors
    /// [`FreezeError::DuplicateNames`] if watchers share a name: every such name, each
    /// with all its locations; otherwise [`FreezeError::NoEvents`] for a watcher with an
    /// empty event set, or [`FreezeError::EmptyName`] for one with an empty or blank name.
    pub fn from_watchers(watchers: impl IntoIterator<Item = Watcher>) -> Result<Self, FreezeError> {
        let input: Vec<Watcher> = watchers.into_iter().collect();
        let count = u32::try_from(input.len()).expect("fewer than 2^32 watchers");
        // Sort small keys rather than the records. First by name (and input position):
        // a duplicate name is then next to its twin, found without a hash set. Then by
        // priority alone, with a stable sort: the order is priority, then name, then
        // input position, the same as a stable sort of the records by priority and name.
        // Names share long prefixes (module paths), so each key also carries the sixteen
        // bytes of its name after the prefix that all the names share: most comparisons
        // end there, without comparing the strings (which decide only on a tie).
        let shared = shared_prefix(input.iter().map(Watcher::name));
        let mut keys: Vec<(Reverse<i32>, [u64; 2], &'static str, u32)> = input
            .iter()
            .zip(0..count)
            .map(|(w, i)| (Reverse(w.priority()), window(w.name(), shared), w.name(), i))
            .collect();
        keys.sort_unstable_by(|a, b| (a.1, a.2, a.3).cmp(&(b.1, b.2, b.3)));
        if keys.windows(2).any(|pair| pair[0].2 == pair[1].2) {
            let by_name: Vec<u32> = keys.iter().map(|key| key.3).collect();
            return Err(duplicates(&input, &by_name));
        }
        keys.sort_by_key(|key| key.0);
        let order: Vec<u32> = keys.into_iter().map(|(_, _, _, i)| i).collect();
        if let Some(&i) = order
            .iter()
            .find(|&&i| input[i as usize].events().is_empty())
        {
            let watcher = &input[i as usize];
            return Err(FreezeError::NoEvents {
                name: watcher.name(),
                location: watcher.location(),
            });
        }
        if let Some(watcher) = input.iter().find(|w| w.name().trim().is_empty()) {
            return Err(FreezeError::EmptyName {
                location: watcher.location(),
            });
        }

        let entries: Box<[Entry]> = order
            .iter()
            .map(|&i| Entry {
                watcher: input[i as usize],
                errors: AtomicU64::new(0),
                skipped: AtomicU64::new(0),
                rollback_frees: AtomicU64::new(0),
            })
            .collect();
        let chains = Chain::build_all(&entries);
        let table = WatcherTable {
            route: Routing::registered(0),
            entries,
            chains,
            dispatched: EventCounters::default(),
            counting: true,
            runtime: Runtime::default(),
        };
        table.reroute(EventSet::EMPTY);
        Ok(table)
    }

    /// The table without dispatch counts: [`dispatched`](WatcherTable::dispatched) stays
    /// 0 and the `calls` that [`watchers`](WatcherTable::watchers) reports for a static
    /// watcher count only rollback `free` calls (runtime watchers still count theirs).
    /// A dispatch that only static watchers want then costs little more than calling
    /// each watcher's function: counting takes a thread-local shard lookup and a store
    /// per dispatch, more than the rest of the fixed cost.
    ///
    /// ```
    /// use watchers_core::{Event, EventData, EventKind, EventSet, Task, Watcher, WatcherTable};
    ///
    /// fn on_exec(_: &Event<'_>) -> watchers_core::WatcherResult { Ok(()) }
    ///
    /// let table = WatcherTable::from_watchers([Watcher::new("w", EventSet::EXEC, on_exec)])?
    ///     .without_call_counts();
    /// let task = Task::detached(7);
    /// table.dispatch(&Event::new(&task, EventData::Exec { filename: "/bin/true" }))?;
    /// assert_eq!(table.dispatched(EventKind::Exec), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn without_call_counts(mut self) -> Self {
        self.counting = false;
        let runtime = self.runtime.wanted_events();
        self.reroute(runtime);
        self
    }

    /// Whether this table counts dispatches (true unless built
    /// [`without_call_counts`](WatcherTable::without_call_counts)).
    pub fn counts_calls(&self) -> bool {
        self.counting
    }

    /// Rebuilds the routing word for the runtime watchers' events `runtime`; called when
    /// they change, under the registration lock.
    pub(crate) fn reroute(&self, runtime: EventSet) {
        let statics = self
            .chains
            .iter()
            .zip(0..)
            .filter(|(chain, _)| chain.len() > 0)
            .fold(0u32, |bits, (_, k)| bits | 1 << k);
        let runtime = u32::from(runtime.bits());
        let counted = if self.counting { statics } else { 0 };
        let slow = runtime | counted;
        self.route.set_own(statics | runtime | slow << ROUTE_SLOW);
    }

    /// Counts a dispatch of `kind`, if this table counts.
    #[inline]
    pub(crate) fn count(&self, kind: EventKind) {
        if self.counting {
            self.dispatched.bump(kind);
        }
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
    /// If the registered watchers cannot form a table (two share a name), at the
    /// caller's location. Call [`freeze`](crate::freeze) at start-up to get that as an
    /// error value instead.
    #[track_caller]
    pub fn global() -> &'static WatcherTable {
        match freeze() {
            Ok(table) => table,
            Err(error) => panic!(
                "task watchers: {error} (call watchers_core::freeze() at start-up to get this as an error value)"
            ),
        }
    }

    /// Leaks the table, for code that wants a `&'static WatcherTable`. A
    /// [`TaskTable`](crate::TaskTable) or an event source does not need it: they take
    /// the table itself, or an `Arc` of it (see [`TableRef`]).
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

    /// How many times `kind` was dispatched to at least one watcher (always 0 for a
    /// table built [`without_call_counts`](WatcherTable::without_call_counts)).
    pub fn dispatched(&self, kind: EventKind) -> u64 {
        self.dispatched.get(kind)
    }

    /// Every watcher, static and runtime, in `fork` order (priority, then name), with
    /// its call and error counts (a static watcher's calls are derived from the dispatch
    /// counts, which a table built
    /// [`without_call_counts`](WatcherTable::without_call_counts) does not keep).
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

/// How many leading bytes all `names` share.
fn shared_prefix<'a>(mut names: impl Iterator<Item = &'a str>) -> usize {
    let Some(first) = names.next() else {
        return 0;
    };
    let first = first.as_bytes();
    names.fold(first.len(), |shared, name| {
        first[..shared]
            .iter()
            .zip(name.as_bytes())
            .take_while(|(a, b)| a == b)
            .count()
    })
}

/// The sixteen bytes of `name` from `offset` on, zero-padded, as two big-endian
/// numbers: they order like the bytes. Where a name ends inside the window, or holds a
/// zero byte, two windows may tie although the names differ: the names then decide.
fn window(name: &str, offset: usize) -> [u64; 2] {
    let bytes = name.as_bytes().get(offset..).unwrap_or_default();
    let mut padded = [0u8; 16];
    let n = bytes.len().min(16);
    padded[..n].copy_from_slice(&bytes[..n]);
    let (high, low) = padded.split_at(8);
    [
        u64::from_be_bytes(high.try_into().expect("eight bytes")),
        u64::from_be_bytes(low.try_into().expect("eight bytes")),
    ]
}

/// Every name that `input` holds more than once, with each of its locations in input
/// order; `by_name` is the input positions sorted by name, then position.
#[cold]
fn duplicates(input: &[Watcher], by_name: &[u32]) -> FreezeError {
    let watchers: Vec<&Watcher> = by_name.iter().map(|&i| &input[i as usize]).collect();
    let found = watchers
        .chunk_by(|a, b| a.name() == b.name())
        .filter(|same| same.len() > 1)
        .map(|same| DuplicateName {
            name: same[0].name(),
            locations: same.iter().map(|w| w.location()).collect(),
        })
        .collect();
    FreezeError::DuplicateNames(found)
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
    /// How many watchers.
    pub(crate) fn len(&self) -> usize {
        self.blocks.len() * UNROLL + self.rest.len()
    }

    /// Watcher `i`'s function.
    pub(crate) fn func(&self, i: usize) -> WatcherFn {
        match self.blocks.get(i / UNROLL) {
            Some(block) => block[i % UNROLL],
            None => self.rest[i - self.blocks.len() * UNROLL],
        }
    }

    /// The position of the function at address `at`, an element of `blocks` or `rest`.
    pub(crate) fn position(&self, at: usize) -> usize {
        let size = size_of::<WatcherFn>();
        let blocks = self.blocks.as_ptr().addr();
        let in_blocks = self.blocks.len() * UNROLL;
        if (blocks..blocks + in_blocks * size).contains(&at) {
            (at - blocks) / size
        } else {
            in_blocks + (at - self.rest.as_ptr().addr()) / size
        }
    }

    /// Every event's chain, from the entries (sorted in `fork` order).
    fn build_all(sorted: &[Entry]) -> [Chain; EventKind::COUNT] {
        let mut counts = [0usize; EventKind::COUNT];
        for entry in sorted {
            for_each_kind(entry.watcher.events(), |kind| counts[kind] += 1);
        }
        let mut ids: [Vec<u32>; EventKind::COUNT] = counts.map(Vec::with_capacity);
        for (entry, id) in sorted.iter().zip(0u32..) {
            for_each_kind(entry.watcher.events(), |kind| ids[kind].push(id));
        }
        let mut kinds = EventKind::ALL.into_iter();
        ids.map(|mut ids| {
            let kind = kinds.next().expect("one list per kind");
            if kind.is_teardown() {
                ids.reverse();
            }
            let funcs: Vec<WatcherFn> = ids
                .iter()
                .map(|&id| sorted[id as usize].watcher.func())
                .collect();
            let (blocks, rest) = funcs.as_chunks::<UNROLL>();
            Chain {
                blocks: blocks.into(),
                rest: rest.into(),
                wants_free: ids
                    .iter()
                    .map(|&id| {
                        sorted[id as usize]
                            .watcher
                            .events()
                            .contains(EventKind::Free)
                    })
                    .collect(),
                ids: ids.into_boxed_slice(),
            }
        })
    }
}

/// Calls `f` with the index of each kind in `events`.
#[inline]
fn for_each_kind(events: EventSet, mut f: impl FnMut(usize)) {
    let mut bits = events.bits();
    while bits != 0 {
        f(bits.trailing_zeros() as usize);
        bits &= bits - 1;
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

/// A watcher table as a [`TaskTable`](crate::TaskTable) or an event source holds it:
/// a `&'static` one (such as [`WatcherTable::global`]) or one shared through an [`Arc`],
/// dropped with its last holder, so that no table has to be leaked.
///
/// `&'static WatcherTable`, `Arc<WatcherTable>` and `WatcherTable` (moved into a new
/// `Arc`) convert into it; it dereferences to the table.
///
/// ```
/// use std::sync::Arc;
/// use watchers_core::{TaskTable, WatcherTable};
///
/// let table = Arc::new(WatcherTable::from_watchers([])?);
/// let tasks = TaskTable::with_table(Arc::clone(&table));
/// let child = tasks.fork(tasks.init().pid(), Default::default())?;
/// assert_eq!(child.pid().get(), 2);
/// drop(tasks);
/// assert_eq!(Arc::strong_count(&table), 1, "nothing leaked");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct TableRef(Holder);

#[derive(Clone)]
enum Holder {
    Static(&'static WatcherTable),
    Shared(Arc<WatcherTable>),
}

impl Deref for TableRef {
    type Target = WatcherTable;

    #[inline]
    fn deref(&self) -> &WatcherTable {
        match &self.0 {
            Holder::Static(table) => table,
            Holder::Shared(table) => table,
        }
    }
}

impl From<&'static WatcherTable> for TableRef {
    fn from(table: &'static WatcherTable) -> TableRef {
        TableRef(Holder::Static(table))
    }
}

impl From<Arc<WatcherTable>> for TableRef {
    fn from(table: Arc<WatcherTable>) -> TableRef {
        TableRef(Holder::Shared(table))
    }
}

impl From<WatcherTable> for TableRef {
    fn from(table: WatcherTable) -> TableRef {
        TableRef(Holder::Shared(Arc::new(table)))
    }
}

impl std::fmt::Debug for TableRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

static GLOBAL: OnceLock<Result<WatcherTable, FreezeError>> = OnceLock::new();

/// Builds the program-wide table from every `#[task_watcher]` now, rather than on the
/// first dispatch, and reports a broken registration as an error value.
///
/// Calling it again returns the same table (or the same error).
///
/// # Errors
/// [`FreezeError::DuplicateNames`] if watchers share a name: every such name, with all
/// its locations, at once.
pub fn freeze() -> Result<&'static WatcherTable, FreezeError> {
    GLOBAL
        .get_or_init(WatcherTable::from_inventory)
        .as_ref()
        .map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::watcher_result::WatcherResult;

    fn nothing(_: &Event<'_>) -> WatcherResult {
        Ok(())
    }

    /// The names of a scrambled list with many equal priorities and names that share
    /// prefixes, some a prefix of another, some with zero bytes, some longer than the
    /// sixteen bytes the sort compares first.
    fn scrambled() -> Vec<Watcher> {
        let names: Vec<&'static str> = (0..500)
            .map(|i| {
                &*Box::leak(format!("m{}::w{}", (i * 7919) % 13, (i * 31) % 500).into_boxed_str())
            })
            .chain([
                "m1",
                "m1::",
                "m1::w",
                "m1\0",
                "m1\0\0z",
                "m1::w0123456789abcdef0",
            ])
            .collect();
        names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let events = EventSet::from_bits_truncate(1 << (i % EventKind::COUNT));
                Watcher::new(name, events, nothing).with_priority((i % 5) as i32 - 2)
            })
            .collect()
    }

    #[test]
    fn order_is_a_stable_sort_by_priority_then_name() {
        let list = scrambled();
        let mut expected = list.clone();
        expected.sort_by_key(|w| (Reverse(w.priority()), w.name()));
        let table = WatcherTable::from_watchers(list).unwrap();
        let got: Vec<&str> = table.entries.iter().map(|e| e.watcher.name()).collect();
        let want: Vec<&str> = expected.iter().map(|w| w.name()).collect();
        assert_eq!(got, want);
        for kind in EventKind::ALL {
            let mut chain: Vec<&str> = expected
                .iter()
                .filter(|w| w.events().contains(kind))
                .map(|w| w.name())
                .collect();
            if kind.is_teardown() {
                chain.reverse();
            }
            assert_eq!(
                table.order(kind).map(|w| w.name()).collect::<Vec<_>>(),
                chain
            );
            let built = &table.chains[kind.index()];
            assert_eq!(built.len(), chain.len());
            let funcs: Vec<WatcherFn> = (0..built.len()).map(|i| built.func(i)).collect();
            let expected: Vec<WatcherFn> = table.order(kind).map(|w| w.func()).collect();
            assert_eq!(funcs, expected);
        }
    }

    #[test]
    fn every_duplicate_is_reported_with_every_location() {
        let at = |line| Location {
            module_path: "m",
            file: "f.rs",
            line,
        };
        let list = [
            Watcher::new("b", EventSet::FORK, nothing).with_location(at(1)),
            Watcher::new("a", EventSet::FORK, nothing)
                .with_location(at(2))
                .with_priority(-1),
            Watcher::new("c", EventSet::FORK, nothing).with_location(at(3)),
            Watcher::new("a", EventSet::FORK, nothing)
                .with_location(at(4))
                .with_priority(5),
            Watcher::new("b", EventSet::FORK, nothing).with_location(at(5)),
            Watcher::new("a", EventSet::EMPTY, nothing).with_location(at(6)),
        ];
        let Err(FreezeError::DuplicateNames(found)) = WatcherTable::from_watchers(list) else {
            panic!("expected duplicates");
        };
        let lines: Vec<(&str, Vec<u32>)> = found
            .iter()
            .map(|d| (d.name, d.locations.iter().map(|l| l.line).collect()))
            .collect();
        assert_eq!(lines, [("a", vec![2, 4, 6]), ("b", vec![1, 5])]);
        let message = FreezeError::DuplicateNames(found).to_string();
        for place in ["f.rs:1", "f.rs:2", "f.rs:4", "f.rs:5", "f.rs:6"] {
            assert!(message.contains(place), "{place} missing from: {message}");
        }
    }

    #[test]
    fn a_watcher_with_a_blank_name_is_reported() {
        for blank in ["", " \t"] {
            let list = [
                Watcher::new("a", EventSet::FORK, nothing),
                Watcher::new(blank, EventSet::FORK, nothing),
            ];
            assert!(
                matches!(
                    WatcherTable::from_watchers(list),
                    Err(FreezeError::EmptyName { .. })
                ),
                "{blank:?}"
            );
        }
    }

    #[test]
    fn a_watcher_without_events_is_reported() {
        let list = [
            Watcher::new("a", EventSet::FORK, nothing),
            Watcher::new("b", EventSet::EMPTY, nothing),
        ];
        assert!(matches!(
            WatcherTable::from_watchers(list),
            Err(FreezeError::NoEvents { name: "b", .. })
        ));
    }
}
