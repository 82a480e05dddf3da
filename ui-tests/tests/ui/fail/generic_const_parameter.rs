//! A function with a const parameter.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork)]
fn watch<const N: usize>(_: &Event<'_>) {}

fn main() {}
