//! The parameter's pattern is free, and `Event` can be written with or without its
//! lifetime, by path, and with lifetime parameters of the function.
#![deny(warnings)]

use watchers_core::__private::inventory;
use watchers_core::{Event, Watcher, task_watcher};

#[task_watcher(events = fork)]
fn underscore(_: &Event<'_>) {}

#[task_watcher(events = fork)]
fn underscore_named(_e: &Event) {}

#[task_watcher(events = fork)]
fn by_path(event: &::watchers_core::Event<'_>) {
    let _ = event.kind();
}

#[task_watcher(events = fork)]
fn mutable_binding(mut event: &'_ Event<'_>) {
    let other = event;
    event = other;
    let _ = event;
}

#[task_watcher(events = fork)]
fn destructured(&event: &Event<'_>) {
    let _ = event.kind();
}

#[task_watcher(events = fork)]
fn one_lifetime<'a>(event: &'a Event<'a>) {
    let _ = event.task();
}

#[task_watcher(events = fork)]
fn two_lifetimes<'a, 'b: 'a>(event: &'a Event<'b>) {
    let _ = event.task();
}

fn main() {
    let count = inventory::iter::<Watcher>
        .into_iter()
        .filter(|w| w.name().starts_with(module_path!()))
        .count();
    assert_eq!(count, 7);
}
