//! Registration across crates: `watchers-subsystems` (one crate) declares watchers with
//! `#[task_watcher]`, this test (a third crate) declares one too, and the table that
//! `watchers-core` freezes holds both.

use watchers_core::{Event, EventKind, EventSet, task_watcher};

// Nothing here calls into the subsystems crate, so name it to keep it linked (the
// documented limitation of link-time registration).
use watchers_subsystems as _;

#[task_watcher(events = exec | exit, priority = -3)]
fn from_the_test_crate(_: &Event<'_>) {}

#[test]
fn the_frozen_table_holds_watchers_from_every_crate() {
    let table = watchers_core::freeze().expect("no duplicate names");
    let watchers = table.watchers();
    let ours = watchers
        .iter()
        .find(|w| w.name == "registration::from_the_test_crate")
        .expect("this crate's watcher");
    assert_eq!(ours.events, EventSet::EXEC | EventSet::EXIT);
    assert_eq!(ours.priority, -3);
    assert!(ours.location.file.ends_with("registration.rs"));

    let subsystems: Vec<_> = watchers
        .iter()
        .filter(|w| w.name.starts_with("watchers_subsystems::"))
        .collect();
    assert!(
        !subsystems.is_empty(),
        "no watcher of watchers-subsystems is registered"
    );
    // Each of them is in the chain of every event it asked for.
    for w in &subsystems {
        for kind in w.events.iter() {
            assert!(
                table.order(kind).any(|o| o.name() == w.name),
                "{} missing from the {kind} chain",
                w.name
            );
        }
    }
    assert!(table.order(EventKind::Exec).any(|o| o.name() == ours.name));
}
