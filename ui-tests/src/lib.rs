//! Compile-pass and compile-fail cases of `#[task_watcher]`, run by `tests/ui.rs`.
