//! An `impl Trait` parameter.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork)]
fn watch(_: impl std::fmt::Debug) {}

fn main() {
    let _: Option<&Event<'_>> = None;
}
