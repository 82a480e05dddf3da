//! A source with an explicit table and a ledger of what its watchers saw, per task
//! identity (a serial the first `fork` watcher stores in a slot, never reused).

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use watchers_core::{
    Event, EventData, EventKind, EventSet, ExitStatus, Pid, Registration, TaskSlot, WatcherTable,
};
use watchers_tokio::{AsyncTasks, Outcome};

/// Each task's identity in the ledger.
pub static SERIAL: TaskSlot<u64> = TaskSlot::new();

/// The name of the refusing watcher.
pub const REFUSER: &str = "ledger::refuse";

/// What the watchers saw.
#[derive(Default)]
pub struct Ledger {
    next: AtomicU64,
    /// `fork`s the identity watcher accepted, by serial.
    pub forks: Mutex<HashMap<u64, u32>>,
    /// `exit` statuses, by serial.
    pub exits: Mutex<HashMap<u64, Vec<ExitStatus>>>,
    /// `free`s, by serial.
    pub frees: Mutex<HashMap<u64, u32>>,
    /// The pid of the parent in each `fork` event, by serial.
    pub parents: Mutex<HashMap<u64, Pid>>,
    /// Whether the refuser refuses (every third serial) yet.
    pub armed: AtomicBool,
    /// Refusals made.
    pub refused: AtomicU64,
    /// `free`s seen while [`Ledger::busy`] was set.
    pub frees_while_busy: AtomicU64,
    /// Set by a test while it is still spawning.
    pub busy: AtomicBool,
}

impl Ledger {
    /// Serials of every task forked so far.
    pub fn forked(&self) -> usize {
        self.forks.lock().unwrap().len()
    }

    /// How many exits had `outcome`.
    pub fn exited(&self, outcome: Outcome) -> usize {
        self.exits
            .lock()
            .unwrap()
            .values()
            .flatten()
            .filter(|status| Outcome::of(**status) == Some(outcome))
            .count()
    }

    /// Every identity forked was freed exactly once, and none was freed that was not
    /// forked; every exit was a single one, of a forked task.
    pub fn assert_balanced(&self) {
        let forks = self.forks.lock().unwrap();
        let frees = self.frees.lock().unwrap();
        let exits = self.exits.lock().unwrap();
        for (serial, count) in forks.iter() {
            assert_eq!(*count, 1, "task {serial} forked {count} times");
            assert_eq!(frees.get(serial), Some(&1), "task {serial}: frees");
        }
        assert_eq!(forks.len(), frees.len(), "freed a task never forked");
        for (serial, statuses) in exits.iter() {
            assert_eq!(statuses.len(), 1, "task {serial} exited {statuses:?}");
            assert!(forks.contains_key(serial), "task {serial} exited unforked");
        }
    }
}

/// A source on its own table, whose watchers fill a ledger.
pub struct Harness {
    pub source: &'static AsyncTasks,
    pub ledger: Arc<Ledger>,
    // Held for the test's duration: dropping one unregisters its watcher.
    _registrations: Vec<Registration<'static>>,
}

fn ok() -> Result<(), String> {
    Ok(())
}

/// A source whose watchers keep a ledger; the refuser refuses every third serial once
/// the ledger is armed.
pub fn harness() -> Harness {
    let table = WatcherTable::from_watchers([]).unwrap().leak();
    let source: &'static AsyncTasks = Box::leak(Box::new(AsyncTasks::new(table)));
    let ledger = Arc::new(Ledger::default());
    let identity = {
        let ledger = ledger.clone();
        table
            .watcher(
                "ledger::identity",
                EventSet::FORK | EventSet::EXIT | EventSet::FREE,
            )
            .priority(100)
            .register(move |event: &Event<'_>| {
                match event.data() {
                    EventData::Fork { parent, .. } => {
                        let serial = ledger.next.fetch_add(1, Ordering::Relaxed);
                        SERIAL.set(event.task(), serial);
                        *ledger.forks.lock().unwrap().entry(serial).or_default() += 1;
                        ledger.parents.lock().unwrap().insert(serial, parent.pid());
                    }
                    EventData::Exit { status } => {
                        let serial = *SERIAL.get(event.task()).ok_or("exit without a serial")?;
                        ledger
                            .exits
                            .lock()
                            .unwrap()
                            .entry(serial)
                            .or_default()
                            .push(*status);
                    }
                    EventData::Free => {
                        let serial = *SERIAL.get(event.task()).ok_or("free without a serial")?;
                        *ledger.frees.lock().unwrap().entry(serial).or_default() += 1;
                        if ledger.busy.load(Ordering::Relaxed) {
                            ledger.frees_while_busy.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ => {}
                }
                ok()
            })
            .unwrap()
    };
    let refuser = {
        let ledger = ledger.clone();
        table
            .watcher(REFUSER, EventSet::FORK)
            .register(move |event: &Event<'_>| {
                debug_assert_eq!(event.kind(), EventKind::Fork);
                let serial = *SERIAL.get(event.task()).ok_or("fork without a serial")?;
                if ledger.armed.load(Ordering::Relaxed) && serial % 3 == 0 {
                    ledger.refused.fetch_add(1, Ordering::Relaxed);
                    return Err(format!("task {serial} refused"));
                }
                ok()
            })
            .unwrap()
    };
    Harness {
        source,
        ledger,
        _registrations: vec![identity, refuser],
    }
}

/// A runtime flavour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// Tasks run on the thread that calls `block_on`.
    CurrentThread,
    /// [`WORKERS`] worker threads.
    MultiThread,
}

/// The worker threads of a [`Flavour::MultiThread`] runtime: a test that must hold every
/// worker (to keep a task unpolled) holds this many.
pub const WORKERS: usize = 2;

/// A runtime of `flavour` built through `source`.
pub fn runtime(flavour: Flavour, source: &'static AsyncTasks) -> tokio::runtime::Runtime {
    let mut builder = match flavour {
        Flavour::CurrentThread => watchers_tokio::Builder::new_current_thread(),
        Flavour::MultiThread => {
            let mut builder = watchers_tokio::Builder::new_multi_thread();
            builder.worker_threads(WORKERS);
            builder
        }
    };
    builder.source(source).build().unwrap()
}

/// Only init and the process are left in the source's table.
pub fn table_is_empty(source: &AsyncTasks) {
    assert_eq!(source.tasks().stats().tasks, 2, "{source:?}");
}
