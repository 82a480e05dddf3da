//! A function without parameters.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork)]
fn watch() {}

fn main() {
    let _: Option<&Event<'_>> = None;
}
