//! An empty name (or only blanks).

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork, name = "")]
fn empty(_: &Event<'_>) {}

#[task_watcher(events = fork, name = "   ")]
fn blank(_: &Event<'_>) {}

fn main() {}
