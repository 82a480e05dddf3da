//! A misspelt event gets a did-you-mean.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork | exot)]
fn watch(_: &Event<'_>) {}

#[task_watcher(events = Fork)]
fn capitalised(_: &Event<'_>) {}

fn main() {}
