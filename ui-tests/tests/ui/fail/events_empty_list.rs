//! `events =` with nothing after it.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = , priority = 1)]
fn watch(_: &Event<'_>) {}

fn main() {}
