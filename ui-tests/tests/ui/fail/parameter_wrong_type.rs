//! A parameter that is not the event.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork)]
fn number(_: u32) {}

#[task_watcher(events = fork)]
fn text(_: &str) {}

#[task_watcher(events = fork)]
fn task(_: &watchers_core::Task) {}

fn main() {
    let _: Option<&Event<'_>> = None;
}
