//! `pub`, `pub(crate)`, `pub(super)` and private watchers.
#![deny(warnings)]

use watchers_core::__private::inventory;
use watchers_core::{Event, Watcher, task_watcher};

#[task_watcher(events = fork)]
pub(crate) fn crate_visible(_: &Event<'_>) {}

#[task_watcher(events = fork)]
pub fn public(_: &Event<'_>) {}

mod child {
    #[watchers_core::task_watcher(events = fork)]
    pub(super) fn parent_visible(_: &watchers_core::Event<'_>) {}
}

#[task_watcher(events = fork)]
fn private(_: &Event<'_>) {}

fn main() {
    let names: Vec<&str> = inventory::iter::<Watcher>.into_iter().map(Watcher::name).collect();
    for name in ["crate_visible", "public", "child::parent_visible", "private"] {
        let full = format!("{}::{name}", module_path!());
        assert!(names.contains(&full.as_str()), "{full} not in {names:?}");
    }
    // The functions are still there, with their visibility.
    let _: fn(&Event<'_>) = child::parent_visible;
}
