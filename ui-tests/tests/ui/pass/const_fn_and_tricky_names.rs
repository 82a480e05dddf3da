//! A `const fn` watcher, and watchers whose names could clash with the expansion's: a raw
//! identifier, and the names the generated code uses for its own bindings.
#![deny(warnings)]

use watchers_core::__private::inventory;
use watchers_core::{Event, Watcher, task_watcher};

#[task_watcher(events = comm)]
const fn constant(_: &Event<'_>) {}

#[task_watcher(events = ptrace)]
fn r#match(_: &Event<'_>) {}

#[task_watcher(events = ptrace)]
fn event(event: &Event<'_>) {
    let _ = event;
}

#[task_watcher(events = ptrace)]
fn returned(_: &Event<'_>) {}

#[task_watcher(events = ptrace)]
fn __task_watcher_shim_returned(_: &Event<'_>) {}

fn main() {
    let names: Vec<&str> = inventory::iter::<Watcher>.into_iter().map(Watcher::name).collect();
    for name in ["constant", "match", "event", "returned", "__task_watcher_shim_returned"] {
        let full = format!("{}::{name}", module_path!());
        assert!(names.contains(&full.as_str()), "{full} not in {names:?}");
    }
}
