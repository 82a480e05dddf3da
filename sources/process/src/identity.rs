//! Whether a child's pid still names that child: a pid that other code reaped may be
//! handed to a new process, and a wait or signal by pid would then reach that one.
//!
//! On Linux a pidfd, opened right after the spawn, names the process itself: `waitid` on
//! it says "no child" (`ECHILD`) once other code has reaped the child, whatever process
//! holds the pid by then. Elsewhere (or should the pidfd not open) nothing can be told.

#[cfg(any(target_os = "linux", target_os = "android"))]
use std::os::fd::{FromRawFd, OwnedFd};

/// What the source knows of a child's identity.
#[derive(Debug)]
pub(crate) enum Identity {
    /// Nothing: the pid is trusted, as std does.
    Unknown,
    /// A pidfd of the child.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    Held(OwnedFd),
    /// Other code reaped the child before its pidfd could be opened.
    Reaped,
}

impl Identity {
    /// The identity of the child `pid`, just spawned and not yet waited for by us.
    pub(crate) fn of(pid: u32) -> Identity {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let Ok(pid) = libc::pid_t::try_from(pid) else {
                return Identity::Unknown;
            };
            // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
            // (close-on-exec) or -1; it touches no memory of ours.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
            match i32::try_from(fd) {
                // SAFETY: the descriptor was just opened and nothing else owns it.
                Ok(fd) if fd >= 0 => Identity::Held(unsafe { OwnedFd::from_raw_fd(fd) }),
                // The pid names no process: the child is gone, reaped by other code
                // (nobody else holds a `Child` of it).
                _ if std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) => {
                    Identity::Reaped
                }
                // No pidfds (an old kernel) or no descriptor left: the pid is trusted.
                _ => Identity::Unknown,
            }
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            let _ = pid;
            Identity::Unknown
        }
    }

    /// Sends `SIGKILL` through the pidfd, which reaches the child itself or nobody:
    /// `None` if there is no pidfd (or the kernel cannot signal one, before Linux 5.1),
    /// for the caller to signal by pid. "No such process" once other code reaped it.
    pub(crate) fn kill(&self) -> Option<std::io::Result<()>> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Identity::Held(fd) = self {
            use std::os::fd::AsRawFd;
            // SAFETY: pidfd_send_signal takes a descriptor, a signal, a null siginfo (as
            // kill(2) would fill it) and flags; it touches no memory of ours.
            let result = unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
            if result == 0 {
                return Some(Ok(()));
            }
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::ENOSYS) {
                return Some(Err(error));
            }
        }
        None
    }

    /// What the pidfd tells of the child. Only meaningful while no wait of ours
    /// collected the child's status.
    pub(crate) fn look(&self) -> Look {
        match self {
            Identity::Unknown => Look::AskStd,
            Identity::Reaped => Look::ReapedElsewhere,
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Identity::Held(fd) => {
                use std::os::fd::AsRawFd;
                let Ok(id) = libc::id_t::try_from(fd.as_raw_fd()) else {
                    return Look::AskStd;
                };
                // SAFETY: a zeroed siginfo_t is a valid value for waitid to write into.
                let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
                // SAFETY: waitid writes only into `info`, owned here; WNOWAIT leaves an
                // exited child to be reaped by its wait, WNOHANG returns at once.
                let result = unsafe {
                    libc::waitid(
                        libc::P_PIDFD,
                        id,
                        &mut info,
                        libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
                    )
                };
                if result == 0 {
                    // SAFETY: `info` was zeroed and waitid filled it, if at all, for a
                    // child's state change, where si_pid is the field set.
                    let exited = unsafe { info.si_pid() } != 0;
                    return if exited { Look::AskStd } else { Look::Running };
                }
                // Other errors (no P_PIDFD before Linux 5.4) tell nothing.
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
                    Look::ReapedElsewhere
                } else {
                    Look::AskStd
                }
            }
        }
    }

    /// Whether other code has reaped the child, so that its pid may name another
    /// process by now. False when that cannot be told.
    pub(crate) fn reaped_elsewhere(&self) -> bool {
        self.look() == Look::ReapedElsewhere
    }
}

/// What a look through the pidfd tells of a child not yet waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Look {
    /// Other code reaped it: its pid may name another process by now.
    ReapedElsewhere,
    /// It has not exited: a poll by pid would only say the same, so none is made.
    Running,
    /// It has exited and waits for our wait, or nothing could be told: std's wait by
    /// pid is asked.
    AskStd,
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::{Identity, Look};

    #[test]
    fn a_look_tells_running_from_exited_from_reaped_elsewhere() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read line"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let identity = Identity::of(child.id());
        assert_eq!(identity.look(), Look::Running);
        drop(child.stdin.take());
        // Exited but not reaped: std's wait is the one to collect it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while identity.look() == Look::Running {
            assert!(
                std::time::Instant::now() < deadline,
                "the child never exited"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(identity.look(), Look::AskStd);
        // `read` at end of input fails.
        assert_eq!(child.wait().unwrap().code(), Some(1));
        assert_eq!(identity.look(), Look::ReapedElsewhere);
    }

    #[test]
    fn a_kill_through_the_pidfd_reaches_the_child_and_nobody_once_it_is_reaped() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let identity = Identity::of(child.id());
        assert!(matches!(identity, Identity::Held(_)));
        assert!(matches!(identity.kill(), Some(Ok(()))));
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        // Reaped: the pidfd names no process any more, whatever holds the pid.
        assert!(identity.reaped_elsewhere());
        match identity.kill() {
            Some(Err(error)) => assert_eq!(error.raw_os_error(), Some(libc::ESRCH)),
            other => panic!("a kill after the reaping must fail with ESRCH: {other:?}"),
        }
    }
}
