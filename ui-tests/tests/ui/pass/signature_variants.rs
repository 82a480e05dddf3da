//! Signatures the attribute documents as accepted: lifetimes, `&Event` without `'_`,
//! a path to `Event`, doc comments and `#[deprecated]` on the function, non-ASCII names.
#![deny(warnings)]

use watchers_core::__private::inventory;
use watchers_core::{Event, Watcher, task_watcher};

#[task_watcher(events = fork)]
fn with_lifetime<'a>(_: &'a Event<'a>) {}

#[task_watcher(events = fork)]
fn two_lifetimes<'a, 'b: 'a>(_: &'a Event<'b>) {}

#[task_watcher(events = fork)]
fn elided(_: &Event) {}

#[task_watcher(events = fork)]
fn by_path(_: &watchers_core::Event<'_>) {}

/// Documented.
#[task_watcher(events = fork)]
#[deprecated = "old"]
fn old(_: &Event<'_>) {}

#[task_watcher(events = fork)]
fn café(_: &Event<'_>) {}

#[task_watcher(events = fork)]
fn r#fn(_: &Event<'_>) {}

#[task_watcher(events = fork)]
#[allow(non_snake_case)]
fn __TASK_WATCHER_X(_: &Event<'_>) {}

#[task_watcher(events = fork)]
#[allow(non_snake_case)]
fn X(_: &Event<'_>) {}

#[task_watcher(events = exit, priority = 2147483647)]
fn max(_: &Event<'_>) {}

#[task_watcher(events = exit, priority = -2147483648)]
fn min(_: &Event<'_>) {}

fn main() {
    let all: Vec<&Watcher> = inventory::iter::<Watcher>.into_iter().collect();
    for name in ["with_lifetime", "two_lifetimes", "elided", "by_path", "old", "café", "fn", "__TASK_WATCHER_X", "X", "max", "min"] {
        let full = format!("{}::{name}", module_path!());
        assert!(all.iter().any(|w| w.name() == full), "{full} missing");
    }
    let max = all.iter().find(|w| w.name().ends_with("::max")).map(|w| w.priority());
    assert_eq!(max, Some(i32::MAX));
    let min = all.iter().find(|w| w.name().ends_with("::min")).map(|w| w.priority());
    assert_eq!(min, Some(i32::MIN));
}
