//! Tasks spawned with plain `tokio::spawn`, seen through tokio's unstable
//! `on_task_spawn` / `on_task_terminate` hooks.
//!
//! tokio binds a task to its runtime and only then runs the spawn hook, on the spawning
//! thread. A runtime shutting down on another thread in between shuts the bound task
//! down there, so its terminate hook can come first. Such an end is remembered (an
//! "early end") so that the spawn hook, when it comes, does not adopt a task already
//! gone. A terminate the source cannot place may also be a blocking task's, which never
//! gets a spawn hook, so early ends are only kept while some spawn on the runtime is
//! between its bind and its spawn hook: tokio counts the binds
//! (`RuntimeMetrics::spawned_tasks_count`), the spawn hook counts itself, and when the
//! two agree no remembered end can still be claimed, so they are all dropped.
//!
//! That count can only be read in the runtime's context, which is where tokio shuts a
//! runtime's tasks down (`Runtime::drop` enters it for a current-thread runtime; a
//! multi-thread runtime's workers shut its tasks down themselves). An end reported off
//! that context is not remembered, so a current-thread runtime dropped where tokio
//! cannot enter its context (a thread-local destructor) is not covered. Ends kept while
//! spawns were on their way stay until the runtime's next end with none on the way, or
//! until tokio drops the runtime's hooks.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::runtime::{self, Builder, Handle, Runtime};
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

/// What the source knows of a plain task.
enum Entry {
    /// Its spawn hook is announcing it (without the lock: `fork` watchers may spawn).
    Adopting,
    /// It ended while its spawn hook was announcing it; the spawn hook retires it.
    EndedWhileAdopting,
    /// Announced; its terminate hook retires it.
    Tracked(Arc<Task>),
    /// It could not be put into the table ([`AsyncTasks::untracked`]).
    Untracked,
}

/// The spawn bookkeeping of one runtime built through the source.
#[derive(Default)]
struct RuntimeSpawns {
    /// Spawn hooks run for tasks tokio bound to the runtime (not for failed binds).
    hooked: u64,
    /// Tasks that ended before their spawn hook ran; see the module documentation.
    ended_early: HashSet<Id>,
}

#[derive(Default)]
struct Inner {
    tasks: HashMap<Id, Entry>,
    runtimes: HashMap<u64, RuntimeSpawns>,
    next_runtime: u64,
    /// See [`PlainTasks::late_spawn_hooks`].
    late_spawn_hooks: u64,
}

/// The plain tasks alive, by tokio id, and each runtime's spawn bookkeeping.
#[derive(Default)]
pub(crate) struct PlainTasks {
    inner: Mutex<Inner>,
}

impl PlainTasks {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state is consistent after every statement; a panic cannot tear it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The task of the plain tokio task being polled on this thread.
    pub(crate) fn current(&self) -> Option<Arc<Task>> {
        let id = tokio::task::try_id()?;
        match self.lock().tasks.get(&id) {
            Some(Entry::Tracked(task)) => Some(task.clone()),
            _ => None,
        }
    }

    /// How many tasks ended before their spawn hook was done with them.
    pub(crate) fn late_spawn_hooks(&self) -> u64 {
        self.lock().late_spawn_hooks
    }

    /// How many early ends all runtimes remember.
    pub(crate) fn early_ends(&self) -> usize {
        let inner = self.lock();
        inner.runtimes.values().map(|r| r.ended_early.len()).sum()
    }
}

/// The task hooks of one runtime, shared by its spawn and terminate hook; dropped (and
/// the runtime's bookkeeping with it) when tokio drops the hooks.
pub(crate) struct Hooks {
    source: &'static AsyncTasks,
    key: u64,
    /// The runtime's id, once it is built.
    runtime: OnceLock<runtime::Id>,
}

/// Installs the task hooks on a runtime built through `source`; pass the runtime to
/// [`Hooks::built`] once tokio has built it.
pub(crate) fn install(builder: &mut Builder, source: &'static AsyncTasks) -> Arc<Hooks> {
    let key = {
        let mut inner = source.plain.lock();
        inner.next_runtime += 1;
        let key = inner.next_runtime;
        inner.runtimes.insert(key, RuntimeSpawns::default());
        key
    };
    let hooks = Arc::new(Hooks {
        source,
        key,
        runtime: OnceLock::new(),
    });
    let (spawn, end) = (hooks.clone(), hooks.clone());
    builder.on_task_spawn(move |meta| spawn.spawned(meta.id()));
    builder.on_task_terminate(move |meta| end.terminated(meta.id()));
    hooks
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

/// Ends the hiding of [`hidden`] on this thread for the rest of its spawn: user code
/// (a task's `Drop`, its watchers) runs inside it.
pub(crate) fn unhide() {
    HIDDEN.set(false);
}

impl Hooks {
    /// Records which runtime the hooks belong to.
    pub(crate) fn built(&self, runtime: &Runtime) {
        let _ = self.runtime.set(runtime.handle().id());
    }

    /// How many spawns on this runtime tokio has bound whose spawn hook has not run yet
    /// (so has not counted itself in `hooked`); `None` off the runtime's context, where
    /// the count cannot be read. Must be called with the lock held, after whatever the
    /// answer is weighed against was recorded under it: an early end was recorded
    /// after tokio counted its bind, and reading the count under the lock sees that.
    fn spawns_in_flight(&self, spawns: &RuntimeSpawns) -> Option<u64> {
        let runtime = *self.runtime.get()?;
        let handle = Handle::try_current().ok()?;
        if handle.id() != runtime {
            return None;
        }
        let bound = handle.metrics().spawned_tasks_count();
        Some(bound.saturating_sub(spawns.hooked))
    }

    /// `on_task_spawn`: runs on the spawning thread before the task is scheduled. The
    /// task is adopted (its `fork` watchers cannot refuse it; a refusal is counted).
    fn spawned(&self, id: Id) {
        let failed_bind = ENDED_UNSEEN.take() == Some(id);
        {
            let mut inner = self.source.plain.lock();
            let Some(spawns) = inner.runtimes.get_mut(&self.key) else {
                return;
            };
            if failed_bind {
                // tokio did not count it as bound; its end may have been remembered.
                spawns.ended_early.remove(&id);
                return;
            }
            spawns.hooked += 1;
            if spawns.ended_early.remove(&id) {
                inner.late_spawn_hooks += 1;
                return;
            }
            if !spawns.ended_early.is_empty() && self.spawns_in_flight(spawns) == Some(0) {
                spawns.ended_early.clear();
            }
            if HIDDEN.get() {
                return;
            }
            inner.tasks.insert(id, Entry::Adopting);
        }
        let parent = self.source.parent();
        let task = self.source.adopt(&parent, COMM);
        let mut inner = self.source.plain.lock();
        if let Some(Entry::EndedWhileAdopting) = inner.tasks.get(&id) {
            inner.tasks.remove(&id);
            inner.late_spawn_hooks += 1;
            drop(inner);
            if let Some(task) = task {
                self.source.retire(&task, ExitStatus::exited(0));
            }
        } else {
            inner
                .tasks
                .insert(id, task.map_or(Entry::Untracked, Entry::Tracked));
        }
    }

    /// `on_task_terminate`: the task completed, panicked or was cancelled (tokio does
    /// not say which), and its future is gone: `exit` (code 0) and `free`.
    fn terminated(&self, id: Id) {
        let mut inner = self.source.plain.lock();
        match inner.tasks.remove(&id) {
            Some(Entry::Tracked(task)) => {
                drop(inner);
                self.source.retire(&task, ExitStatus::exited(0));
            }
            Some(Entry::Adopting) => {
                inner.tasks.insert(id, Entry::EndedWhileAdopting);
            }
            // A task ends once; nothing of an untracked one is in the table.
            Some(Entry::EndedWhileAdopting | Entry::Untracked) => {}
            // Not spawned yet, or not a plain task (one of the source's own, or a
            // blocking task, which gets no spawn hook).
            None => {
                // On this thread, after a failed bind: the spawn hook runs next here.
                ENDED_UNSEEN.set(Some(id));
                // On another thread, during the runtime's shutdown, which tokio runs in
                // the runtime's context (`Runtime::drop`; the worker threads' own
                // shutdown): off that context it cannot be a task whose spawn hook is
                // still to come.
                let Some(spawns) = inner.runtimes.get_mut(&self.key) else {
                    return;
                };
                match self.spawns_in_flight(spawns) {
                    Some(0) => spawns.ended_early.clear(),
                    Some(_) => {
                        spawns.ended_early.insert(id);
                    }
                    None => {}
                }
            }
        }
    }
}

impl Drop for Hooks {
    fn drop(&mut self) {
        self.source.plain.lock().runtimes.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    //! The early-end bookkeeping with the interleaving tokio allows but rarely shows:
    //! a task's end reported between its bind and its spawn hook. A test cannot stop
    //! tokio between the two, so the hook's own count is held back by one, as it is
    //! while a spawn hook is on its way.

    use super::*;
    use watchers_core::WatcherTable;

    fn source() -> &'static AsyncTasks {
        let table = WatcherTable::from_watchers([])
            .expect("an empty table")
            .leak();
        Box::leak(Box::new(AsyncTasks::new(table)))
    }

    fn runtime(source: &'static AsyncTasks) -> (Runtime, Arc<Hooks>) {
        let mut builder = Builder::new_current_thread();
        let hooks = install(&mut builder, source);
        let runtime = builder.build().expect("a runtime");
        hooks.built(&runtime);
        (runtime, hooks)
    }

    /// Reports `id`'s end as tokio's shutdown does: on another thread, in the runtime's
    /// context.
    fn end_elsewhere(hooks: &Hooks, id: Id) {
        let handle = Handle::current();
        std::thread::scope(|s| {
            s.spawn(|| {
                let _context = handle.enter();
                hooks.terminated(id);
            });
        });
    }

    fn hold_back_one_hook(hooks: &Hooks) {
        let mut inner = hooks.source.plain.lock();
        inner
            .runtimes
            .get_mut(&hooks.key)
            .expect("installed")
            .hooked -= 1;
    }

    #[test]
    fn an_end_before_the_spawn_hook_is_remembered_until_the_hook_claims_it() {
        let source = source();
        let (runtime, hooks) = runtime(source);
        let alive = || source.tasks().stats().tasks;
        let before = alive();
        runtime.block_on(async {
            // A bound task whose hook ran unseen; its id stands for one not hooked yet.
            let task = hidden(|| tokio::spawn(std::future::pending::<()>()));
            let id = task.id();
            hold_back_one_hook(&hooks);
            end_elsewhere(&hooks, id);
            assert_eq!(source.early_ends(), 1, "a spawn hook is on its way");
            hooks.spawned(id);
            assert_eq!(source.early_ends(), 0, "the hook claimed its end");
            assert_eq!(source.late_spawn_hooks(), 1);
            assert_eq!(alive(), before, "a task that had ended was announced");
            task.abort();
            let _ = task.await;
        });
        assert_eq!(source.early_ends(), 0);
    }

    #[test]
    fn an_unknown_end_with_no_spawn_hook_to_come_is_not_remembered() {
        let source = source();
        let (runtime, hooks) = runtime(source);
        runtime.block_on(async {
            let task = hidden(|| tokio::spawn(std::future::pending::<()>()));
            // Every bound task has had its spawn hook: nothing could claim this end.
            hooks.terminated(task.id());
            assert_eq!(source.early_ends(), 0);
            task.abort();
            let _ = task.await;
        });
    }

    #[test]
    fn remembered_ends_are_dropped_once_no_spawn_hook_is_to_come() {
        let source = source();
        let (runtime, hooks) = runtime(source);
        runtime.block_on(async {
            let tasks: Vec<_> = (0..3)
                .map(|_| hidden(|| tokio::spawn(std::future::pending::<()>())))
                .collect();
            hold_back_one_hook(&hooks);
            // Ends no hook will claim (a blocking task's looks the same) pile up only
            // while the held-back hook is on its way.
            end_elsewhere(&hooks, tasks[0].id());
            end_elsewhere(&hooks, tasks[1].id());
            assert_eq!(source.early_ends(), 2);
            // The held-back hook is for another task: it comes, and nothing is to come.
            hooks.spawned(tasks[2].id());
            assert_eq!(source.early_ends(), 0);
            for task in tasks {
                task.abort();
                let _ = task.await;
            }
        });
        drop(runtime);
        drop(hooks);
        assert!(
            source.plain.lock().runtimes.is_empty(),
            "the runtime's bookkeeping went with it"
        );
    }

    #[test]
    fn off_the_runtime_an_unknown_end_is_not_remembered() {
        let source = source();
        let (runtime, hooks) = runtime(source);
        let task = {
            let _context = runtime.enter();
            hidden(|| tokio::spawn(std::future::pending::<()>()))
        };
        hold_back_one_hook(&hooks);
        // tokio shuts a runtime's tasks down in its context; this thread is outside it.
        hooks.terminated(task.id());
        assert_eq!(source.early_ends(), 0);
        task.abort();
    }
}
