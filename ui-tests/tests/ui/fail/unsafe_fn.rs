//! An `unsafe fn`.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork)]
unsafe fn watch(_: &Event<'_>) {}

fn main() {}
