//! A watcher declared inside a function body.
#![deny(warnings)]

use watchers_core::__private::inventory;
use watchers_core::Watcher;

fn main() {
    #[watchers_core::task_watcher(events = sid)]
    fn local(_: &watchers_core::Event<'_>) {}

    assert!(
        inventory::iter::<Watcher>
            .into_iter()
            .any(|w| w.name() == format!("{}::local", module_path!()))
    );
}
