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
/// The function stays as written (it can still be called directly) and a
/// [`Watcher`](https://docs.rs/watchers-core/latest/watchers_core/struct.Watcher.html)
/// record for it is submitted to `inventory`, to be gathered into the frozen table.
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
/// # The function
///
/// A free function (not a method or an associated function), neither `async`, `unsafe`
/// nor `extern`, with no type or const parameters and no `where` clause (lifetime
/// parameters are fine), taking exactly one parameter of type `&Event<'_>` (with any
/// pattern) and returning `()` or `Result<(), E>` where `E` converts into
/// `watchers_core::BoxError`. Any other form is a compile error pointing at the
/// offending part.
#[proc_macro_attribute]
pub fn task_watcher(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::task_watcher(args.into(), item.into()).into()
}
