//! A spawned child whose wait sends `exit` and `free`.

use std::io::{self, Read};
use std::process::{ChildStderr, ChildStdin, ChildStdout, ExitStatus, Output};
use std::sync::Arc;

use watchers_core::Task;

use crate::identity::{Identity, Look};
use crate::processes::Processes;
use crate::to_task_status;

/// The OS's "no child process" error (`ECHILD`): a wait for a child whose status other
/// code collected.
#[cfg(unix)]
const NO_CHILD: i32 = libc::ECHILD;
#[cfg(not(unix))]
const NO_CHILD: i32 = -1;

/// The OS's "no such process" error (`ESRCH`).
#[cfg(unix)]
const NO_SUCH_PROCESS: i32 = libc::ESRCH;
#[cfg(not(unix))]
const NO_SUCH_PROCESS: i32 = -1;

/// The error of a call on a child whose status other code collected.
fn gone(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// A child spawned through a [`Processes`] source: [`std::process::Child`] with its task.
/// The first wait that collects its status sends `exit` and `free`; dropping it without
/// a wait hands it to the source's reaper (see the crate docs).
#[derive(Debug)]
pub struct Child {
    source: &'static Processes,
    /// Taken only by `drop`.
    inner: Option<std::process::Child>,
    task: Arc<Task>,
    /// Tells whether other code reaped the child, until its status is collected here.
    identity: Identity,
    /// The std child was lent out ([`Child::as_std_mut`]), whose own wait may have
    /// reaped the child: then only std knows its status, and the identity tells nothing.
    lent: bool,
    reported: bool,
    /// Other code collected the status (see [`Child::wait`]): the pid is no longer this
    /// child's, so std is not asked about it again.
    lost: bool,
}

impl Child {
    pub(crate) fn new(
        source: &'static Processes,
        inner: std::process::Child,
        task: Arc<Task>,
        identity: Identity,
    ) -> Child {
        Child {
            source,
            inner: Some(inner),
            task,
            identity,
            lent: false,
            reported: false,
            lost: false,
        }
    }

    fn std(&mut self) -> &mut std::process::Child {
        self.inner
            .as_mut()
            .expect("the std child is only taken by methods that consume the Child")
    }

    /// The child's OS pid.
    pub fn id(&self) -> u32 {
        self.inner.as_ref().map_or(0, std::process::Child::id)
    }

    /// The child's task in the source's mirror table.
    pub fn task(&self) -> &Arc<Task> {
        &self.task
    }

    /// The child's piped stdin, if it has one not yet taken (std's `Child::stdin`).
    ///
    /// Prefer this (and [`take_stdout`](Child::take_stdout),
    /// [`take_stderr`](Child::take_stderr)) to [`as_std_mut`](Child::as_std_mut): the
    /// `Child` then still tells its own end from a new process that got its pid.
    ///
    /// ```
    /// # #[cfg(unix)] {
    /// use std::io::Write;
    /// use std::process::{Command, Stdio};
    /// use watchers_process::CommandExt;
    ///
    /// let mut child = Command::new("sh")
    ///     .args(["-c", "read line; test \"$line\" = hi"])
    ///     .stdin(Stdio::piped())
    ///     .spawn_watched()?;
    /// child.take_stdin().expect("piped").write_all(b"hi\n")?;
    /// assert!(child.wait()?.success());
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.std().stdin.take()
    }

    /// The child's piped stdout, if it has one not yet taken (std's `Child::stdout`);
    /// see [`take_stdin`](Child::take_stdin).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.std().stdout.take()
    }

    /// The child's piped stderr, if it has one not yet taken (std's `Child::stderr`);
    /// see [`take_stdin`](Child::take_stdin).
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.std().stderr.take()
    }

    /// The std child. A status collected through it is reported by the next
    /// [`wait`](Child::wait) or [`try_wait`](Child::try_wait) here, or by the drop.
    /// Since std's own wait may then have reaped the child, this `Child` no longer tells
    /// a reaping by other code from it, and waits by pid as std does (see
    /// [`wait`](Child::wait)); for the pipes, [`take_stdin`](Child::take_stdin) and its
    /// siblings keep that.
    pub fn as_std_mut(&mut self) -> &mut std::process::Child {
        self.lent = true;
        self.std()
    }

    /// What the pidfd tells before std, which waits by pid, is asked: whether other
    /// code reaped the child before any wait here collected its status (the pid may be
    /// another child's by now), or whether it still runs.
    fn look(&self) -> Look {
        if self.reported || self.lent {
            Look::AskStd
        } else {
            self.identity.look()
        }
    }

    /// Sends `SIGKILL`, as [`std::process::Child::kill`]. On Linux (5.1+) it goes
    /// through the pidfd opened at the spawn, so it reaches this child or nobody, even
    /// should other code reap it meanwhile (unless the std child was lent out with
    /// [`as_std_mut`](Child::as_std_mut): std then signals the pid).
    ///
    /// # Errors
    /// As [`std::process::Child::kill`]; "no such process" if other code collected
    /// the child's status (its pid may be another process's by then, which must not
    /// get the signal): the task then ends as for [`wait`](Child::wait). A child that
    /// has exited is collected first, as by [`try_wait`](Child::try_wait), so its
    /// `exit` and `free` run here and a later wait returns the same status.
    pub fn kill(&mut self) -> io::Result<()> {
        // Polled first: std would signal the pid even after another waitpid reaped the
        // child. The signal then goes through the pidfd where there is one, so that a
        // steal after the poll cannot turn it to the pid's new holder.
        match self.try_wait() {
            Ok(Some(_)) => Ok(()),
            Ok(None) if self.lent => self.std().kill(),
            Ok(None) => match self.identity.kill() {
                // Other code reaped the child between the poll and the signal: it ends
                // as for a wait that found it gone.
                Some(Err(error)) if error.raw_os_error() == Some(NO_SUCH_PROCESS) => {
                    let _ = self.failed(gone(NO_CHILD));
                    Err(error)
                }
                Some(result) => result,
                None => self.std().kill(),
            },
            Err(error) if error.raw_os_error() == Some(NO_CHILD) => Err(gone(NO_SUCH_PROCESS)),
            Err(error) => Err(error),
        }
    }

    /// Waits for the child to exit, as [`std::process::Child::wait`]; the first time it
    /// collects the status, the `exit` and `free` watchers run.
    ///
    /// Should other code have collected the status first (a `waitpid` of its own, or
    /// `SIGCHLD` ignored so that the kernel reaps children), the OS says this is no
    /// child of ours (`ECHILD`): that error is returned, now and by every later wait,
    /// and the task exits with [`watchers_core::ExitStatus::UNKNOWN`] and is freed. On
    /// Linux this holds even if the OS gave the pid to a new child of this program
    /// since: a pidfd opened at the spawn tells the child from the pid's new holder
    /// (unless the std child was lent out with [`as_std_mut`](Child::as_std_mut)). It is
    /// asked just before std's wait by pid, so a steal and a reuse of the pid that both
    /// land between those two calls still escape it.
    ///
    /// # Errors
    /// As [`std::process::Child::wait`].
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        if self.lost {
            return Err(gone(NO_CHILD));
        }
        if self.look() == Look::ReapedElsewhere {
            return Err(self.failed(gone(NO_CHILD)));
        }
        match self.std().wait() {
            Ok(status) => {
                self.report(to_task_status(status));
                Ok(status)
            }
            Err(error) => Err(self.failed(error)),
        }
    }

    /// Collects the status if the child has exited, as
    /// [`std::process::Child::try_wait`]; the first time it does, the `exit` and `free`
    /// watchers run. A status that other code collected is an error, as for
    /// [`wait`](Child::wait).
    ///
    /// # Errors
    /// As [`std::process::Child::try_wait`].
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.lost {
            return Err(gone(NO_CHILD));
        }
        match self.look() {
            Look::ReapedElsewhere => return Err(self.failed(gone(NO_CHILD))),
            // The look already made the poll std's would make.
            Look::Running => return Ok(None),
            Look::AskStd => {}
        }
        match self.std().try_wait() {
            Ok(status) => {
                if let Some(status) = status {
                    self.report(to_task_status(status));
                }
                Ok(status)
            }
            Err(error) => Err(self.failed(error)),
        }
    }

    /// A wait failed: if the child is no longer ours, its end is reported, with the
    /// status nobody can learn any more.
    fn failed(&mut self, error: io::Error) -> io::Error {
        if error.raw_os_error() == Some(NO_CHILD) {
            self.lost = true;
            self.report(watchers_core::ExitStatus::UNKNOWN);
        }
        error
    }

    /// Reads the child's output to the end and waits, as
    /// [`std::process::Child::wait_with_output`]; the first time it collects the
    /// status, the `exit` and `free` watchers run.
    ///
    /// # Errors
    /// As [`std::process::Child::wait_with_output`]. The `Child` is then dropped: its
    /// task still gets `exit` and `free` as for any dropped child.
    pub fn wait_with_output(mut self) -> io::Result<Output> {
        // Not std's own `wait_with_output`, which consumes the std child: on an error
        // nothing would be left to reap it and report its end.
        let child = self.std();
        drop(child.stdin.take());
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let (stdout, stderr) = std::thread::scope(|scope| -> io::Result<_> {
            // Both pipes are drained at once, so that a child blocked on a full one
            // cannot keep the other from ending.
            let stderr = match stderr {
                Some(pipe) => Some(
                    std::thread::Builder::new()
                        .name("watchers-stderr".into())
                        .spawn_scoped(scope, move || read_all(Some(pipe)))?,
                ),
                None => None,
            };
            let stdout = read_all(stdout);
            let stderr = match stderr {
                Some(reader) => reader
                    .join()
                    .unwrap_or_else(|payload| std::panic::resume_unwind(payload)),
                None => Ok(Vec::new()),
            };
            Ok((stdout?, stderr?))
        })?;
        let status = self.wait()?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    fn report(&mut self, status: watchers_core::ExitStatus) {
        if !self.reported {
            self.reported = true;
            // std keeps the status from now on; the pidfd's descriptor is given back.
            self.identity = Identity::Unknown;
            self.source.finish(&self.task, status);
        }
    }
}

/// Everything left to read from `pipe` (nothing if there is none).
fn read_all(pipe: Option<impl Read>) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if let Some(mut pipe) = pipe {
        pipe.read_to_end(&mut bytes)?;
    }
    Ok(bytes)
}

impl Drop for Child {
    fn drop(&mut self) {
        // Watchers may panic, which must not happen while a panic unwinds: the reaper
        // thread then reports even a child that has already exited.
        if !std::thread::panicking() {
            let _ = self.try_wait();
        }
        if self.reported {
            return;
        }
        let Some(child) = self.inner.take() else {
            return;
        };
        let identity = if self.lent {
            Identity::Unknown
        } else {
            std::mem::replace(&mut self.identity, Identity::Unknown)
        };
        self.source
            .reaper()
            .adopt(self.source, child, identity, self.task.clone());
    }
}
