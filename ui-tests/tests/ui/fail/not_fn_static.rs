//! On a static.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork)]
static WATCH: fn(&Event<'_>) = |_| {};

fn main() {
    let _ = WATCH;
}
