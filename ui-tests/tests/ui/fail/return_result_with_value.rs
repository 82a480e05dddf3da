//! `Result<T, E>` with `T` other than `()`.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork)]
fn watch(_: &Event<'_>) -> Result<u32, String> {
    Ok(0)
}

fn main() {}
