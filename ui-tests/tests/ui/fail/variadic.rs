//! A C-variadic function.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork)]
unsafe extern "C" fn watch(_: &Event<'_>, ...) {}

fn main() {}
