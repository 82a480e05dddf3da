//! Two `#[task_watcher]` on one function, by name or by path.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork)]
#[task_watcher(events = exit)]
fn twice(_: &Event<'_>) {}

#[task_watcher(events = fork)]
#[watchers_core::task_watcher(events = exit)]
fn by_path(_: &Event<'_>) {}

fn main() {
    let _: fn(&Event<'_>) = twice;
    let _: fn(&Event<'_>) = by_path;
}
