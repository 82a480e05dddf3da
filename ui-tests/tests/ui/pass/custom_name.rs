//! `name = "..."` replaces the default `module_path::fn_name`; the function can still be
//! called directly.
#![deny(warnings)]

use watchers_core::__private::inventory;
use watchers_core::{Event, EventData, EventSet, Task, Watcher, task_watcher};

#[task_watcher(name = "audit", events = uid | gid, priority = 7)]
fn audit_ids(_: &Event<'_>) -> Result<(), String> {
    Ok(())
}

fn main() {
    let audit = inventory::iter::<Watcher>
        .into_iter()
        .find(|w| w.name() == "audit")
        .expect("registered under its name");
    assert_eq!(audit.events(), EventSet::UID.union(EventSet::GID));
    assert_eq!(audit.priority(), 7);
    assert!(!inventory::iter::<Watcher>.into_iter().any(|w| w.name().ends_with("audit_ids")));

    let task = Task::detached(3);
    let event = Event::new(&task, EventData::Sid { sid: task.pid() });
    assert_eq!(audit_ids(&event), Ok(()));
}
