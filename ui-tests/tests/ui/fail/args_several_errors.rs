//! Several mistakes in the arguments are all reported at once.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = exot | fork | fork, priorty = 1, name = "")]
fn watch(_: &Event<'_>) {}

fn main() {}
