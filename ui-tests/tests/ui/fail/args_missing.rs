//! No arguments at all: the events are required.

use watchers_core::{Event, task_watcher};

#[task_watcher]
fn watch(_: &Event<'_>) {}

fn main() {
    // The function is still emitted (without registration): no second error here.
    let _: fn(&Event<'_>) = watch;
}
