//! A C-variadic function.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork)]
fn watch(_: &Event<'_>, _: ...) {}

fn main() {}
