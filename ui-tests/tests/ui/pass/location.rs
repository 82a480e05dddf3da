//! The recorded location is the function's: its module, its file and the line of its
//! name (not of the attribute).
#![deny(warnings)]

use watchers_core::__private::inventory;
use watchers_core::{Event, Watcher, task_watcher};

#[task_watcher(
    events = fork,
    priority = 1,
)]
/// Documented.
#[inline]
fn located(_: &Event<'_>) {}

mod deeper {
    #[watchers_core::task_watcher(events = fork)]
    pub fn located(_: &watchers_core::Event<'_>) {}
}

fn main() {
    let location = |name: String| {
        inventory::iter::<Watcher>
            .into_iter()
            .find(|w| w.name() == name)
            .expect("registered")
            .location()
    };
    let top = location(format!("{}::located", module_path!()));
    assert_eq!(top.module_path, module_path!());
    assert!(top.file.ends_with("location.rs"), "{}", top.file);
    assert_eq!(top.line, 14);

    let deeper = location(format!("{}::deeper::located", module_path!()));
    assert_eq!(deeper.module_path, format!("{}::deeper", module_path!()));
    assert_eq!(deeper.line, 18);
}
