//! Reaps children dropped before they exited, so that they never stay zombies and their
//! tasks get `exit` and `free`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use watchers_core::{ExitStatus, Task};

use crate::identity::{Identity, Look};
use crate::processes::Processes;
use crate::to_task_status;

/// How often the reaper looks at children that are still running. Polling keeps it
/// from blocking on one child while others exit, with no signal handler and no
/// `waitpid(-1)` that would steal other code's children.
const POLL: Duration = Duration::from_millis(5);

#[derive(Default)]
pub(crate) struct Reaper {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    children: Vec<(std::process::Child, Identity, Arc<Task>)>,
    running: bool,
}

impl Reaper {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a list and a flag, consistent between statements.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn pending(&self) -> usize {
        self.lock().children.len()
    }

    /// Takes a child to reap, starting the reaper thread on first need. Should no
    /// thread be available, the child is waited for here.
    pub(crate) fn adopt(
        &self,
        source: &'static Processes,
        mut child: std::process::Child,
        identity: Identity,
        task: Arc<Task>,
    ) {
        let mut state = self.lock();
        if !state.running {
            let started = std::thread::Builder::new()
                .name("watchers-reaper".into())
                .spawn(move || source.reaper().run(source));
            if started.is_err() {
                drop(state);
                let status = if identity.reaped_elsewhere() {
                    ExitStatus::UNKNOWN
                } else {
                    child.wait().map_or(ExitStatus::UNKNOWN, to_task_status)
                };
                source.finish(&task, status);
                return;
            }
            state.running = true;
        }
        state.children.push((child, identity, task));
        drop(state);
        self.wake.notify_one();
    }

    fn run(&self, source: &'static Processes) {
        loop {
            let mut state = self.lock();
            while state.children.is_empty() {
                state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            let mut done = Vec::new();
            state.children.retain_mut(|(child, identity, task)| {
                // Asked first: std waits by pid, which may be another child's by now.
                // A child seen running needs no second poll by pid.
                match identity.look() {
                    Look::ReapedElsewhere => {
                        done.push((task.clone(), ExitStatus::UNKNOWN));
                        return false;
                    }
                    Look::Running => return true,
                    Look::AskStd => {}
                }
                match child.try_wait() {
                    Ok(Some(status)) => {
                        done.push((task.clone(), to_task_status(status)));
                        false
                    }
                    Ok(None) => true,
                    // Someone else reaped it (a `waitpid(-1)` elsewhere, or the kernel
                    // with `SIGCHLD` ignored): its status is lost, and so reported, so
                    // that it is still freed.
                    Err(_) => {
                        done.push((task.clone(), ExitStatus::UNKNOWN));
                        false
                    }
                }
            });
            let waiting = !state.children.is_empty();
            drop(state);
            for (task, status) in done {
                // A panicking watcher must not end the reaper; the table counts failures.
                let _ = catch_unwind(AssertUnwindSafe(|| source.finish(&task, status)));
            }
            if waiting {
                std::thread::sleep(POLL);
            }
        }
    }
}
