//! Tasks spawned with plain `tokio::spawn`, seen through tokio's unstable
//! `on_task_spawn` / `on_task_terminate` hooks.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::runtime::{Builder, TaskMeta};
use tokio::task::Id;
use watchers_core::{ExitStatus, Task};

use crate::source::AsyncTasks;

/// The `comm` of a plain task (tokio's hook gives no name).
const COMM: &str = "tokio-task";

thread_local! {
    /// Set while the source itself spawns, whose tasks are not plain ones.
    static HIDDEN: Cell<bool> = const { Cell::new(false) };
    /// The last task this thread saw terminate that was not in the map. A task spawned
    /// on a runtime that has shut down is shut down inside the spawn, so tokio runs
    /// `on_task_terminate` for it before `on_task_spawn`, on the spawning thread: the
    /// spawn hook must then not adopt a task that no terminate will ever retire.
    static ENDED_UNSEEN: Cell<Option<Id>> = const { Cell::new(None) };
}

/// The plain tasks alive, by tokio id.
#[derive(Default)]
pub(crate) struct PlainTasks {
    tasks: Mutex<HashMap<Id, Arc<Task>>>,
}

impl PlainTasks {
    fn lock(&self) -> MutexGuard<'_, HashMap<Id, Arc<Task>>> {
        // The map is consistent after every statement; a panic cannot tear it.
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The task of the plain tokio task being polled on this thread.
    pub(crate) fn current(&self) -> Option<Arc<Task>> {
        let id = tokio::task::try_id()?;
        self.lock().get(&id).cloned()
    }
}

/// Installs the task hooks on a runtime built through `source`.
pub(crate) fn install(builder: &mut Builder, source: &'static AsyncTasks) {
    builder.on_task_spawn(move |meta| spawned(source, meta));
    builder.on_task_terminate(move |meta| terminated(source, meta));
}

/// Runs `spawn` (a spawn by the source itself) with the spawn hook looking away.
pub(crate) fn hidden<R>(spawn: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            HIDDEN.set(self.0);
        }
    }
    let _reset = Reset(HIDDEN.replace(true));
    spawn()
}

/// `on_task_spawn`: runs on the spawning thread before the task is scheduled. The task
/// is adopted (its `fork` watchers cannot refuse it; a refusal is counted).
fn spawned(source: &'static AsyncTasks, meta: &TaskMeta<'_>) {
    let ended = ENDED_UNSEEN.take() == Some(meta.id());
    if HIDDEN.get() || ended {
        return;
    }
    let parent = source.parent();
    if let Some(task) = source.adopt(&parent, COMM) {
        source.plain.lock().insert(meta.id(), task);
    }
}

/// `on_task_terminate`: the task completed, panicked or was cancelled (tokio does not
/// say which), and its future is gone: `exit` (code 0) and `free`.
fn terminated(source: &'static AsyncTasks, meta: &TaskMeta<'_>) {
    let task = source.plain.lock().remove(&meta.id());
    match task {
        Some(task) => source.retire(&task, ExitStatus::exited(0)),
        // Not spawned yet (see `ENDED_UNSEEN`), or not a plain task of the source (one
        // of its own, or a blocking task, which gets no spawn hook): one slot is enough,
        // as the spawn hook of a task that ended early runs next on this thread.
        None => ENDED_UNSEEN.set(Some(meta.id())),
    }
}
