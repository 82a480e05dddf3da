//! Watchers in nested modules, private and public, with the same function name.
#![deny(warnings)]

use std::sync::atomic::{AtomicUsize, Ordering};

use watchers_core::__private::inventory;
use watchers_core::{EventData, EventSet, ExitStatus, Task, Watcher};

static CALLS: AtomicUsize = AtomicUsize::new(0);

mod outer {
    pub mod inner {
        use watchers_core::{Event, task_watcher};

        #[task_watcher(events = exit)]
        fn watch(_event: &Event<'_>) {
            crate::CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    mod sibling {
        #[watchers_core::task_watcher(events = exec, priority = 3)]
        fn watch(_: &watchers_core::Event<'_>) {}
    }
}

fn find(name: &str) -> &'static Watcher {
    inventory::iter::<Watcher>
        .into_iter()
        .find(|watcher| watcher.name() == name)
        .unwrap_or_else(|| panic!("`{name}` is not registered"))
}

fn main() {
    let inner = find(&format!("{}::outer::inner::watch", module_path!()));
    assert_eq!(inner.events(), EventSet::EXIT);
    assert_eq!(inner.priority(), 0);
    assert_eq!(inner.location().module_path, format!("{}::outer::inner", module_path!()));

    let sibling = find(&format!("{}::outer::sibling::watch", module_path!()));
    assert_eq!(sibling.events(), EventSet::EXEC);
    assert_eq!(sibling.priority(), 3);

    let task = Task::detached(7);
    let event = watchers_core::Event::new(&task, EventData::Exit { status: ExitStatus::exited(0) });
    (inner.func())(&event).unwrap();
    assert_eq!(CALLS.load(Ordering::SeqCst), 1);
}
