//! A misspelt argument gets a did-you-mean.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork, priorty = 1)]
fn watch(_: &Event<'_>) {}

fn main() {}
