//! `#[task_watcher]`.
use proc_macro::TokenStream;

/// Registers a task watcher.
#[proc_macro_attribute]
pub fn task_watcher(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}
