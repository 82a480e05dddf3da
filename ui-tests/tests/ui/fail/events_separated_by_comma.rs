//! Events separated by `,` instead of `|`.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork, exit)]
fn watch(_: &Event<'_>) {}

fn main() {}
