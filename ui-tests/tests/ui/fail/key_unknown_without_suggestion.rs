//! An argument that does not exist, and a path as a key.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork, order = 1)]
fn watch(_: &Event<'_>) {}

#[task_watcher(events = fork, a::name = "x")]
fn path_key(_: &Event<'_>) {}

fn main() {}
