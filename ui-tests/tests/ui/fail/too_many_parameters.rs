//! Two and three parameters.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork)]
fn two(_: &Event<'_>, _: u32) {}

#[task_watcher(events = fork)]
fn three(_: &Event<'_>, _: &Event<'_>, _: bool) {}

fn main() {}
