//! Arguments, but no `events`.

use watchers_core::{Event, task_watcher};

#[task_watcher(priority = 1, name = "watch")]
fn watch(_: &Event<'_>) {}

fn main() {}
