//! On an impl block.

use watchers_core::{Event, task_watcher};

struct Subsystem;

#[task_watcher(events = fork)]
impl Subsystem {
    fn watch(_: &Event<'_>) {}
}

fn main() {
    let _: fn(&Event<'_>) = Subsystem::watch;
}
