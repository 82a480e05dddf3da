//! The priority is an `i32`.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork, priority = 2147483648)]
fn too_high(_: &Event<'_>) {}

#[task_watcher(events = fork, priority = -2147483649)]
fn too_low(_: &Event<'_>) {}

#[task_watcher(events = fork, priority = 99999999999999999999999)]
fn way_too_high(_: &Event<'_>) {}

fn main() {}
