//! Duplicate watcher names in the program's own registrations (this test binary): every
//! duplicate is reported at once, and an implicit freeze panics at the caller's line
//! with a message that names `freeze()`. A binary of its own, since these duplicates
//! would break any other test that uses the program-wide table.

use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use watchers_core::{Event, EventSet, FreezeError, TaskTable, WatcherTable, task_watcher};

#[task_watcher(events = fork, name = "twice")]
fn twice_a(_: &Event<'_>) {}

#[task_watcher(events = exit, name = "twice")]
fn twice_b(_: &Event<'_>) {}

#[task_watcher(events = fork, name = "thrice")]
fn thrice_a(_: &Event<'_>) {}

#[task_watcher(events = exit, name = "thrice")]
fn thrice_b(_: &Event<'_>) {}

#[task_watcher(events = free, name = "thrice")]
fn thrice_c(_: &Event<'_>) {}

#[task_watcher(events = fork)]
fn unique(_: &Event<'_>) {}

#[test]
fn freeze_reports_every_duplicate_with_every_location() {
    let Err(FreezeError::DuplicateNames(found)) = watchers_core::freeze() else {
        panic!("expected duplicate names");
    };
    let names: Vec<(&str, usize)> = found.iter().map(|d| (d.name, d.locations.len())).collect();
    assert_eq!(names, [("thrice", 3), ("twice", 2)]);
    for location in found.iter().flat_map(|d| &d.locations) {
        assert!(location.file.ends_with("duplicate_names.rs"), "{location}");
    }
    let message = FreezeError::DuplicateNames(found.clone()).to_string();
    for location in found.iter().flat_map(|d| &d.locations) {
        assert!(message.contains(&location.to_string()), "{message}");
    }
}

/// Runs `f`, which must panic, and returns the panic's message and `file:line`.
fn panic_of(f: impl FnOnce()) -> (String, String) {
    let seen: Arc<Mutex<Option<(String, String)>>> = Arc::default();
    let writer = Arc::clone(&seen);
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        *writer.lock().unwrap() = Some((message, at));
    }));
    let outcome = panic::catch_unwind(AssertUnwindSafe(f));
    panic::set_hook(previous);
    assert!(outcome.is_err(), "it did not panic");
    seen.lock().unwrap().take().expect("the hook saw the panic")
}

#[test]
fn implicit_freezes_panic_at_the_callers_line_and_name_freeze() {
    let here = file!();
    let (message, at) = panic_of(|| drop(TaskTable::new()));
    assert_eq!(at, format!("{here}:{}", line!() - 1));
    let (_, at_default) = panic_of(|| drop(TaskTable::default()));
    assert_eq!(at_default, format!("{here}:{}", line!() - 1));
    let (_, at_global) = panic_of(|| assert!(!WatcherTable::global().is_empty()));
    assert_eq!(at_global, format!("{here}:{}", line!() - 1));
    let (_, at_watcher) = panic_of(|| drop(watchers_core::watcher("w", EventSet::FORK)));
    assert_eq!(at_watcher, format!("{here}:{}", line!() - 1));
    assert!(message.contains("freeze()"), "{message}");
    assert!(
        message.contains("`twice`") && message.contains("`thrice`"),
        "{message}"
    );
}
