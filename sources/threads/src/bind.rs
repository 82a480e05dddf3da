//! Which task the calling thread is, per source, and the report of the thread's end that
//! sends `exit` and `free`.

use std::cell::{Cell, RefCell};
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use watchers_core::{ExitStatus, Task, TaskState};

use crate::error::CurrentError;
use crate::spawn::THREAD_FLAGS;
use crate::threads::Threads;
use crate::{end, os};

/// The calling thread's task in one source.
struct Binding {
    source: &'static Threads,
    task: Arc<Task>,
}

/// Every source the thread has met: almost always one, kept inline so that a thread's
/// start allocates nothing here. What a short-lived thread allocates costs twice on the
/// path its `join` waits for: the allocation, and its free when glibc takes back the
/// thread's cache.
struct Bindings {
    list: RefCell<List>,
    /// Set once the thread's end is being reported: no task is bound after that.
    ending: Cell<bool>,
}

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
    /// Without drop glue (`ManuallyDrop`), so std registers no destructor for it: that
    /// registration allocates on every thread. [`end::arm`] reports the thread's end
    /// instead, and [`thread_ended`] takes the bindings out.
    static BINDINGS: ManuallyDrop<Bindings> = const {
        ManuallyDrop::new(Bindings {
            list: RefCell::new(List::new()),
            ending: Cell::new(false),
        })
    };
}

impl Bindings {
    fn find(&self, source: &'static Threads) -> Option<Arc<Task>> {
        self.list
            .borrow()
            .iter()
            .find(|binding| std::ptr::eq(binding.source, source))
            .map(|binding| binding.task.clone())
    }

    /// Binds the thread, whose OS id is `tid`, to `task` in `source`; `main`: whether it
    /// is the main thread.
    fn push(&self, source: &'static Threads, task: Arc<Task>, tid: Option<u32>, main: bool) {
        if let Some(tid) = tid {
            // A thread that several sources adopted records its id in each task.
            source.tasks().set_os_id(&task, tid);
        }
        let binding = Binding { source, task };
        let mut list = self.list.borrow_mut();
        match list.first {
            None => {
                list.first = Some(binding);
                drop(list);
                end::arm(main);
            }
            Some(_) => list.more.push(binding),
        }
    }
}

/// The calling thread's task in `source`, adopting the thread if it has none.
pub(crate) fn current(source: &'static Threads) -> Result<Arc<Task>, CurrentError> {
    BINDINGS
        .try_with(|bindings| {
            if bindings.ending.get() {
                return Err(CurrentError::ThreadEnding);
            }
            if let Some(task) = bindings.find(source) {
                return Ok(task);
            }
            // One system call for both: the id is recorded and tells the main thread.
            let tid = os::tid();
            let main = os::is_main_thread(tid);
            let task = if main && source.claim_main() {
                source.process().clone()
            } else {
                let name = os::thread_name().unwrap_or_else(|| source.process().comm());
                let (task, _outcome) = source
                    .tasks()
                    .adopt_running(source.process(), THREAD_FLAGS, &name)
                    .map_err(CurrentError::Adopt)?;
                task
            };
            bindings.push(source, task.clone(), tid, main);
            Ok(task)
        })
        .unwrap_or(Err(CurrentError::ThreadEnding))
}

/// Makes `task` the calling thread's task in `source`: the first thing a thread spawned
/// through the source does, so that its destructor comes after the closure's
/// thread-locals are gone.
pub(crate) fn enter(source: &'static Threads, task: Arc<Task>) {
    // Fails only while the thread-locals are being destroyed, never at a thread's start.
    let _ = BINDINGS.try_with(|bindings| bindings.push(source, task, os::tid(), false));
}

/// Reports the calling thread's end to every source it met: `exit` for a task still
/// running (an adopted thread; one spawned through a source has exited already), then
/// `free`. Called once the thread's other thread-locals are gone (see [`end`]); from
/// then on the thread gets no task.
pub(crate) fn thread_ended() {
    let Ok(List { first, more }) = BINDINGS.try_with(|bindings| {
        bindings.ending.set(true);
        bindings
            .list
            .try_borrow_mut()
            .map(|mut list| std::mem::take(&mut *list))
            .unwrap_or_default()
    }) else {
        return;
    };
    // Stack order, last met first: a source that adopted the thread later (from inside
    // code the first one started) has its task end before the tasks that were there
    // before it, as nested scopes end.
    for binding in more.into_iter().rev().chain(first) {
        let tasks = binding.source.tasks();
        let pid = binding.task.pid();
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

/// Runs `f`, swallowing a panic: a panic escaping a thread-local destructor aborts the
/// process.
fn quietly(f: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
        // Dropping the payload runs its destructor, which could panic in turn, here
        // where that aborts; leaking it is the safe choice.
        std::mem::forget(payload);
    }
}
