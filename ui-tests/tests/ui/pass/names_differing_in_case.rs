//! Two watchers in one module whose names differ only in case: each has its own record,
//! `watcher_record!` names each one, and each record calls its own function.
#![deny(warnings)]

use std::sync::atomic::{AtomicU32, Ordering};

use watchers_core::__private::inventory;
use watchers_core::{Event, EventData, EventSet, Task, Watcher, task_watcher, watcher_record};

static LOWER: AtomicU32 = AtomicU32::new(0);
static UPPER: AtomicU32 = AtomicU32::new(0);

#[task_watcher(events = fork)]
fn audit(_: &Event<'_>) {
    LOWER.fetch_add(1, Ordering::Relaxed);
}

#[allow(non_snake_case)]
#[task_watcher(events = exit, priority = 3)]
fn Audit(_: &Event<'_>) {
    UPPER.fetch_add(1, Ordering::Relaxed);
}

/// The one record registered under `name`, checked to be `expected` field by field.
fn check(name: &str, expected: Watcher) {
    let found: Vec<&Watcher> = inventory::iter::<Watcher>
        .into_iter()
        .filter(|w| w.name() == name)
        .collect();
    assert_eq!(found.len(), 1, "{name} is registered {} times", found.len());
    let found = found[0];
    assert_eq!(
        (found.name(), found.events(), found.priority(), found.location()),
        (expected.name(), expected.events(), expected.priority(), expected.location())
    );
}

/// What calling a record's function counts, as (lower, upper).
fn calls(watcher: Watcher) -> (u32, u32) {
    let task = Task::detached(7);
    let event = Event::new(&task, EventData::Free);
    let before = (LOWER.load(Ordering::Relaxed), UPPER.load(Ordering::Relaxed));
    assert!((watcher.func())(&event).is_ok());
    (LOWER.load(Ordering::Relaxed) - before.0, UPPER.load(Ordering::Relaxed) - before.1)
}

fn main() {
    let lower = watcher_record!(audit);
    let upper = watcher_record!(Audit);
    assert_eq!(lower.name(), format!("{}::audit", module_path!()));
    assert_eq!(upper.name(), format!("{}::Audit", module_path!()));
    assert_eq!((lower.events(), lower.priority()), (EventSet::FORK, 0));
    assert_eq!((upper.events(), upper.priority()), (EventSet::EXIT, 3));
    check(lower.name(), lower);
    check(upper.name(), upper);
    assert_eq!(calls(lower), (1, 0));
    assert_eq!(calls(upper), (0, 1));
}
