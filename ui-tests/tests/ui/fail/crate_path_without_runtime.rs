//! `crate =` pointing at a module that is not the runtime.

use watchers_core::{Event, task_watcher};

mod elsewhere {}

#[task_watcher(events = fork, crate = crate::elsewhere)]
fn watch(_: &Event<'_>) {}

fn main() {}
