//! A priority literal with another type's suffix.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork, priority = 5u8)]
fn watch(_: &Event<'_>) {}

fn main() {}
