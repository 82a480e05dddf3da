//! The name must be a string literal.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork, name = audit)]
fn ident(_: &Event<'_>) {}

#[task_watcher(events = fork, name = 5)]
fn number(_: &Event<'_>) {}

#[task_watcher(events = fork, name = b"audit")]
fn bytes(_: &Event<'_>) {}

fn main() {}
