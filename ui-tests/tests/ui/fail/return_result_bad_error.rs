//! `Result<(), E>` with an `E` that does not convert into `BoxError`.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork)]
fn watch(_: &Event<'_>) -> Result<(), i32> {
    Ok(())
}

fn main() {}
