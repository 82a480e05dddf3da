//! An event that does not exist, and resembles none.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = clone)]
fn watch(_: &Event<'_>) {}

fn main() {}
