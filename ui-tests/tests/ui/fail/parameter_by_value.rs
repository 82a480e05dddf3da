//! The event taken by value.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork)]
fn watch(_: Event<'_>) {}

fn main() {}
