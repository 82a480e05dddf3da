//! On an enum.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork)]
enum Watch {
    A,
}

fn main() {
    let _ = Watch::A;
    let _: Option<&Event<'_>> = None;
}
