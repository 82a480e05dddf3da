//! The event taken by `&mut`.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork)]
fn watch(_: &mut Event<'_>) {}

fn main() {}
