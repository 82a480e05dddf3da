//! Argument forms the attribute documents or that follow from Rust syntax: a trailing
//! comma, a raw event name, a string `crate`, hex priorities; a watcher in an unnamed
//! `const` block; explicit `-> ()`, a crate-local `Result` alias.
#![deny(warnings)]

use watchers_core::__private::inventory;
use watchers_core::{Event, Watcher, task_watcher};

#[task_watcher(events = fork | r#exit, priority = 0x10,)]
fn trailing_comma(_: &Event<'_>) -> () {}

#[task_watcher(events = exec, crate = "watchers_core")]
fn string_crate(_: &Event<'_>) {}

type Result<T> = std::result::Result<T, std::io::Error>;

#[task_watcher(events = exec)]
fn local_alias(_: &Event<'_>) -> Result<()> {
    Ok(())
}

#[task_watcher(events = exec)]
fn boxed(_: &Event<'_>) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
    Ok(())
}

const _: () = {
    #[task_watcher(events = sid)]
    fn in_const_block(_: &Event<'_>) {}
};

fn main() {
    let all: Vec<&Watcher> = inventory::iter::<Watcher>.into_iter().collect();
    for name in ["trailing_comma", "string_crate", "local_alias", "boxed", "in_const_block"] {
        assert!(all.iter().any(|w| w.name().ends_with(&format!("::{name}"))), "{name} missing");
    }
    let w = all.iter().find(|w| w.name().ends_with("::trailing_comma")).map(|w| w.priority());
    assert_eq!(w, Some(16));
}
