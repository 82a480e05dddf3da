//! The `#[task_watcher]` attribute of [`watchers-core`](https://docs.rs/watchers-core).
//!
//! Use it through its re-export, `watchers_core::task_watcher`: the code it generates
//! refers to `watchers_core`'s runtime, not to this crate.
#![deny(missing_docs)]

use proc_macro::TokenStream;

mod attr;
mod expand;
mod suggest;
mod valid;

/// Declares a task watcher: a function that the dispatch table calls on the task
/// lifecycle events it asks for.
///
/// ```ignore
/// use watchers_core::{task_watcher, Event};
///
/// #[task_watcher(events = fork | exit, priority = 10)]
/// fn audit(event: &Event<'_>) -> Result<(), std::io::Error> {
///     println!("{:?} of {}", event.kind(), event.task().pid().get());
///     Ok(())
/// }
/// ```
///
/// This submits a
/// [`Watcher`](https://docs.rs/watchers-core/latest/watchers_core/struct.Watcher.html)
/// record for the function to `inventory`, to be gathered into the frozen table: its
/// name, events, priority, a pointer to it and where it was declared (module, file and
/// the line of its name).
///
/// # Arguments
///
/// * `events = a | b | ...` (required): the events to watch, among `fork`, `exec`,
///   `uid`, `gid`, `sid`, `comm`, `ptrace`, `coredump`, `exit` and `free`.
/// * `priority = N` (optional, default `0`): an `i32` literal, possibly negative. Higher
///   priorities run first on `fork` and the other set-up events, last on `exit` and
///   `free`.
/// * `name = "..."` (optional): the watcher's name, unique in the table. The default is
///   the function's path, `module_path!()::fn_name`.
/// * `crate = path` (optional, also `crate = "path"`): where the `watchers_core` runtime
///   is, if it is not `::watchers_core` (for a crate that re-exports it).
///
/// A value may come from a `macro_rules!` fragment (`name = $name` with `$name:literal`
/// or `$name:expr`, `priority = -$p`, `crate = $krate` with `$krate:path`), as long as
/// the fragment is the literal or path itself.
///
/// # The function
///
/// A free function of any visibility, in any module or function body, that:
///
/// * takes exactly one parameter, the event: `&Event<'_>`, `&Event` or
///   `&path::to::Event<'_>`, with any pattern (`event`, `_`, `_e`...);
/// * returns `()` or `Result<(), E>` where `E` converts into `watchers_core::BoxError`
///   (any `std::error::Error + Send + Sync + 'static`, `String`, `&'static str`);
/// * is not `async`, `unsafe` or `extern`, and has no type or const parameters and no
///   `where` clause. Lifetime parameters are fine (`fn w<'a>(e: &'a Event<'a>)`), and so
///   is `const fn`.
///
/// Anything else is a compile error pointing at the offending part. A method (with a
/// `self` receiver) or a signature naming `Self` is recognised as such; any other
/// associated function cannot be told from a free function by the macro (it sees the
/// function alone), and is reported by the compiler as "cannot find function `name` in
/// this scope", on its name.
///
/// The function itself is emitted unchanged (attributes included; a `#[cfg]` on it also
/// applies to the registration), and can still be called directly.
#[proc_macro_attribute]
pub fn task_watcher(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::task_watcher(args.into(), item.into()).into()
}

/// The [`Watcher`](https://docs.rs/watchers-core/latest/watchers_core/struct.Watcher.html)
/// record that `#[task_watcher]` made for a function, as a constant: for a table built
/// from an explicit list (unit tests, Miri), which then holds exactly what `inventory`
/// gathers for the program-wide table.
///
/// ```ignore
/// use watchers_core::{task_watcher, watcher_record, Event, WatcherTable};
///
/// #[task_watcher(events = exit)]
/// fn on_exit(_: &Event<'_>) {}
///
/// let table = WatcherTable::from_watchers([watcher_record!(on_exit)])?;
/// ```
///
/// The argument is the function's path as seen from the call (`on_exit`,
/// `crate::audit::watch`); the record has the function's visibility.
#[proc_macro]
pub fn watcher_record(input: TokenStream) -> TokenStream {
    expand::watcher_record(input.into()).into()
}
