//! A function with a type parameter.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork)]
fn watch<T: Default>(_: &Event<'_>) {
    let _ = T::default();
}

fn main() {}
