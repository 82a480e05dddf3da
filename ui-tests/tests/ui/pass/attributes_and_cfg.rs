//! The function's own attributes stay on it; a `#[cfg]` on it also applies to its
//! registration; strict lints see nothing to complain about in the expansion.
#![deny(warnings, unreachable_pub, unused_qualifications, rust_2018_idioms, non_upper_case_globals)]
#![forbid(unsafe_code, missing_docs, non_snake_case, dead_code)]

use watchers_core::__private::inventory;
use watchers_core::{Event, Watcher, task_watcher};

/// Documented, inlined, allowed to be unused.
#[task_watcher(events = free)]
#[inline(never)]
#[must_use = "never mind"]
#[allow(clippy::unnecessary_wraps)]
fn kept(_: &Event<'_>) -> Result<(), String> {
    Ok(())
}

#[task_watcher(events = free)]
#[cfg(any())]
fn compiled_out(_: &Event<'_>) {}

#[cfg(all())]
#[task_watcher(events = free)]
fn compiled_in(_: &Event<'_>) {}

fn main() {
    let names: Vec<&str> = inventory::iter::<Watcher>.into_iter().map(Watcher::name).collect();
    assert!(names.iter().any(|n| n.ends_with("::kept")), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with("::compiled_in")), "{names:?}");
    assert!(!names.iter().any(|n| n.ends_with("::compiled_out")), "{names:?}");
}
