//! Spawning: `fork` on the spawning thread before tokio sees the task, `exit` when the
//! future completes, panics or is dropped, `free` once it is dropped.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::runtime::Handle;
use tokio::task::{AbortHandle, Id, JoinError, JoinSet};
use watchers_core::Task;

use crate::current::{self, Current};
use crate::error::SpawnError;
use crate::outcome::Outcome;
use crate::source::{AsyncTasks, TASK_FLAGS};

/// A forked task until it is freed: sends its `exit` once (as cancelled if nothing else
/// did) and its `free` when dropped.
struct Life {
    me: Current,
    exited: bool,
}

impl Life {
    /// Runs the `fork` watchers for a task of the calling code.
    fn fork(source: &'static AsyncTasks) -> Result<Life, SpawnError> {
        let parent = source.parent();
        let task = source
            .tasks()
            .fork(parent.pid(), TASK_FLAGS)
            .map_err(SpawnError::Fork)?;
        Ok(Life {
            me: Current { source, task },
            exited: false,
        })
    }

    /// Sends `exit`. A failing watcher is counted in the table's statistics; a
    /// panicking one continues as the task's own panic (the task is a zombie by then).
    fn exit(&mut self, outcome: Outcome) {
        self.exited = true;
        let _ = self
            .me
            .source
            .tasks()
            .exit_unreaped(self.me.task.pid(), outcome.status());
    }

    /// Sends `exit` while a panic of the task is on its way: a watcher's panic is
    /// swallowed, so that the task's goes first.
    fn exit_quietly(&mut self, outcome: Outcome) {
        self.exited = true;
        self.me.source.exit_quietly(&self.me.task, outcome.status());
    }

    /// Runs `f` as the calling thread's current task.
    fn enter<R>(&self, f: impl FnOnce() -> R) -> std::thread::Result<R> {
        let _entered = current::enter(&self.me);
        catch_unwind(AssertUnwindSafe(f))
    }
}

impl Drop for Life {
    fn drop(&mut self) {
        if !self.exited {
            self.exit_quietly(Outcome::Cancelled);
        }
        self.me.source.free_quietly(&self.me.task);
    }
}

pin_project_lite::pin_project! {
    /// A future spawned through the source. Fields drop in order: the hiding ends
    /// (see [`Unhide`]), the future (and what it holds) goes, then the life, whose drop
    /// sends `free`.
    struct Tracked<F> {
        _unhide: Unhide,
        #[pin]
        future: F,
        life: Life,
    }
}

/// Dropped before the rest of a task: tokio drops a task it cannot bind (its runtime
/// shut down) inside the spawn, where the source hides its spawn from the `unstable-hooks`
/// spawn hook. The future's or closure's `Drop`, and the `exit` and `free` watchers that
/// run then, are user code whose own plain spawns must be seen; of the failed spawn
/// only its hook is still to come, and that hook does not look at the hiding.
struct Unhide;

impl Drop for Unhide {
    fn drop(&mut self) {
        #[cfg(all(feature = "unstable-hooks", tokio_unstable))]
        crate::plain::unhide();
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let future = this.future;
        match this.life.enter(|| future.poll(cx)) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => {
                this.life.exit(Outcome::Completed);
                Poll::Ready(output)
            }
            Err(payload) => {
                this.life.exit_quietly(Outcome::Panicked);
                resume_unwind(payload)
            }
        }
    }
}

/// A blocking closure spawned through the source; dropped unrun, it is cancelled (after
/// the hiding ends, see [`Unhide`]).
struct Blocking<F> {
    _unhide: Unhide,
    f: F,
    life: Life,
}

impl<F: FnOnce() -> R, R> Blocking<F> {
    fn run(self) -> R {
        let Blocking { f, mut life, .. } = self;
        match life.enter(f) {
            Ok(value) => {
                life.exit(Outcome::Completed);
                value
            }
            Err(payload) => {
                life.exit_quietly(Outcome::Panicked);
                resume_unwind(payload)
            }
        }
        // `life` drops here, after the closure and what it captured: `free`.
    }
}

impl AsyncTasks {
    /// Spawns `future` on the current tokio runtime, as [`tokio::spawn`], as a task of
    /// this source: its `fork` watchers run here first, and if one refuses, nothing is
    /// spawned and the future is dropped unpolled. The task's parent is the calling task
    /// (or runtime thread, or the process).
    ///
    /// The task gets `exit` when the future completes, panics, or is dropped unfinished
    /// (aborted, or pending when the runtime shuts down); the status says which (see
    /// [`Outcome`]). It gets `free` exactly once, after the future is dropped. While the
    /// future is polled, [`current`](AsyncTasks::current) returns its task.
    ///
    /// # Errors
    /// [`SpawnError::NoRuntime`] outside a runtime (nothing was forked);
    /// [`SpawnError::Fork`] if a `fork` watcher refused (see [`SpawnError::watcher`]).
    ///
    /// # Panics
    /// If a `fork` watcher panics: the fork is rolled back as for a refusal (nothing is
    /// spawned, the future is dropped unpolled) and the panic continues here.
    pub fn spawn<F>(&'static self, future: F) -> Result<JoinHandle<F::Output>, SpawnError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handle = Handle::try_current().map_err(|_| SpawnError::NoRuntime)?;
        self.spawn_on(future, &handle)
    }

    /// Spawns `future` on the runtime of `handle`; otherwise as
    /// [`spawn`](AsyncTasks::spawn).
    ///
    /// # Errors
    /// [`SpawnError::Fork`] if a `fork` watcher refused.
    pub fn spawn_on<F>(
        &'static self,
        future: F,
        handle: &Handle,
    ) -> Result<JoinHandle<F::Output>, SpawnError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let life = Life::fork(self)?;
        let task = life.me.task.clone();
        let inner = hidden(|| {
            handle.spawn(Tracked {
                _unhide: Unhide,
                future,
                life,
            })
        });
        Ok(JoinHandle { inner, task })
    }

    /// Runs `f` on the current runtime's blocking pool, as
    /// [`tokio::task::spawn_blocking`], as a task of this source; the `fork`, `exit`
    /// and `free` rules of [`spawn`](AsyncTasks::spawn) hold (a closure that never ran
    /// because the runtime shut down is cancelled).
    ///
    /// # Errors
    /// As [`spawn`](AsyncTasks::spawn).
    pub fn spawn_blocking<F, R>(&'static self, f: F) -> Result<JoinHandle<R>, SpawnError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let handle = Handle::try_current().map_err(|_| SpawnError::NoRuntime)?;
        let life = Life::fork(self)?;
        let task = life.me.task.clone();
        let blocking = Blocking {
            _unhide: Unhide,
            f,
            life,
        };
        let inner = hidden(|| handle.spawn_blocking(move || blocking.run()));
        Ok(JoinHandle { inner, task })
    }

    /// Spawns `future` into `set` on the current runtime, as [`JoinSet::spawn`]; the
    /// rules of [`spawn`](AsyncTasks::spawn) hold.
    ///
    /// # Errors
    /// As [`spawn`](AsyncTasks::spawn); `set` is unchanged.
    pub fn spawn_in<F>(
        &'static self,
        set: &mut JoinSet<F::Output>,
        future: F,
    ) -> Result<AbortHandle, SpawnError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handle = Handle::try_current().map_err(|_| SpawnError::NoRuntime)?;
        let life = Life::fork(self)?;
        let tracked = Tracked {
            _unhide: Unhide,
            future,
            life,
        };
        Ok(hidden(|| set.spawn_on(tracked, &handle)))
    }
}

/// Spawns through tokio without the `unstable-hooks` spawn hook taking the task for a
/// plain one: it is already a task of the source.
fn hidden<R>(spawn: impl FnOnce() -> R) -> R {
    #[cfg(all(feature = "unstable-hooks", tokio_unstable))]
    return crate::plain::hidden(spawn);
    #[cfg(not(all(feature = "unstable-hooks", tokio_unstable)))]
    spawn()
}

/// An owned permission to await a task spawned through the source, as
/// [`tokio::task::JoinHandle`], with its task.
#[derive(Debug)]
pub struct JoinHandle<T> {
    inner: tokio::task::JoinHandle<T>,
    task: Arc<Task>,
}

impl<T> JoinHandle<T> {
    /// The task (dead once it was freed; its pid may then be reused).
    pub fn task(&self) -> &Arc<Task> {
        &self.task
    }

    /// Cancels the task, as [`tokio::task::JoinHandle::abort`]: once tokio drops its
    /// future, it gets `exit` (cancelled) and `free`.
    pub fn abort(&self) {
        self.inner.abort();
    }

    /// A handle that can abort the task without awaiting it.
    pub fn abort_handle(&self) -> AbortHandle {
        self.inner.abort_handle()
    }

    /// Whether the task has finished.
    pub fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }

    /// Tokio's id of the task.
    pub fn id(&self) -> Id {
        self.inner.id()
    }

    /// The tokio handle.
    pub fn into_tokio(self) -> tokio::task::JoinHandle<T> {
        self.inner
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.get_mut().inner).poll(cx)
    }
}
