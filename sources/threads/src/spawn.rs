//! Spawning: `fork` on the spawning thread, the OS thread, `exit` on the new thread.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::thread::{self, Scope, Thread};

use watchers_core::{CloneFlags, ExitStatus, Task};

use crate::bind;
use crate::error::SpawnError;
use crate::threads::Threads;

/// The flags `pthread_create` passes to `clone`, as far as the task model knows them.
pub(crate) const THREAD_FLAGS: CloneFlags = CloneFlags::VM
    .union(CloneFlags::FS)
    .union(CloneFlags::FILES)
    .union(CloneFlags::SIGHAND)
    .union(CloneFlags::THREAD)
    .union(CloneFlags::SYSVSEM);

/// The exit code of a thread whose closure panicked: the code of a Rust program that
/// panicked.
pub const PANIC_EXIT_CODE: i32 = 101;

/// A drop-in for [`std::thread::Builder`] whose threads are tasks of a [`Threads`]
/// source.
///
/// ```
/// let handle = watchers_threads::Builder::new()
///     .name("sum".into())
///     .stack_size(256 * 1024)
///     .spawn(|| (1..=10).sum::<u32>())?;
/// assert_eq!(handle.join().unwrap(), 55);
///
/// let mut counts = [0u32; 2];
/// std::thread::scope(|scope| -> Result<(), watchers_threads::SpawnError> {
///     for (i, count) in counts.iter_mut().enumerate() {
///         watchers_threads::Builder::new().spawn_scoped(scope, move || *count = i as u32 + 1)?;
///     }
///     Ok(())
/// })?;
/// assert_eq!(counts, [1, 2]);
/// # Ok::<(), watchers_threads::SpawnError>(())
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until it spawns"]
pub struct Builder {
    source: &'static Threads,
    inner: thread::Builder,
    name: Option<String>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// A builder for [`Threads::global`].
    pub fn new() -> Builder {
        Builder::with_source(Threads::global())
    }

    pub(crate) fn with_source(source: &'static Threads) -> Builder {
        Builder {
            source,
            inner: thread::Builder::new(),
            name: None,
        }
    }

    /// The thread's name: the OS name (as std sets it) and its task's `comm`, set by a
    /// `comm` event when the thread starts. A name with a NUL byte makes the spawn fail
    /// with [`SpawnError::Nul`].
    pub fn name(mut self, name: String) -> Builder {
        self.inner = self.inner.name(name.clone());
        self.name = Some(name);
        self
    }

    /// The thread's stack size in bytes, as [`std::thread::Builder::stack_size`].
    pub fn stack_size(mut self, size: usize) -> Builder {
        self.inner = self.inner.stack_size(size);
        self
    }

    /// Spawns the thread: the `fork` watchers run here first, then the OS thread starts.
    ///
    /// # Errors
    /// [`SpawnError::Nul`] if the name holds a NUL byte, [`SpawnError::Fork`] if a
    /// watcher refused (see [`SpawnError::watcher`]) and [`SpawnError::Current`] if the
    /// calling thread is ending: nothing was started.
    /// [`SpawnError::Os`] if the OS could not start the thread: the `fork` watchers got
    /// `free`.
    pub fn spawn<F, T>(self, f: F) -> Result<JoinHandle<T>, SpawnError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (source, task) = self.fork()?;
        let body = body(source, task.clone(), self.name, f);
        match self.inner.spawn(body) {
            Ok(inner) => Ok(JoinHandle { inner, task }),
            Err(error) => Err(abort(source, &task, error)),
        }
    }

    /// Spawns a scoped thread, as [`std::thread::Builder::spawn_scoped`].
    ///
    /// Its task gets `free` before [`ScopedJoinHandle::join`] returns, but not
    /// necessarily before [`std::thread::scope`] returns for a thread not joined: the
    /// scope waits for the closures, not for the threads' thread-locals, after which
    /// `free` comes.
    ///
    /// # Errors
    /// As [`spawn`](Builder::spawn).
    pub fn spawn_scoped<'scope, 'env, F, T>(
        self,
        scope: &'scope Scope<'scope, 'env>,
        f: F,
    ) -> Result<ScopedJoinHandle<'scope, T>, SpawnError>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        let (source, task) = self.fork()?;
        let body = body(source, task.clone(), self.name, f);
        match self.inner.spawn_scoped(scope, body) {
            Ok(inner) => Ok(ScopedJoinHandle { inner, task }),
            Err(error) => Err(abort(source, &task, error)),
        }
    }

    /// Runs the `fork` watchers for a thread of the calling thread.
    fn fork(&self) -> Result<(&'static Threads, Arc<Task>), SpawnError> {
        // std panics on such a name once asked to spawn, which would leave the forked
        // task without its `free`: it is refused before any watcher runs.
        if self.name.as_ref().is_some_and(|name| name.contains('\0')) {
            return Err(SpawnError::Nul);
        }
        let parent = self.source.current().map_err(SpawnError::Current)?;
        let task = self
            .source
            .tasks()
            .fork(parent.pid(), THREAD_FLAGS)
            .map_err(SpawnError::Fork)?;
        Ok((self.source, task))
    }
}

/// The OS refused the thread after its `fork` watchers succeeded: they get `free`.
fn abort(source: &Threads, task: &Arc<Task>, error: std::io::Error) -> SpawnError {
    // The task was forked just now and nobody else touches it, so it is running; a
    // failing `free` watcher is counted in its statistics.
    let _ = source.tasks().abort_fork(task);
    SpawnError::Os(error)
}

/// What the new thread runs: it becomes its task, runs `f`, and exits.
fn body<F, T>(
    source: &'static Threads,
    task: Arc<Task>,
    name: Option<String>,
    f: F,
) -> impl FnOnce() -> T
where
    F: FnOnce() -> T,
{
    move || {
        bind::enter(source, task.clone());
        // A panicking `comm` watcher ends the thread before its closure, as a panic of
        // the closure would, so it exits with the panic code too.
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            if let Some(name) = name {
                // A failing `comm` watcher is counted; the thread runs regardless.
                let _ = source.tasks().set_comm(task.pid(), &name);
            }
            f()
        }));
        let status = match outcome {
            Ok(_) => ExitStatus::exited(0),
            Err(_) => ExitStatus::exited(PANIC_EXIT_CODE),
        };
        let exited = catch_unwind(AssertUnwindSafe(|| {
            source.tasks().exit_unreaped(task.pid(), status)
        }));
        // The closure's own panic goes first; a panicking `exit` watcher's otherwise.
        match (outcome, exited) {
            (Err(payload), _) | (Ok(_), Err(payload)) => resume_unwind(payload),
            (Ok(value), Ok(_)) => value,
        }
    }
}

/// An owned permission to join a thread spawned through the source, as
/// [`std::thread::JoinHandle`], with its task.
#[derive(Debug)]
pub struct JoinHandle<T> {
    inner: thread::JoinHandle<T>,
    task: Arc<Task>,
}

impl<T> JoinHandle<T> {
    /// Waits for the thread to finish, as [`std::thread::JoinHandle::join`]. Once it
    /// returns, the thread's thread-locals are gone, so its task got `free`.
    ///
    /// # Errors
    /// The closure's panic payload, if it panicked.
    pub fn join(self) -> thread::Result<T> {
        self.inner.join()
    }

    /// The thread.
    pub fn thread(&self) -> &Thread {
        self.inner.thread()
    }

    /// Whether the closure has finished.
    pub fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }

    /// The thread's task.
    pub fn task(&self) -> &Arc<Task> {
        &self.task
    }

    /// The std handle.
    pub fn into_std(self) -> thread::JoinHandle<T> {
        self.inner
    }
}

/// A permission to join a scoped thread spawned through the source, as
/// [`std::thread::ScopedJoinHandle`], with its task.
#[derive(Debug)]
pub struct ScopedJoinHandle<'scope, T> {
    inner: thread::ScopedJoinHandle<'scope, T>,
    task: Arc<Task>,
}

impl<'scope, T> ScopedJoinHandle<'scope, T> {
    /// Waits for the thread to finish, as [`std::thread::ScopedJoinHandle::join`]; its
    /// task then got `free`.
    ///
    /// # Errors
    /// The closure's panic payload, if it panicked.
    pub fn join(self) -> thread::Result<T> {
        self.inner.join()
    }

    /// The thread.
    pub fn thread(&self) -> &Thread {
        self.inner.thread()
    }

    /// Whether the closure has finished.
    pub fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }

    /// The thread's task.
    pub fn task(&self) -> &Arc<Task> {
        &self.task
    }

    /// The std handle.
    pub fn into_std(self) -> thread::ScopedJoinHandle<'scope, T> {
        self.inner
    }
}
