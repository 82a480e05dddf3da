//! Which task the calling thread is running: set around each poll of a future spawned
//! through a source, and around a blocking closure.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::Arc;

use watchers_core::Task;

use crate::source::AsyncTasks;

/// A task and the source whose table holds it.
pub(crate) struct Current {
    pub(crate) source: &'static AsyncTasks,
    pub(crate) task: Arc<Task>,
}

thread_local! {
    // A raw pointer rather than an owned value: it needs no destructor, so it can be
    // read and written even while the thread's other thread-locals are being destroyed,
    // and the task's `Arc` stays with its future instead of moving in and out per poll.
    static CURRENT: Cell<*const Current> = const { Cell::new(std::ptr::null()) };
}

/// Makes `current` the calling thread's task until the guard is dropped, which puts the
/// previous one back (polls nest when a future is polled inside another's poll, as by
/// `block_in_place`).
pub(crate) fn enter(current: &Current) -> Entered<'_> {
    let previous = CURRENT.replace(current);
    Entered {
        previous,
        _current: PhantomData,
    }
}

/// See [`enter`].
pub(crate) struct Entered<'a> {
    previous: *const Current,
    /// Holds the borrow of the `Current` that the thread-local points to.
    _current: PhantomData<&'a Current>,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        CURRENT.set(self.previous);
    }
}

/// The calling thread's task, if it is running one of `source`'s tasks.
pub(crate) fn of(source: &AsyncTasks) -> Option<Arc<Task>> {
    let current = CURRENT.get();
    // SAFETY: a non-null pointer was stored by `enter` from a reference that outlives
    // the `Entered` guard it returned; guards live on the stack of the poll (or blocking
    // closure) that made them and are dropped in reverse order, each putting back the
    // pointer that was there before, so a non-null pointer always refers to a live
    // `Current` of a guard still alive on this thread.
    let current = unsafe { current.as_ref() }?;
    std::ptr::eq(current.source, source).then(|| current.task.clone())
}
