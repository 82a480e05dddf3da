//! A `const fn` watcher, and one whose name is a raw identifier.
#![deny(warnings)]

use watchers_core::__private::inventory;
use watchers_core::{Event, Watcher, task_watcher};

#[task_watcher(events = comm)]
const fn constant(_: &Event<'_>) {}

#[task_watcher(events = ptrace)]
fn r#match(_: &Event<'_>) {}

fn main() {
    let names: Vec<&str> = inventory::iter::<Watcher>.into_iter().map(Watcher::name).collect();
    assert!(names.contains(&format!("{}::constant", module_path!()).as_str()), "{names:?}");
    assert!(names.contains(&format!("{}::match", module_path!()).as_str()), "{names:?}");
}
