//! A return type that is neither `()` nor `Result<(), E>`.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork)]
fn watch(_: &Event<'_>) -> u32 {
    0
}

fn main() {}
