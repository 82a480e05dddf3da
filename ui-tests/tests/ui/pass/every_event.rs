//! A watcher of every event, and one of a single event.
#![deny(warnings)]

use watchers_core::__private::inventory;
use watchers_core::{Event, EventKind, EventSet, Watcher, task_watcher};

#[task_watcher(events = fork | exec | uid | gid | sid | comm | ptrace | coredump | exit | free)]
fn everything(_: &Event<'_>) {}

#[task_watcher(events = coredump)]
fn coredumps(_: &Event<'_>) {}

fn main() {
    let everything = inventory::iter::<Watcher>
        .into_iter()
        .find(|w| w.name().ends_with("::everything"))
        .expect("registered");
    assert_eq!(everything.events(), EventSet::ALL);
    for kind in EventKind::ALL {
        assert!(everything.events().contains(kind), "{kind}");
    }

    let coredumps = inventory::iter::<Watcher>
        .into_iter()
        .find(|w| w.name().ends_with("::coredumps"))
        .expect("registered");
    assert_eq!(coredumps.events(), EventSet::COREDUMP);
    assert_eq!(coredumps.events().len(), 1);
}
