//! The same argument twice.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork, priority = 1, priority = 2)]
fn priorities(_: &Event<'_>) {}

#[task_watcher(events = fork, events = exit)]
fn events(_: &Event<'_>) {}

fn main() {}
