//! Negative, positive, extreme and default priorities.
#![deny(warnings)]

use watchers_core::__private::inventory;
use watchers_core::{Event, Watcher, task_watcher};

#[task_watcher(events = fork, priority = -5)]
fn negative(_: &Event<'_>) {}

#[task_watcher(priority = 100, events = fork)]
fn positive(_: &Event<'_>) {}

#[task_watcher(events = fork, priority = -2147483648)]
fn lowest(_: &Event<'_>) {}

#[task_watcher(events = fork, priority = 2_147_483_647i32)]
fn highest(_: &Event<'_>) {}

#[task_watcher(events = fork)]
fn default(_: &Event<'_>) {}

fn priority(name: &str) -> i32 {
    inventory::iter::<Watcher>
        .into_iter()
        .find(|w| w.name().ends_with(&format!("::{name}")))
        .map(Watcher::priority)
        .unwrap_or_else(|| panic!("{name} is not registered"))
}

fn main() {
    assert_eq!(priority("negative"), -5);
    assert_eq!(priority("positive"), 100);
    assert_eq!(priority("lowest"), i32::MIN);
    assert_eq!(priority("highest"), i32::MAX);
    assert_eq!(priority("default"), 0);
}
