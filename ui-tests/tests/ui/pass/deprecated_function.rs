//! A deprecated watcher function: the registration's call of it is the macro's, not the
//! user's, and is no use of a deprecated item to warn about.
#![deny(warnings)]

use watchers_core::__private::inventory;
use watchers_core::{Event, Watcher, task_watcher};

/// Kept for old configurations.
#[task_watcher(events = fork)]
#[deprecated = "use the new watcher"]
fn old(_: &Event<'_>) {}

fn main() {
    let names: Vec<&str> = inventory::iter::<Watcher>.into_iter().map(Watcher::name).collect();
    assert!(names.iter().any(|n| n.ends_with("::old")), "{names:?}");
}
