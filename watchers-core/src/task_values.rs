//! A task's plain values: ids, clone flags, life state, exit status and name length.
//! They depend on nothing else in the crate, so events, errors and the task itself
//! can all use them.

use std::fmt;

/// A process or thread id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(transparent)]
pub struct Pid(pub u32);

impl Pid {
    /// The init task's pid.
    pub const INIT: Pid = Pid(1);

    /// The number.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<u32> for Pid {
    fn from(pid: u32) -> Pid {
        Pid(pid)
    }
}

/// One kind of id (user or group) as the kernel keeps it: real, effective, saved and
/// filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Ids {
    /// The real id.
    pub real: u32,
    /// The effective id (used for permission checks).
    pub effective: u32,
    /// The saved set-id.
    pub saved: u32,
    /// The filesystem id (follows the effective id unless set on its own).
    pub fs: u32,
}

impl Ids {
    /// All four ids equal to `id`.
    pub const fn all(id: u32) -> Ids {
        Ids {
            real: id,
            effective: id,
            saved: id,
            fs: id,
        }
    }
}

impl fmt::Display for Ids {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.real == self.effective && self.real == self.saved && self.real == self.fs {
            write!(f, "{}", self.real)
        } else {
            write!(
                f,
                "{}/{}/{}/{}",
                self.real, self.effective, self.saved, self.fs
            )
        }
    }
}

bitflags::bitflags! {
    /// The `clone(2)` flags the task model understands. The values are the kernel's.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct CloneFlags: u64 {
        /// Share the address space.
        const VM = 0x0000_0100;
        /// Share filesystem information.
        const FS = 0x0000_0200;
        /// Share the file descriptor table.
        const FILES = 0x0000_0400;
        /// Share signal handlers.
        const SIGHAND = 0x0000_0800;
        /// Let the tracer keep tracing the child.
        const PTRACE = 0x0000_2000;
        /// Same parent as the caller.
        const PARENT = 0x0000_8000;
        /// Same thread group as the caller: the child is a thread.
        const THREAD = 0x0001_0000;
        /// Share System V semaphore undo lists.
        const SYSVSEM = 0x0004_0000;
    }
}

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TaskState {
    /// Being forked: fork watchers are running; nobody else can see it.
    Embryo = 0,
    /// Alive.
    Running = 1,
    /// Its exit watchers are running.
    Exiting = 2,
    /// Exited, waiting to be reaped.
    Zombie = 3,
    /// Reaped: `free` was sent, the pid may be reused.
    Dead = 4,
}

impl TaskState {
    pub(crate) fn from_u8(value: u8) -> TaskState {
        match value {
            0 => TaskState::Embryo,
            1 => TaskState::Running,
            2 => TaskState::Exiting,
            3 => TaskState::Zombie,
            _ => TaskState::Dead,
        }
    }
}

/// The longest task name, as the kernel's `TASK_COMM_LEN - 1`.
pub const COMM_MAX: usize = 15;

/// A task's exit status in the `wait(2)` encoding: the exit code in bits 8..16, or the
/// terminating signal in bits 0..7.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExitStatus(pub i32);

impl ExitStatus {
    /// A normal exit with `code` (only its low 8 bits survive, as with `exit(3)`).
    pub const fn exited(code: i32) -> ExitStatus {
        ExitStatus((code & 0xff) << 8)
    }

    /// Death by `signal`, 1 to 126 (only its low 7 bits survive, as in a `wait(2)`
    /// status, where 127 marks a stopped or continued task: `signaled(127)` has neither
    /// a code nor a [`signal`](ExitStatus::signal)).
    pub const fn signaled(signal: i32) -> ExitStatus {
        ExitStatus(signal & 0x7f)
    }

    /// The exit code, if the task exited normally.
    pub const fn code(self) -> Option<i32> {
        if self.0 & 0x7f == 0 {
            Some((self.0 >> 8) & 0xff)
        } else {
            None
        }
    }

    /// The terminating signal, if the task was killed by one.
    pub const fn signal(self) -> Option<i32> {
        match self.0 & 0x7f {
            // 0x7f marks a stopped or continued task (`WIFSTOPPED`, `WIFCONTINUED`), as
            // in [`UNKNOWN`](ExitStatus::UNKNOWN): no signal ended it.
            0 | 0x7f => None,
            signal => Some(signal),
        }
    }

    /// The status of a task whose real status nobody could learn: a child process
    /// whose status other code collected first (a `waitpid` of its own, or `SIGCHLD`
    /// ignored so that the kernel reaped it). Neither an exit code nor a signal: it is
    /// the `wait(2)` encoding of a continued task, which no ended task has.
    ///
    /// ```
    /// use watchers_core::ExitStatus;
    ///
    /// let lost = ExitStatus::UNKNOWN;
    /// assert_eq!((lost.code(), lost.signal(), lost.core_dumped()), (None, None, false));
    /// assert_eq!(lost.to_string(), "unknown status");
    /// ```
    pub const UNKNOWN: ExitStatus = ExitStatus(0xffff);
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code(), self.signal()) {
            (Some(code), _) => write!(f, "exit code {code}"),
            (None, Some(signal)) => write!(f, "killed by signal {signal}"),
            (None, None) if *self == ExitStatus::UNKNOWN => f.write_str("unknown status"),
            (None, None) => write!(f, "status {:#x}", self.0),
        }
    }
}

/// A task name held in place: at most [`COMM_MAX`] bytes, cut on a character
/// boundary. Copying one costs no allocation, which matters on a thread's fork, where a
/// `String` cost a `malloc` and a `free` per thread.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Comm {
    len: u8,
    bytes: [u8; COMM_MAX],
}

impl Comm {
    /// `name` cut to [`COMM_MAX`] bytes.
    pub(crate) fn new(name: &str) -> Comm {
        let name = truncate_comm(name).as_bytes();
        let mut bytes = [0; COMM_MAX];
        bytes[..name.len()].copy_from_slice(name);
        Comm {
            // At most COMM_MAX (15), so it fits.
            len: name.len() as u8,
            bytes,
        }
    }

    /// The name.
    pub(crate) fn as_str(&self) -> &str {
        match std::str::from_utf8(&self.bytes[..usize::from(self.len)]) {
            Ok(name) => name,
            Err(_) => unreachable!("a comm is a &str cut on a character boundary"),
        }
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_str().fmt(f)
    }
}

/// Cuts a name to at most [`COMM_MAX`] bytes on a character boundary.
pub(crate) fn truncate_comm(comm: &str) -> &str {
    if comm.len() <= COMM_MAX {
        return comm;
    }
    let mut end = COMM_MAX;
    while !comm.is_char_boundary(end) {
        end -= 1;
    }
    &comm[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_1_to_126_are_kept_and_127_is_neither_a_signal_nor_a_code() {
        for signal in 1..=126 {
            let status = ExitStatus::signaled(signal);
            assert_eq!((status.code(), status.signal()), (None, Some(signal)));
        }
        let marker = ExitStatus::signaled(127);
        assert_eq!((marker.code(), marker.signal()), (None, None));
        assert_ne!(marker, ExitStatus::UNKNOWN);
        assert_eq!(marker.to_string(), "status 0x7f");
    }

    #[test]
    fn comm_is_cut_to_fifteen_bytes_on_a_char_boundary() {
        assert_eq!(truncate_comm("short"), "short");
        assert_eq!(truncate_comm("0123456789abcdefgh"), "0123456789abcde");
        // 'é' is two bytes; byte 15 falls inside the eighth one.
        assert_eq!(truncate_comm("ééééééééé"), "ééééééé");
    }

    #[test]
    fn an_inline_comm_keeps_what_truncate_comm_keeps() {
        for name in [
            "",
            "short",
            "0123456789abcdefgh",
            "ééééééééé",
            "0123456789abcde",
        ] {
            assert_eq!(Comm::new(name).as_str(), truncate_comm(name));
        }
    }
}
