//! An argument without `= value`.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork, priority)]
fn watch(_: &Event<'_>) {}

#[task_watcher(events(fork))]
fn call_form(_: &Event<'_>) {}

fn main() {}
