//! A watcher function named like the constants and functions of the expansion: each
//! record still calls the user's function, not something the expansion defined.
#![deny(warnings)]

use std::sync::atomic::{AtomicU32, Ordering};

use watchers_core::__private::inventory;
use watchers_core::{Event, EventData, EventSet, Task, Watcher, task_watcher, watcher_record};

static CALLS: AtomicU32 = AtomicU32::new(0);

#[allow(non_snake_case)]
#[task_watcher(events = fork | free, priority = -4)]
fn RECORD(_: &Event<'_>) {
    CALLS.fetch_add(1, Ordering::Relaxed);
}

fn main() {
    let record = watcher_record!(RECORD);
    let name = format!("{}::RECORD", module_path!());
    assert_eq!(record.name(), name);
    assert_eq!(record.events(), EventSet::FORK | EventSet::FREE);
    assert_eq!(record.priority(), -4);

    let registered: Vec<&Watcher> = inventory::iter::<Watcher>
        .into_iter()
        .filter(|w| w.name() == name)
        .collect();
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0].location(), record.location());

    let task = Task::detached(7);
    let event = Event::new(&task, EventData::Free);
    assert!((registered[0].func())(&event).is_ok());
    assert!((record.func())(&event).is_ok());
    RECORD(&event);
    assert_eq!(CALLS.load(Ordering::Relaxed), 3);
}
