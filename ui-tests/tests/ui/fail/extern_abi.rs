//! A function with an `extern` ABI.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork)]
extern "C" fn watch(_: &Event<'_>) {}

#[task_watcher(events = fork)]
extern fn implicit_c(_: &Event<'_>) {}

fn main() {}
