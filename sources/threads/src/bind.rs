//! Which task the calling thread is, per source, and the thread-local destructor that
//! sends `exit` and `free` when the thread ends.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use watchers_core::{ExitStatus, Task, TaskState};

use crate::error::CurrentError;
use crate::spawn::THREAD_FLAGS;
use crate::threads::Threads;
use crate::{OS_TID, os};

/// The calling thread's task in one source.
struct Binding {
    source: &'static Threads,
    task: Arc<Task>,
}

/// Every source the thread has met: almost always one, kept inline so that a thread's
/// start allocates nothing here. What a short-lived thread allocates costs twice on the
/// path its `join` waits for: the allocation, and its free when glibc takes back the
/// thread's cache.
struct Bindings(RefCell<List>);

#[derive(Default)]
struct List {
    first: Option<Binding>,
    more: Vec<Binding>,
}

impl List {
    const fn new() -> List {
        List {
            first: None,
            more: Vec::new(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Binding> {
        self.first.iter().chain(&self.more)
    }
}

thread_local! {
    static BINDINGS: Bindings = const { Bindings(RefCell::new(List::new())) };
}

impl Bindings {
    fn find(&self, source: &'static Threads) -> Option<Arc<Task>> {
        self.0
            .borrow()
            .iter()
            .find(|binding| std::ptr::eq(binding.source, source))
            .map(|binding| binding.task.clone())
    }

    fn push(&self, source: &'static Threads, task: Arc<Task>) {
        if let Some(tid) = os::tid() {
            OS_TID.set(&task, tid);
        }
        let binding = Binding { source, task };
        let mut list = self.0.borrow_mut();
        match list.first {
            None => list.first = Some(binding),
            Some(_) => list.more.push(binding),
        }
    }
}

/// The calling thread's task in `source`, adopting the thread if it has none.
pub(crate) fn current(source: &'static Threads) -> Result<Arc<Task>, CurrentError> {
    BINDINGS
        .try_with(|bindings| {
            if let Some(task) = bindings.find(source) {
                return Ok(task);
            }
            let task = if os::is_main_thread() && source.claim_main() {
                source.process().clone()
            } else {
                let name = std::thread::current()
                    .name()
                    .map_or_else(|| source.process().comm(), str::to_owned);
                let (task, _outcome) = source
                    .tasks()
                    .adopt_running(source.process(), THREAD_FLAGS, &name)
                    .map_err(CurrentError::Adopt)?;
                task
            };
            bindings.push(source, task.clone());
            Ok(task)
        })
        .unwrap_or(Err(CurrentError::ThreadEnding))
}

/// Makes `task` the calling thread's task in `source`: the first thing a thread spawned
/// through the source does, so that its destructor comes after the closure's
/// thread-locals are gone.
pub(crate) fn enter(source: &'static Threads, task: Arc<Task>) {
    // Fails only while the thread-locals are being destroyed, never at a thread's start.
    let _ = BINDINGS.try_with(|bindings| bindings.push(source, task));
}

impl Drop for Bindings {
    fn drop(&mut self) {
        let List { first, more } = std::mem::take(self.0.get_mut());
        // Stack order, last met first: a source that adopted the thread later (from
        // inside code the first one started) has its task end before the tasks that
        // were there before it, as nested scopes end.
        for binding in more.into_iter().rev().chain(first) {
            let tasks = binding.source.tasks();
            let pid = binding.task.pid();
            // An adopted thread exits here; one spawned through the source already did.
            quietly(|| {
                if binding.task.state() == TaskState::Running {
                    let _ = tasks.exit_unreaped(pid, ExitStatus::exited(0));
                }
            });
            quietly(|| {
                if binding.task.state() == TaskState::Zombie {
                    let _ = tasks.free(&binding.task);
                }
            });
        }
    }
}

/// Runs `f`, swallowing a panic: a panic escaping a thread-local destructor aborts the
/// process.
fn quietly(f: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
        // Dropping the payload runs its destructor, which could panic in turn, here
        // where that aborts; leaking it is the safe choice.
        std::mem::forget(payload);
    }
}
