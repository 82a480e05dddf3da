//! The same event twice.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = exit | fork | exit)]
fn watch(_: &Event<'_>) {}

fn main() {}
