//! The priority must be an integer literal.

use watchers_core::{Event, task_watcher};

const LEVEL: i32 = 3;

#[task_watcher(events = fork, priority = "high")]
fn string(_: &Event<'_>) {}

#[task_watcher(events = fork, priority = LEVEL)]
fn constant(_: &Event<'_>) {}

#[task_watcher(events = fork, priority = 1.5)]
fn float(_: &Event<'_>) {}

#[task_watcher(events = fork, priority = 1 + 2)]
fn arithmetic(_: &Event<'_>) {}

fn main() {
    let _ = LEVEL;
}
