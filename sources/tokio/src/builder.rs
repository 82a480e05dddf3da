//! A runtime builder whose worker and blocking threads are tasks of a source.

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;

use tokio::runtime::{self, Runtime};

use crate::source::AsyncTasks;
use crate::threads;

type Hook = Arc<dyn Fn() + Send + Sync>;

/// Builds a tokio [`Runtime`] whose worker and blocking threads are tasks of an
/// [`AsyncTasks`] source: each gets `fork` when tokio starts it (before it runs any
/// work) and `exit` (code 0) and `free` when tokio stops it, through tokio's stable
/// `on_thread_start` / `on_thread_stop` hooks.
///
/// A thread already exists when its `fork` is sent, so a `fork` watcher cannot refuse
/// it: a refusal is counted in [`AsyncTasks::unheeded_refusals`] and the thread is
/// watched like any other. A current-thread runtime runs its tasks on the thread that
/// calls `block_on`, which is not one of its threads; only its blocking threads are.
///
/// With the `unstable-hooks` feature (and `--cfg tokio_unstable`) the runtime also
/// reports tasks spawned with plain `tokio::spawn` (see the crate documentation).
///
/// ```
/// use watchers_tokio::Builder;
///
/// let runtime = Builder::new_multi_thread().worker_threads(2).build()?;
/// let answer = runtime.block_on(async {
///     let task = watchers_tokio::spawn(async { 6 * 7 })?;
///     Ok::<_, Box<dyn std::error::Error>>(task.await?)
/// })?;
/// assert_eq!(answer, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a builder does nothing until it builds"]
pub struct Builder {
    source: &'static AsyncTasks,
    inner: runtime::Builder,
    start: Option<Hook>,
    stop: Option<Hook>,
}

impl Builder {
    /// A multi-thread runtime for [`AsyncTasks::global`], as
    /// [`tokio::runtime::Builder::new_multi_thread`].
    pub fn new_multi_thread() -> Builder {
        Builder::with_tokio(runtime::Builder::new_multi_thread())
    }

    /// A current-thread runtime for [`AsyncTasks::global`], as
    /// [`tokio::runtime::Builder::new_current_thread`].
    pub fn new_current_thread() -> Builder {
        Builder::with_tokio(runtime::Builder::new_current_thread())
    }

    fn with_tokio(inner: runtime::Builder) -> Builder {
        Builder {
            source: AsyncTasks::global(),
            inner,
            start: None,
            stop: None,
        }
    }

    /// The source whose tasks the runtime's threads become (by default
    /// [`AsyncTasks::global`]).
    pub fn source(&mut self, source: &'static AsyncTasks) -> &mut Builder {
        self.source = source;
        self
    }

    /// How many worker threads a multi-thread runtime has, as
    /// [`tokio::runtime::Builder::worker_threads`].
    pub fn worker_threads(&mut self, count: usize) -> &mut Builder {
        self.inner.worker_threads(count);
        self
    }

    /// Runs `f` on each runtime thread once it is a task (so it can look its task up
    /// with [`AsyncTasks::current_thread`]). If `f` panics, the thread's task gets
    /// `exit` and `free` at once (tokio stops such a thread without its stop hook), and
    /// the panic continues.
    pub fn on_thread_start<F>(&mut self, f: F) -> &mut Builder
    where
        F: Fn() + Send + Sync + 'static,
    {
        self.start = Some(Arc::new(f));
        self
    }

    /// Runs `f` on each runtime thread as it stops, while it is still a task. If `f`
    /// panics, the thread's task still gets `exit` and `free`, and the panic continues.
    pub fn on_thread_stop<F>(&mut self, f: F) -> &mut Builder
    where
        F: Fn() + Send + Sync + 'static,
    {
        self.stop = Some(Arc::new(f));
        self
    }

    /// The tokio builder, for every other setting (`enable_all`, `thread_name`, …).
    /// Thread hooks set on it directly are replaced when the runtime is built: use
    /// [`on_thread_start`](Builder::on_thread_start) and
    /// [`on_thread_stop`](Builder::on_thread_stop) here instead.
    pub fn tokio(&mut self) -> &mut runtime::Builder {
        &mut self.inner
    }

    /// Builds the runtime, as [`tokio::runtime::Builder::build`].
    ///
    /// # Errors
    /// What tokio returns (the OS refused a resource the runtime needs).
    pub fn build(&mut self) -> io::Result<Runtime> {
        let source = self.source;
        let start = self.start.clone();
        let stop = self.stop.clone();
        // The user's hooks are caught around: tokio runs no `on_thread_stop` for a
        // thread whose start hook panicked, and a panicking stop hook would skip the
        // source's own; either way the thread's task would never get `exit` and `free`.
        self.inner.on_thread_start(move || {
            threads::started(source);
            if let Some(start) = &start
                && let Err(payload) = catch_unwind(AssertUnwindSafe(|| start()))
            {
                threads::stopping(source);
                resume_unwind(payload);
            }
        });
        self.inner.on_thread_stop(move || {
            let stopped = stop
                .as_ref()
                .map(|stop| catch_unwind(AssertUnwindSafe(|| stop())));
            threads::stopping(source);
            if let Some(Err(payload)) = stopped {
                resume_unwind(payload);
            }
        });
        #[cfg(all(feature = "unstable-hooks", tokio_unstable))]
        let hooks = crate::plain::install(&mut self.inner, source);
        let runtime = self.inner.build()?;
        #[cfg(all(feature = "unstable-hooks", tokio_unstable))]
        hooks.built(&runtime);
        Ok(runtime)
    }
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("source", &self.source)
            .field("tokio", &self.inner)
            .finish_non_exhaustive()
    }
}
