//! An `async fn`.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork)]
async fn watch(_: &Event<'_>) {}

fn main() {}
