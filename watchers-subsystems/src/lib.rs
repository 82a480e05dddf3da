//! The kernel users of the task-watchers patches, each a small but honest model of its
//! subsystem, each a task watcher behind a Cargo feature named like its `CONFIG_`
//! switch (all on by default).
//!
//! | module | feature | on the events |
//! | --- | --- | --- |
//! | `audit` | `audit` | per-task audit context; auditd-style records for exec, id changes, exit; bounded backlog with a lost counter |
//! | `semundo` | `sysvipc` | SysV semaphores; undo lists shared with `CLONE_SYSVSEM`, applied once by the last sharer |
//! | `cpusets` | `cpusets` | cpuset hierarchy; the child joins its parent's cpuset; task counts; busy cpusets cannot be removed |
//! | `mempolicy` | `numa` | per-task memory policy copied at fork, freed at free; interleave cursor |
//! | `irqflags` | `trace-irqflags` | per-task irq state initialised at fork, checked at exit |
//! | `lockdep` | `lockdep` | held-lock stacks; locks held at exit and lock-order inversions reported |
//! | `keys` | `keys` | thread/process/session keyrings shared or copied at fork, replaced at exec, re-owned on id changes |
//! | `proc_events` | `proc-events` | every event published in the kernel's `cn_proc` wire layout, with filters and overrun counts |
//! | `delayacct` | `task-delay-acct` | per-task delay counters, reported as a taskstats record at exit |
//! | `profile` | `profiling` | task-exit notifications for profilers; per-name exit counts |
//!
//! Every subsystem registers **only** through `#[task_watcher]` and keeps its per-task
//! state in [`TaskSlot`](watchers_core::TaskSlot)s: nothing of it is in
//! `watchers-core`, and the fork and exit paths of the task model know nothing of it.
//!
//! # Linking: `use watchers_subsystems as _;`
//!
//! The watchers are gathered at link time (`inventory`). A crate that the final binary
//! never references may not be linked at all, and then its watchers are silently
//! missing from [`WatcherTable::global`](watchers_core::WatcherTable::global). A binary
//! that wants these subsystems but calls nothing of this crate must say so:
//!
//! ```
//! use watchers_subsystems as _;
//! ```
//!
//! (`taskwatch list` shows what is actually registered.)
//!
//! # Explicit tables
//!
//! Each module's `watchers()` returns the very [`Watcher`] record the attribute
//! submits (through [`watcher_record!`](watchers_core::watcher_record)), and
//! [`all_watchers`] those of every enabled subsystem, to build a table without
//! link-time registration (tests, Miri, embedders):
//!
//! ```
//! use watchers_core::{CloneFlags, Pid, TaskTable, WatcherTable};
//!
//! let table = WatcherTable::from_watchers(watchers_subsystems::all_watchers())?;
//! let tasks = TaskTable::with_table(table);
//! let child = tasks.fork(Pid::INIT, CloneFlags::empty())?;
//! tasks.exit(child.pid(), 0)?;
//! for (subsystem, line) in watchers_subsystems::summary() {
//!     println!("{subsystem}: {line}");
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Direct calls (for benchmarks)
//!
//! Every module registers one watcher per event it handles (`watch_fork`, `watch_exit`,
//! …, as v2's `DEFINE_TASK_INITCALL` / `…EXITCALL` / `…FREECALL`), each a thin wrapper
//! around an entry point of the module:
//! `on_fork(parent, child, flags)`, and as the subsystem needs `on_exec`, `on_uid`,
//! `on_gid`, `on_exit`, `on_free` (and `on_sid`, `on_comm`, `on_ptrace`, `on_coredump`
//! for `proc_events`). The `benches` crate calls them by hand, in the table's order, as
//! the baseline for comparing dispatch through the table with hand-written calls.
//!
//! # Global state
//!
//! Per-task state is in task slots and disappears with the task. What a kernel keeps
//! globally (the audit backlog, semaphore sets, the cpuset hierarchy, the lock-order
//! graph, key serials, subscriber lists, counters) is global here too, shared by every
//! [`TaskTable`](watchers_core::TaskTable) of the process; each module's `stats()`
//! reads its counters and [`summary`] gives one line per subsystem. Tasks that never got
//! a `fork` event (such as init) have no per-task state.
#![deny(missing_docs)]

#[cfg(feature = "audit")]
pub mod audit;
#[cfg(feature = "cpusets")]
pub mod cpusets;
#[cfg(feature = "task-delay-acct")]
pub mod delayacct;
#[cfg(feature = "trace-irqflags")]
pub mod irqflags;
#[cfg(feature = "keys")]
pub mod keys;
#[cfg(feature = "lockdep")]
pub mod lockdep;
#[cfg(feature = "numa")]
pub mod mempolicy;
#[cfg(feature = "proc-events")]
pub mod proc_events;
#[cfg(feature = "profiling")]
pub mod profile;
#[cfg(feature = "sysvipc")]
pub mod semundo;

#[cfg(any(feature = "cpusets", feature = "numa"))]
mod mask;
#[cfg(any(feature = "cpusets", feature = "numa"))]
pub use mask::{MASK_BITS, Mask, MaskError};

use watchers_core::Watcher;

/// The features (subsystems) compiled in, by their `CONFIG_`-like names.
pub const ENABLED: &[&str] = &[
    #[cfg(feature = "audit")]
    "audit",
    #[cfg(feature = "sysvipc")]
    "sysvipc",
    #[cfg(feature = "cpusets")]
    "cpusets",
    #[cfg(feature = "numa")]
    "numa",
    #[cfg(feature = "trace-irqflags")]
    "trace-irqflags",
    #[cfg(feature = "lockdep")]
    "lockdep",
    #[cfg(feature = "keys")]
    "keys",
    #[cfg(feature = "proc-events")]
    "proc-events",
    #[cfg(feature = "task-delay-acct")]
    "task-delay-acct",
    #[cfg(feature = "profiling")]
    "profiling",
];

/// The watchers of every enabled subsystem: the records `#[task_watcher]` submits, for
/// [`WatcherTable::from_watchers`](watchers_core::WatcherTable::from_watchers).
pub fn all_watchers() -> Vec<Watcher> {
    #[allow(unused_mut)]
    let mut all = Vec::new();
    #[cfg(feature = "audit")]
    all.extend(audit::watchers());
    #[cfg(feature = "sysvipc")]
    all.extend(semundo::watchers());
    #[cfg(feature = "cpusets")]
    all.extend(cpusets::watchers());
    #[cfg(feature = "numa")]
    all.extend(mempolicy::watchers());
    #[cfg(feature = "trace-irqflags")]
    all.extend(irqflags::watchers());
    #[cfg(feature = "lockdep")]
    all.extend(lockdep::watchers());
    #[cfg(feature = "keys")]
    all.extend(keys::watchers());
    #[cfg(feature = "proc-events")]
    all.extend(proc_events::watchers());
    #[cfg(feature = "task-delay-acct")]
    all.extend(delayacct::watchers());
    #[cfg(feature = "profiling")]
    all.extend(profile::watchers());
    all
}

/// One summary line per enabled subsystem, `(module name, line)`: what
/// `taskwatch simulate` prints after a run.
pub fn summary() -> Vec<(&'static str, String)> {
    vec![
        #[cfg(feature = "audit")]
        ("audit", audit::summary()),
        #[cfg(feature = "sysvipc")]
        ("semundo", semundo::summary()),
        #[cfg(feature = "cpusets")]
        ("cpusets", cpusets::summary()),
        #[cfg(feature = "numa")]
        ("mempolicy", mempolicy::summary()),
        #[cfg(feature = "trace-irqflags")]
        ("irqflags", irqflags::summary()),
        #[cfg(feature = "lockdep")]
        ("lockdep", lockdep::summary()),
        #[cfg(feature = "keys")]
        ("keys", keys::summary()),
        #[cfg(feature = "proc-events")]
        ("proc_events", proc_events::summary()),
        #[cfg(feature = "task-delay-acct")]
        ("delayacct", delayacct::summary()),
        #[cfg(feature = "profiling")]
        ("profile", profile::summary()),
    ]
}

/// [`summary`] as text, one `name: line` per subsystem.
pub fn summary_text() -> String {
    summary()
        .into_iter()
        .map(|(name, line)| format!("{name:<12} {line}\n"))
        .collect()
}

#[cfg(test)]
pub(crate) mod testing {
    use std::sync::{Mutex, MutexGuard};

    use watchers_core::{Event, EventData, EventSet, TaskTable, Watcher, WatcherTable};

    /// Serialises the tests that touch a subsystem's global state (configuration,
    /// counters, registries), so that they can assert on exact deltas.
    #[allow(dead_code)]
    pub(crate) fn serial() -> MutexGuard<'static, ()> {
        static SERIAL: Mutex<()> = Mutex::new(());
        SERIAL.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A task table dispatching to exactly `watchers`.
    #[allow(dead_code)]
    pub(crate) fn table_of(watchers: Vec<Watcher>) -> TaskTable {
        let table = WatcherTable::from_watchers(watchers).expect("a valid table");
        TaskTable::with_table(table)
    }

    /// The name that makes [`failing_fork`] refuse to fork a task's children.
    pub(crate) const DOOMED: &str = "doomed";

    /// A watcher (at `priority`) that refuses every fork by a parent named [`DOOMED`],
    /// to test the rollback of what ran before it.
    #[allow(dead_code)]
    pub(crate) fn failing_fork(priority: i32) -> Watcher {
        fn refuse(event: &Event<'_>) -> Result<(), &'static str> {
            match event.data() {
                EventData::Fork { parent, .. } if parent.comm() == DOOMED => {
                    Err("injected fork failure")
                }
                _ => Ok(()),
            }
        }
        Watcher::new("testing::failing_fork", EventSet::FORK, |event| {
            watchers_core::IntoWatcherResult::into_watcher_result(refuse(event))
        })
        .with_priority(priority)
    }

    /// One watcher per event, as v2 had: each subsystem's records want one event each
    /// (but `fork | free`, which a rolled-back fork needs together), no two the same,
    /// all at the subsystem's one priority (so that the table runs a subsystem's
    /// teardown exactly where its set-up ran, reversed).
    #[test]
    fn one_watcher_per_event_per_subsystem() {
        let mut seen: std::collections::BTreeMap<&str, (i32, EventSet)> = Default::default();
        for (subsystem, _) in crate::summary() {
            seen.insert(subsystem, (0, EventSet::EMPTY));
        }
        for watcher in crate::all_watchers() {
            let module = watcher
                .name()
                .strip_prefix("watchers_subsystems::")
                .and_then(|rest| rest.split("::").next())
                .expect("a subsystem's watcher");
            let events = watcher.events();
            assert!(
                events.len() == 1 || events == EventSet::FORK.union(EventSet::FREE),
                "{} wants {events:?}",
                watcher.name()
            );
            let (priority, all) = seen.get_mut(module).expect("an enabled subsystem");
            assert!(
                all.intersection(events).is_empty(),
                "{} repeats an event",
                watcher.name()
            );
            if all.is_empty() {
                *priority = watcher.priority();
            }
            assert_eq!(watcher.priority(), *priority, "{}", watcher.name());
            *all = all.union(events);
        }
        assert!(seen.values().all(|(_, all)| !all.is_empty()));
    }

    /// A small deterministic generator (splitmix64) for randomised tests.
    #[allow(dead_code)]
    pub(crate) struct Rng(u64);

    #[allow(dead_code)]
    impl Rng {
        pub(crate) fn new(seed: u64) -> Rng {
            Rng(seed)
        }

        pub(crate) fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        /// A number in `0..n` (`n > 0`).
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Every watcher of [`all_watchers`](crate::all_watchers) is also registered by its
    /// `#[task_watcher]`, with the same events and priority.
    #[test]
    fn explicit_records_match_the_registered_ones() {
        let registered = WatcherTable::from_inventory().expect("a valid registration");
        let stats = registered.watchers();
        let all = crate::all_watchers();
        let ours = stats
            .iter()
            .filter(|s| s.name.starts_with("watchers_subsystems::"))
            .count();
        assert_eq!(
            all.len(),
            ours,
            "every registered subsystem watcher is listed"
        );
        for watcher in all {
            let found = stats
                .iter()
                .find(|s| s.name == watcher.name())
                .unwrap_or_else(|| panic!("{} is not registered", watcher.name()));
            assert_eq!(found.events, watcher.events(), "{}", watcher.name());
            assert_eq!(found.priority, watcher.priority(), "{}", watcher.name());
        }
    }
}
