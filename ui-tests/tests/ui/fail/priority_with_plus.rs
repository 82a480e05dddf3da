use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork, priority = +5)]
fn plus(_: &Event<'_>) {}

fn main() {}
