//! Events not separated, separated by `||`, or ending with `|`.

use watchers_core::{Event, task_watcher};

#[task_watcher(events = fork exit)]
fn juxtaposed(_: &Event<'_>) {}

#[task_watcher(events = fork || exit)]
fn double_bar(_: &Event<'_>) {}

#[task_watcher(events = fork |)]
fn trailing_bar(_: &Event<'_>) {}

fn main() {}
