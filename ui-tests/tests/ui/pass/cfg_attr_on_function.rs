//! A `cfg_attr` that compiles the function out also compiles its registration out.
#![deny(warnings)]

use watchers_core::__private::inventory;
use watchers_core::{Event, Watcher, task_watcher};

#[task_watcher(events = free)]
#[cfg_attr(all(), cfg(any()))]
fn out(_: &Event<'_>) {}

#[task_watcher(events = free)]
#[cfg_attr(any(), cfg(any()))]
fn kept(_: &Event<'_>) {}

fn main() {
    let names: Vec<&str> = inventory::iter::<Watcher>.into_iter().map(Watcher::name).collect();
    assert!(names.iter().any(|n| n.ends_with("::kept")), "{names:?}");
    assert!(!names.iter().any(|n| n.ends_with("::out")), "{names:?}");
}
