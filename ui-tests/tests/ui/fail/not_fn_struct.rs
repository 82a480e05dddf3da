//! On a struct.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork)]
struct Watch;

fn main() {
    let _ = Watch;
    let _: Option<&Event<'_>> = None;
}
