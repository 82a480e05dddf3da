//! On a constant (even one holding a function).

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork)]
const WATCH: fn(&Event<'_>) = |_| {};

fn main() {
    let _ = WATCH;
}
