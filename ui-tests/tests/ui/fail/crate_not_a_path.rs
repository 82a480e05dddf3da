//! `crate =` must be a path, bare or in a string.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork, crate = 5)]
fn number(_: &Event<'_>) {}

#[task_watcher(events = fork, crate = "not a path")]
fn bad_string(_: &Event<'_>) {}

#[task_watcher(events = fork, crate = )]
fn missing(_: &Event<'_>) {}

fn main() {}
