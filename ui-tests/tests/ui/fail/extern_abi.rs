//! A function with an `extern` ABI.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork)]
extern "C" fn watch(_: &Event<'_>) {}

#[task_watcher(events = fork)]
extern "system" fn system(_: &Event<'_>) {}

fn main() {}
