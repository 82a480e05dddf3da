//! A module that defines its own `core`, `std`, `Result`, `Ok`, `Box`, `Event` and
//! `inventory` items, and a `#![no_implicit_prelude]` module: the expansion still compiles.
#![deny(warnings)]

mod shadowing {
    #![allow(dead_code, unused_macros, non_camel_case_types, non_snake_case)]
    pub mod core {}
    pub mod std {}
    pub mod inventory {}
    pub mod watchers_core {}
    pub struct Result;
    pub struct Ok;
    pub struct Box;
    pub struct Some;
    pub struct Option;
    pub struct Fn;
    pub struct Err;
    pub struct Into;
    pub struct From;
    pub struct Send;
    pub struct Sync;
    pub struct Sized;
    pub struct String;
    pub trait Drop {}
    pub struct Event;
    macro_rules! concat { () => {} }
    macro_rules! module_path { () => {} }
    macro_rules! file { () => {} }
    macro_rules! line { () => {} }
    macro_rules! stringify { () => {} }
    use ::watchers_core::task_watcher;

    #[task_watcher(events = fork | exit, priority = -3)]
    fn shadowed(_: &::watchers_core::Event<'_>) -> ::core::result::Result<(), &'static str> {
        ::core::result::Result::Ok(())
    }

    #[task_watcher(events = exec)]
    fn unit(_: &::watchers_core::Event<'_>) {}
}

mod no_prelude {
    #![no_implicit_prelude]
    use ::watchers_core::{Event, task_watcher};

    #[task_watcher(events = fork)]
    fn bare(_: &Event<'_>) -> ::core::result::Result<(), ::std::string::String> {
        ::core::result::Result::Ok(())
    }

    #[task_watcher(events = exit, name = "no_prelude::named")]
    pub fn unit(_: &Event<'_>) {}
}

mod event_type_shadowed {
    #![allow(dead_code)]
    pub struct Event;
    pub struct EventSet;
    pub struct Watcher;
    pub struct WatcherResult;
    pub struct Location;
    pub struct IntoWatcherResult;
    #[::watchers_core::task_watcher(events = sid)]
    fn sid(_: &::watchers_core::Event<'_>) {}
}

fn main() {
    use ::watchers_core::Watcher;
    let names: Vec<&str> = ::watchers_core::__private::inventory::iter::<Watcher>
        .into_iter()
        .map(Watcher::name)
        .collect();
    for name in ["shadowing::shadowed", "shadowing::unit", "no_prelude::bare", "event_type_shadowed::sid"] {
        assert!(names.iter().any(|n| n.ends_with(name)), "{name} not in {names:?}");
    }
    assert!(names.contains(&"no_prelude::named"), "{names:?}");
}
