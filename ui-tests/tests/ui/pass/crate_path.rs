//! `crate = path` for a crate that reaches the runtime through a re-export or an alias.
#![deny(warnings)]

mod rt {
    pub use watchers_core::*;
}

use watchers_core as wc;

#[rt::task_watcher(events = fork, crate = crate::rt)]
fn through_module(_: &rt::Event<'_>) {}

#[wc::task_watcher(events = exit, crate = wc)]
fn through_alias(_: &wc::Event<'_>) {}

#[wc::task_watcher(events = exec, crate = "crate::rt")]
fn through_string(_: &wc::Event<'_>) {}

#[wc::task_watcher(events = free, crate = ::watchers_core)]
fn absolute(_: &wc::Event<'_>) {}

fn main() {
    let registered = |name: &str, events: wc::EventSet| {
        wc::__private::inventory::iter::<wc::Watcher>
            .into_iter()
            .any(|w| w.name() == format!("{}::{name}", module_path!()) && w.events() == events)
    };
    assert!(registered("through_module", wc::EventSet::FORK));
    assert!(registered("through_alias", wc::EventSet::EXIT));
    assert!(registered("through_string", wc::EventSet::EXEC));
    assert!(registered("absolute", wc::EventSet::FREE));
}
