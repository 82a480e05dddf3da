//! The worker and blocking threads of runtimes built through a source: adopted when
//! tokio starts them, retired when tokio stops them.

use std::cell::RefCell;
use std::sync::Arc;

use watchers_core::{ExitStatus, Task};

use crate::source::AsyncTasks;

/// The name of a runtime thread that has none (tokio names its threads by default, as
/// `tokio-rt-worker`).
const UNNAMED: &str = "tokio-rt";

thread_local! {
    /// The calling thread's task in each source whose runtime started it (almost always
    /// one).
    static RUNTIME_THREADS: RefCell<Vec<(&'static AsyncTasks, Arc<Task>)>> =
        const { RefCell::new(Vec::new()) };
}

/// Tokio's `on_thread_start`: the thread becomes a task of `source`. Its `fork`
/// watchers cannot refuse it (tokio gives no way to); a refusal is counted in
/// [`AsyncTasks::unheeded_refusals`].
pub(crate) fn started(source: &'static AsyncTasks) {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or(UNNAMED);
    let parent = source.process().clone();
    if let Some(task) = source.adopt(&parent, name) {
        // Fails only while the thread-locals are being destroyed, never at a thread's
        // start; the task is then retired at once rather than left running.
        if RUNTIME_THREADS
            .try_with(|threads| threads.borrow_mut().push((source, task.clone())))
            .is_err()
        {
            source.retire(&task, ExitStatus::exited(0));
        }
    }
}

/// Tokio's `on_thread_stop`: the thread's task exits (code 0) and is freed.
pub(crate) fn stopping(source: &'static AsyncTasks) {
    let task = RUNTIME_THREADS
        .try_with(|threads| {
            let mut threads = threads.borrow_mut();
            let index = threads
                .iter()
                .rposition(|(owner, _)| std::ptr::eq(*owner, source))?;
            Some(threads.swap_remove(index).1)
        })
        .ok()
        .flatten();
    if let Some(task) = task {
        source.retire(&task, ExitStatus::exited(0));
    }
}

/// The calling thread's task in `source`, if a runtime of `source` started it.
pub(crate) fn of(source: &AsyncTasks) -> Option<Arc<Task>> {
    RUNTIME_THREADS
        .try_with(|threads| {
            threads
                .borrow()
                .iter()
                .rev()
                .find(|(owner, _)| std::ptr::eq(*owner, source))
                .map(|(_, task)| task.clone())
        })
        .ok()
        .flatten()
}
