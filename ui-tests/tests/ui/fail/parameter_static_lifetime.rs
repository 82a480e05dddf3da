//! `'static` in the parameter would not accept every event.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork)]
fn event(_: &Event<'static>) {}

#[task_watcher(events = fork)]
fn reference(_: &'static Event<'_>) {}

fn main() {}
