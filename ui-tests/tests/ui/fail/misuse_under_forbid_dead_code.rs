//! A misuse in a crate that forbids `dead_code`: only the misuse is reported, not the
//! macro's own attempt to quiet the unused fallback function.
#![forbid(dead_code)]

use watchers_core::{Event, task_watcher};

#[task_watcher(events = frok)]
fn typo(_: &Event<'_>) {}

#[task_watcher(events = fork)]
struct NotAFunction;

fn main() {}
