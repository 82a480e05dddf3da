//! The runtime side of a table: the watchers registered at run time and the merged
//! snapshot that dispatch reads. Registering and unregistering, which need the
//! table, are in `register`.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwapOption;

use crate::event::Event;
use crate::event_kind::{EventKind, EventSet};
use crate::gate::Gate;
use crate::local::{Callback, Called, call_gated};

/// A watcher registered at run time.
pub(crate) struct RuntimeWatcher {
    pub(crate) name: String,
    pub(crate) events: EventSet,
    pub(crate) priority: i32,
    /// When it was registered: a task whose `fork` was dispatched with a snapshot older
    /// than this was not seen by it.
    pub(crate) serial: u64,
    pub(crate) calls: AtomicU64,
    pub(crate) errors: AtomicU64,
    /// Owns the closure.
    pub(crate) gate: Gate<Box<Callback>>,
}

impl RuntimeWatcher {
    /// Calls the watcher unless it has been unregistered. The walk counts its errors.
    ///
    /// Out of line: inlined into the merged walk, the gate's handshake takes registers
    /// that the walk's loop then spills for every watcher, static ones included (+2
    /// instructions per watcher in `dispatch/table+runtime`, by callgrind).
    #[inline(never)]
    pub(crate) fn call(&self, event: &Event<'_>) -> Called {
        // Counted once the gate admits the call, before it runs: a call that panics is
        // a call too (and the walk counts it among the errors).
        call_gated(&self.gate, event, || {
            self.calls.fetch_add(1, Ordering::Relaxed);
        })
    }

    /// Whether it gets the `free` of a task whose `fork` was dispatched with snapshot
    /// `fork_epoch` (0: with no runtime watcher): a watcher of `fork` only for tasks it
    /// saw forked, any other watcher always.
    #[inline]
    pub(crate) fn frees(&self, fork_epoch: u64) -> bool {
        !self.events.contains(EventKind::Fork) || self.serial <= fork_epoch
    }
}

/// One watcher in a merged chain.
#[derive(Clone)]
pub(crate) enum Callee {
    /// A static watcher: its entry index in the table.
    Static(u32),
    /// A runtime watcher.
    Runtime(Arc<RuntimeWatcher>),
}

/// Static and runtime watchers merged, per event, in dispatch order.
pub(crate) struct Snapshot {
    pub(crate) chains: [Box<[Callee]>; EventKind::COUNT],
    /// The serial of the last watcher registered when it was published: every runtime
    /// watcher in it has a serial no greater.
    pub(crate) epoch: u64,
}

/// The runtime side of a table.
pub(crate) struct Runtime {
    /// Tells this table from every other of the process (never 0), so that a task's
    /// fork epoch is read only by the table whose serials it counts.
    pub(crate) id: u64,
    /// The merged chains; `None` while no runtime watcher is registered.
    pub(crate) snapshot: ArcSwapOption<Snapshot>,
    /// The events some runtime watcher asked for: the fast path checks this alone.
    pub(crate) wanted: AtomicU16,
    /// The registered watchers and the last serial handed out; writers take this lock,
    /// dispatch never does.
    registered: Mutex<Registered>,
}

#[derive(Default)]
pub(crate) struct Registered {
    pub(crate) watchers: Vec<Arc<RuntimeWatcher>>,
    pub(crate) last_serial: u64,
}

impl Default for Runtime {
    fn default() -> Runtime {
        // 2^64 tables are never made, so the ids never wrap back to 0 or repeat.
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Runtime {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            snapshot: ArcSwapOption::default(),
            wanted: AtomicU16::default(),
            registered: Mutex::default(),
        }
    }
}

impl Runtime {
    /// Whether a runtime watcher asked for `kind`.
    #[inline]
    pub(crate) fn wants(&self, kind: EventKind) -> bool {
        EventSet::from_bits_truncate(self.wanted.load(Ordering::Acquire)).contains(kind)
    }

    pub(crate) fn wanted_events(&self) -> EventSet {
        EventSet::from_bits_truncate(self.wanted.load(Ordering::Acquire))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Registered> {
        // The list is only pushed to and filtered; a panic cannot tear it.
        self.registered.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn registered(&self) -> Vec<Arc<RuntimeWatcher>> {
        self.lock().watchers.clone()
    }
}
