//! The wire format of the kernel's process-events connector (`linux/cn_proc.h`,
//! `linux/connector.h`), in plain Rust: no `libc`, no `unsafe`, available on every
//! platform.
//!
//! A process event travels as a netlink message (`nlmsghdr`, type `NLMSG_DONE`), whose
//! payload is a connector message (`struct cn_msg`: id `{CN_IDX_PROC, CN_VAL_PROC}`, a
//! sequence number, an ack, the payload length), whose payload is a `struct proc_event`:
//!
//! | offset | field | type |
//! | --- | --- | --- |
//! | 0 | `what` | `u32` ([`what`] values) |
//! | 4 | `cpu` | `u32` |
//! | 8 | `timestamp_ns` | `u64` (nanoseconds since boot) |
//! | 16 | `event_data` | a union, [`PROC_EVENT_DATA_LEN`] bytes |
//!
//! All integers are in native byte order. The union is as large as its largest members
//! (`comm`: two pids and 16 name bytes; `exit`: six 32-bit fields), 24 bytes, so the
//! kernel sends [`PROC_EVENT_LEN`] = 40 bytes of event after the 20-byte `cn_msg` header.
//! Inside a datagram the event starts at offset 36, which is not 8-aligned: every field
//! here is copied out with `from_ne_bytes`, never read through a cast pointer.
//!
//! Decoding is bounds-checked everywhere and never panics: a short, long, foreign or
//! unknown message is a [`DecodeError`].
//!
//! ```
//! use watchers_proc_connector::cn_proc::{self, ProcEvent};
//!
//! let fork = ProcEvent::Fork { parent_pid: 1, parent_tgid: 1, child_pid: 42, child_tgid: 42 };
//! let bytes = cn_proc::encode(&fork, 7, 0, 123_456);
//! let message = cn_proc::decode(&bytes).unwrap();
//! assert_eq!(message.event, fork);
//! assert_eq!(message.header.seq, 7);
//! assert_eq!(message.event.event_kind(), Some(watchers_core::EventKind::Fork));
//! ```
// "No `unsafe`" above is the compiler's to keep.
#![forbid(unsafe_code)]

use std::fmt;

use watchers_core::{EventKind, EventSet, ExitStatus};

/// The connector index of process events (`CN_IDX_PROC`).
pub const CN_IDX_PROC: u32 = 1;
/// The connector value of process events (`CN_VAL_PROC`).
pub const CN_VAL_PROC: u32 = 1;
/// The netlink multicast group to join for process events (equal to [`CN_IDX_PROC`]).
pub const CN_PROC_GROUP: u32 = CN_IDX_PROC;

/// `PROC_CN_MCAST_LISTEN`: start receiving process events.
pub const PROC_CN_MCAST_LISTEN: u32 = 1;
/// `PROC_CN_MCAST_IGNORE`: stop receiving process events.
pub const PROC_CN_MCAST_IGNORE: u32 = 2;

/// The `what` values of `struct proc_event` (`enum proc_cn_event`). Each is one bit, so
/// they double as a filter mask ([`ProcEventMask`]).
pub mod what {
    /// No event: the kernel's acknowledgement of a subscribe request.
    pub const NONE: u32 = 0x0000_0000;
    /// A task forked (a process or a thread).
    pub const FORK: u32 = 0x0000_0001;
    /// A task executed a new program.
    pub const EXEC: u32 = 0x0000_0002;
    /// A task's user ids changed.
    pub const UID: u32 = 0x0000_0004;
    /// A task's group ids changed.
    pub const GID: u32 = 0x0000_0040;
    /// A task started a new session.
    pub const SID: u32 = 0x0000_0080;
    /// A tracer attached or detached.
    pub const PTRACE: u32 = 0x0000_0100;
    /// A task's name changed.
    pub const COMM: u32 = 0x0000_0200;
    /// Filter only (kernels 6.6+): report exits only when the exit code is non-zero.
    /// Never the `what` of a message.
    pub const NONZERO_EXIT: u32 = 0x2000_0000;
    /// A task dumped core.
    pub const COREDUMP: u32 = 0x4000_0000;
    /// A task exited.
    pub const EXIT: u32 = 0x8000_0000;
}

/// `sizeof(struct cn_msg)`: the connector header before the payload.
pub const CN_MSG_HEADER_LEN: usize = 20;
/// The fixed part of `struct proc_event` before the union: `what`, `cpu`, `timestamp_ns`.
pub const PROC_EVENT_HEADER_LEN: usize = 16;
/// `sizeof(proc_event.event_data)`: the union, as large as its `comm` and `exit` members.
pub const PROC_EVENT_DATA_LEN: usize = 24;
/// `sizeof(struct proc_event)`: what the kernel puts in `cn_msg.len`.
pub const PROC_EVENT_LEN: usize = PROC_EVENT_HEADER_LEN + PROC_EVENT_DATA_LEN;
/// `sizeof(struct proc_input)`: the filtered subscribe request (kernels 6.6+).
pub const PROC_INPUT_LEN: usize = 8;
/// The length of a task name in a `comm` event (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// Netlink framing, as much as a process-events listener needs (`linux/netlink.h`).
pub mod netlink {
    /// `sizeof(struct nlmsghdr)` (already `NLMSG_ALIGN`ed).
    pub const NLMSG_HDRLEN: usize = 16;
    /// Message alignment (`NLMSG_ALIGNTO`).
    pub const NLMSG_ALIGNTO: usize = 4;
    /// Nothing; skip it.
    pub const NLMSG_NOOP: u16 = 1;
    /// An error (or an ack when the error is 0), followed by the offending header.
    pub const NLMSG_ERROR: u16 = 2;
    /// End of a multipart message. The connector sends **every** message with this type.
    pub const NLMSG_DONE: u16 = 3;
    /// Data lost.
    pub const NLMSG_OVERRUN: u16 = 4;
    /// The first type that protocols may use for their own messages.
    pub const NLMSG_MIN_TYPE: u16 = 0x10;

    /// `NLMSG_ALIGN(len)`, saturating instead of overflowing.
    pub const fn align(len: usize) -> usize {
        match len.checked_add(NLMSG_ALIGNTO - 1) {
            Some(sum) => sum & !(NLMSG_ALIGNTO - 1),
            None => usize::MAX & !(NLMSG_ALIGNTO - 1),
        }
    }
}

/// Why bytes could not be decoded as a process-events message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the structure needs.
    #[error("truncated {what}: {needed} bytes needed, {got} present")]
    Truncated {
        /// Which structure.
        what: &'static str,
        /// Bytes it needs.
        needed: usize,
        /// Bytes there were.
        got: usize,
    },
    /// More bytes than `struct proc_event` can hold.
    #[error("oversized proc_event: at most {max} bytes expected, {got} present")]
    Oversized {
        /// The largest accepted size.
        max: usize,
        /// Bytes there were.
        got: usize,
    },
    /// A length field pointing past the end of the buffer, or shorter than its header.
    #[error("bad {what} length {declared} ({available} bytes available)")]
    BadLength {
        /// Which structure.
        what: &'static str,
        /// The length the message declares.
        declared: usize,
        /// The bytes actually available.
        available: usize,
    },
    /// A connector message that is not for process events.
    #[error("connector id {idx}/{val} is not process events ({CN_IDX_PROC}/{CN_VAL_PROC})")]
    WrongConnector {
        /// `cn_msg.id.idx`.
        idx: u32,
        /// `cn_msg.id.val`.
        val: u32,
    },
    /// A `what` value this crate does not know.
    #[error("unknown proc_event `what` {0:#010x}")]
    UnknownWhat(u32),
}

/// Copies `N` bytes at `offset` out of `bytes`, or reports a truncation.
fn take<const N: usize>(
    bytes: &[u8],
    offset: usize,
    what: &'static str,
) -> Result<[u8; N], DecodeError> {
    let truncated = || DecodeError::Truncated {
        what,
        needed: offset.saturating_add(N),
        got: bytes.len(),
    };
    let end = offset.checked_add(N).ok_or_else(truncated)?;
    let slice = bytes.get(offset..end).ok_or_else(truncated)?;
    let mut out = [0u8; N];
    out.copy_from_slice(slice);
    Ok(out)
}

fn u16_at(bytes: &[u8], offset: usize, what: &'static str) -> Result<u16, DecodeError> {
    take::<2>(bytes, offset, what).map(u16::from_ne_bytes)
}

fn u32_at(bytes: &[u8], offset: usize, what: &'static str) -> Result<u32, DecodeError> {
    take::<4>(bytes, offset, what).map(u32::from_ne_bytes)
}

fn i32_at(bytes: &[u8], offset: usize, what: &'static str) -> Result<i32, DecodeError> {
    take::<4>(bytes, offset, what).map(i32::from_ne_bytes)
}

fn u64_at(bytes: &[u8], offset: usize, what: &'static str) -> Result<u64, DecodeError> {
    take::<8>(bytes, offset, what).map(u64::from_ne_bytes)
}

/// `struct cn_msg` without its payload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CnMsgHeader {
    /// `id.idx`: which connector ([`CN_IDX_PROC`]).
    pub idx: u32,
    /// `id.val`: which value of it ([`CN_VAL_PROC`]).
    pub val: u32,
    /// Sequence number. For process events, a per-CPU counter; for the kernel's reply to
    /// a subscribe request, see [`ack`](Self::ack).
    pub seq: u32,
    /// For the kernel's reply to a subscribe request: the request's `ack` plus one.
    pub ack: u32,
    /// Payload length.
    pub len: u16,
    /// Unused by process events.
    pub flags: u16,
}

impl CnMsgHeader {
    /// A process-events header with this sequence number, ack and payload length.
    pub const fn proc(seq: u32, ack: u32, len: u16) -> CnMsgHeader {
        CnMsgHeader {
            idx: CN_IDX_PROC,
            val: CN_VAL_PROC,
            seq,
            ack,
            len,
            flags: 0,
        }
    }

    /// Appends the 20 header bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.idx.to_ne_bytes());
        out.extend_from_slice(&self.val.to_ne_bytes());
        out.extend_from_slice(&self.seq.to_ne_bytes());
        out.extend_from_slice(&self.ack.to_ne_bytes());
        out.extend_from_slice(&self.len.to_ne_bytes());
        out.extend_from_slice(&self.flags.to_ne_bytes());
    }

    /// Reads the header at the start of `bytes` (any connector id).
    pub fn decode(bytes: &[u8]) -> Result<CnMsgHeader, DecodeError> {
        const WHAT: &str = "cn_msg";
        Ok(CnMsgHeader {
            idx: u32_at(bytes, 0, WHAT)?,
            val: u32_at(bytes, 4, WHAT)?,
            seq: u32_at(bytes, 8, WHAT)?,
            ack: u32_at(bytes, 12, WHAT)?,
            len: u16_at(bytes, 16, WHAT)?,
            flags: u16_at(bytes, 18, WHAT)?,
        })
    }

    /// Whether the id is `{CN_IDX_PROC, CN_VAL_PROC}`.
    pub const fn is_proc(&self) -> bool {
        self.idx == CN_IDX_PROC && self.val == CN_VAL_PROC
    }
}

/// One process event, typed. Pids are the kernel's `__kernel_pid_t` (`i32`), in the
/// initial pid namespace; `pid` is the thread id, `tgid` the process id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProcEvent {
    /// `PROC_EVENT_NONE`: the kernel's answer to a subscribe request; `err` is 0 on
    /// success or a positive errno.
    Ack {
        /// 0, or the errno of the refusal.
        err: u32,
    },
    /// `PROC_EVENT_FORK`: `child` was created by `parent` (a thread when
    /// `child_pid != child_tgid`).
    Fork {
        /// The forking thread.
        parent_pid: i32,
        /// Its process.
        parent_tgid: i32,
        /// The new thread.
        child_pid: i32,
        /// Its process.
        child_tgid: i32,
    },
    /// `PROC_EVENT_EXEC`.
    Exec {
        /// The thread.
        pid: i32,
        /// Its process.
        tgid: i32,
    },
    /// `PROC_EVENT_UID`: new real and effective user ids.
    Uid {
        /// The thread.
        pid: i32,
        /// Its process.
        tgid: i32,
        /// New real uid.
        ruid: u32,
        /// New effective uid.
        euid: u32,
    },
    /// `PROC_EVENT_GID`: new real and effective group ids.
    Gid {
        /// The thread.
        pid: i32,
        /// Its process.
        tgid: i32,
        /// New real gid.
        rgid: u32,
        /// New effective gid.
        egid: u32,
    },
    /// `PROC_EVENT_SID`: the task started a session.
    Sid {
        /// The thread.
        pid: i32,
        /// Its process.
        tgid: i32,
    },
    /// `PROC_EVENT_PTRACE`: a tracer attached (`tracer_pid != 0`) or detached (0).
    Ptrace {
        /// The traced thread.
        pid: i32,
        /// Its process.
        tgid: i32,
        /// The tracer, or 0 on detach.
        tracer_pid: i32,
        /// The tracer's process, or 0 on detach.
        tracer_tgid: i32,
    },
    /// `PROC_EVENT_COMM`: the task's name is now `comm` (NUL padded).
    Comm {
        /// The thread.
        pid: i32,
        /// Its process.
        tgid: i32,
        /// The new name, NUL padded; see [`comm_str`].
        comm: [u8; COMM_LEN],
    },
    /// `PROC_EVENT_COREDUMP`. The event does not say which signal caused the dump.
    Coredump {
        /// The thread.
        pid: i32,
        /// Its process.
        tgid: i32,
        /// Its parent thread (0 on old kernels).
        parent_pid: i32,
        /// Its parent process (0 on old kernels).
        parent_tgid: i32,
    },
    /// `PROC_EVENT_EXIT`.
    Exit {
        /// The thread.
        pid: i32,
        /// Its process.
        tgid: i32,
        /// `task->exit_code`, in the `wait(2)` encoding ([`ExitStatus`]).
        exit_code: u32,
        /// The signal the parent is sent (`SIGCHLD` usually, `-1` as `u32` for threads).
        exit_signal: u32,
        /// Its parent thread (0 on old kernels).
        parent_pid: i32,
        /// Its parent process (0 on old kernels).
        parent_tgid: i32,
    },
}

/// The name in a `comm` event, up to the first NUL, with invalid UTF-8 replaced.
pub fn comm_str(comm: &[u8; COMM_LEN]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

/// A name as the 16 NUL-padded bytes of a `comm` event (truncated to 15 bytes, like the
/// kernel does).
pub fn comm_bytes(name: &str) -> [u8; COMM_LEN] {
    let mut out = [0u8; COMM_LEN];
    let bytes = name.as_bytes();
    let n = bytes.len().min(COMM_LEN - 1);
    out[..n].copy_from_slice(&bytes[..n]);
    out
}

impl ProcEvent {
    /// The kernel's `what` value for this event.
    pub const fn what(&self) -> u32 {
        match self {
            ProcEvent::Ack { .. } => what::NONE,
            ProcEvent::Fork { .. } => what::FORK,
            ProcEvent::Exec { .. } => what::EXEC,
            ProcEvent::Uid { .. } => what::UID,
            ProcEvent::Gid { .. } => what::GID,
            ProcEvent::Sid { .. } => what::SID,
            ProcEvent::Ptrace { .. } => what::PTRACE,
            ProcEvent::Comm { .. } => what::COMM,
            ProcEvent::Coredump { .. } => what::COREDUMP,
            ProcEvent::Exit { .. } => what::EXIT,
        }
    }

    /// The watcher event this kernel event becomes, `None` for an [`Ack`](Self::Ack).
    /// (An `exit` also leads to a `free` in a mirror of the kernel's tasks.)
    pub const fn event_kind(&self) -> Option<EventKind> {
        match self {
            ProcEvent::Ack { .. } => None,
            ProcEvent::Fork { .. } => Some(EventKind::Fork),
            ProcEvent::Exec { .. } => Some(EventKind::Exec),
            ProcEvent::Uid { .. } => Some(EventKind::Uid),
            ProcEvent::Gid { .. } => Some(EventKind::Gid),
            ProcEvent::Sid { .. } => Some(EventKind::Sid),
            ProcEvent::Ptrace { .. } => Some(EventKind::Ptrace),
            ProcEvent::Comm { .. } => Some(EventKind::Comm),
            ProcEvent::Coredump { .. } => Some(EventKind::Coredump),
            ProcEvent::Exit { .. } => Some(EventKind::Exit),
        }
    }

    /// The thread the event concerns (the child, for a fork); `None` for an ack.
    pub const fn pid(&self) -> Option<i32> {
        match *self {
            ProcEvent::Ack { .. } => None,
            ProcEvent::Fork { child_pid, .. } => Some(child_pid),
            ProcEvent::Exec { pid, .. }
            | ProcEvent::Uid { pid, .. }
            | ProcEvent::Gid { pid, .. }
            | ProcEvent::Sid { pid, .. }
            | ProcEvent::Ptrace { pid, .. }
            | ProcEvent::Comm { pid, .. }
            | ProcEvent::Coredump { pid, .. }
            | ProcEvent::Exit { pid, .. } => Some(pid),
        }
    }

    /// The process (thread group) the event concerns (the child's, for a fork).
    pub const fn tgid(&self) -> Option<i32> {
        match *self {
            ProcEvent::Ack { .. } => None,
            ProcEvent::Fork { child_tgid, .. } => Some(child_tgid),
            ProcEvent::Exec { tgid, .. }
            | ProcEvent::Uid { tgid, .. }
            | ProcEvent::Gid { tgid, .. }
            | ProcEvent::Sid { tgid, .. }
            | ProcEvent::Ptrace { tgid, .. }
            | ProcEvent::Comm { tgid, .. }
            | ProcEvent::Coredump { tgid, .. }
            | ProcEvent::Exit { tgid, .. } => Some(tgid),
        }
    }

    /// For an exit, its status in the `wait(2)` encoding.
    pub const fn exit_status(&self) -> Option<ExitStatus> {
        match *self {
            ProcEvent::Exit { exit_code, .. } => Some(ExitStatus(exit_code as i32)),
            _ => None,
        }
    }

    /// Writes the 24-byte union.
    fn encode_data(&self) -> [u8; PROC_EVENT_DATA_LEN] {
        let mut data = [0u8; PROC_EVENT_DATA_LEN];
        let mut put = |index: usize, bytes: [u8; 4]| {
            data[index * 4..index * 4 + 4].copy_from_slice(&bytes);
        };
        match *self {
            ProcEvent::Ack { err } => put(0, err.to_ne_bytes()),
            ProcEvent::Fork {
                parent_pid,
                parent_tgid,
                child_pid,
                child_tgid,
            } => {
                put(0, parent_pid.to_ne_bytes());
                put(1, parent_tgid.to_ne_bytes());
                put(2, child_pid.to_ne_bytes());
                put(3, child_tgid.to_ne_bytes());
            }
            ProcEvent::Exec { pid, tgid } | ProcEvent::Sid { pid, tgid } => {
                put(0, pid.to_ne_bytes());
                put(1, tgid.to_ne_bytes());
            }
            ProcEvent::Uid {
                pid,
                tgid,
                ruid: real,
                euid: effective,
            }
            | ProcEvent::Gid {
                pid,
                tgid,
                rgid: real,
                egid: effective,
            } => {
                put(0, pid.to_ne_bytes());
                put(1, tgid.to_ne_bytes());
                put(2, real.to_ne_bytes());
                put(3, effective.to_ne_bytes());
            }
            ProcEvent::Ptrace {
                pid,
                tgid,
                tracer_pid: other_pid,
                tracer_tgid: other_tgid,
            }
            | ProcEvent::Coredump {
                pid,
                tgid,
                parent_pid: other_pid,
                parent_tgid: other_tgid,
            } => {
                put(0, pid.to_ne_bytes());
                put(1, tgid.to_ne_bytes());
                put(2, other_pid.to_ne_bytes());
                put(3, other_tgid.to_ne_bytes());
            }
            ProcEvent::Comm { pid, tgid, comm } => {
                put(0, pid.to_ne_bytes());
                put(1, tgid.to_ne_bytes());
                data[8..8 + COMM_LEN].copy_from_slice(&comm);
            }
            ProcEvent::Exit {
                pid,
                tgid,
                exit_code,
                exit_signal,
                parent_pid,
                parent_tgid,
            } => {
                put(0, pid.to_ne_bytes());
                put(1, tgid.to_ne_bytes());
                put(2, exit_code.to_ne_bytes());
                put(3, exit_signal.to_ne_bytes());
                put(4, parent_pid.to_ne_bytes());
                put(5, parent_tgid.to_ne_bytes());
            }
        }
        data
    }

    /// The bytes of the union member `what` needs (fields missing on old kernels, the
    /// parent of `exit` and `coredump`, are not required).
    const fn required_data_len(what_value: u32) -> Option<usize> {
        match what_value {
            what::NONE => Some(4),
            what::FORK | what::PTRACE | what::UID | what::GID => Some(16),
            what::EXEC | what::SID | what::COREDUMP => Some(8),
            what::COMM => Some(8 + COMM_LEN),
            what::EXIT => Some(16),
            _ => None,
        }
    }
}

/// A decoded `struct proc_event` with the fields outside the union.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcEventRecord {
    /// The CPU the event was generated on (`u32::MAX` in acks of old kernels).
    pub cpu: u32,
    /// Nanoseconds since boot (`CLOCK_MONOTONIC`).
    pub timestamp_ns: u64,
    /// The event.
    pub event: ProcEvent,
}

impl ProcEventRecord {
    /// The 40 bytes of `struct proc_event`.
    pub fn encode(&self) -> [u8; PROC_EVENT_LEN] {
        let mut out = [0u8; PROC_EVENT_LEN];
        out[0..4].copy_from_slice(&self.event.what().to_ne_bytes());
        out[4..8].copy_from_slice(&self.cpu.to_ne_bytes());
        out[8..16].copy_from_slice(&self.timestamp_ns.to_ne_bytes());
        out[16..].copy_from_slice(&self.event.encode_data());
        out
    }

    /// Reads a `struct proc_event`. `bytes` must hold the fixed header and the union
    /// member `what` selects, and no more than [`PROC_EVENT_LEN`] bytes; absent trailing
    /// fields of old kernels (the parent in `exit`/`coredump`) read as 0.
    pub fn decode(bytes: &[u8]) -> Result<ProcEventRecord, DecodeError> {
        const WHAT: &str = "proc_event";
        if bytes.len() > PROC_EVENT_LEN {
            return Err(DecodeError::Oversized {
                max: PROC_EVENT_LEN,
                got: bytes.len(),
            });
        }
        let what_value = u32_at(bytes, 0, WHAT)?;
        let cpu = u32_at(bytes, 4, WHAT)?;
        let timestamp_ns = u64_at(bytes, 8, WHAT)?;
        let needed =
            ProcEvent::required_data_len(what_value).ok_or(DecodeError::UnknownWhat(what_value))?;
        if bytes.len() < PROC_EVENT_HEADER_LEN + needed {
            return Err(DecodeError::Truncated {
                what: WHAT,
                needed: PROC_EVENT_HEADER_LEN + needed,
                got: bytes.len(),
            });
        }
        // Zero-extend to the full union so optional trailing fields read as 0.
        let mut data = [0u8; PROC_EVENT_DATA_LEN];
        let present = &bytes[PROC_EVENT_HEADER_LEN..];
        data[..present.len()].copy_from_slice(present);
        let int = |index: usize| i32_at(&data, index * 4, WHAT);
        let uint = |index: usize| u32_at(&data, index * 4, WHAT);
        let event = match what_value {
            what::NONE => ProcEvent::Ack { err: uint(0)? },
            what::FORK => ProcEvent::Fork {
                parent_pid: int(0)?,
                parent_tgid: int(1)?,
                child_pid: int(2)?,
                child_tgid: int(3)?,
            },
            what::EXEC => ProcEvent::Exec {
                pid: int(0)?,
                tgid: int(1)?,
            },
            what::UID => ProcEvent::Uid {
                pid: int(0)?,
                tgid: int(1)?,
                ruid: uint(2)?,
                euid: uint(3)?,
            },
            what::GID => ProcEvent::Gid {
                pid: int(0)?,
                tgid: int(1)?,
                rgid: uint(2)?,
                egid: uint(3)?,
            },
            what::SID => ProcEvent::Sid {
                pid: int(0)?,
                tgid: int(1)?,
            },
            what::PTRACE => ProcEvent::Ptrace {
                pid: int(0)?,
                tgid: int(1)?,
                tracer_pid: int(2)?,
                tracer_tgid: int(3)?,
            },
            what::COMM => ProcEvent::Comm {
                pid: int(0)?,
                tgid: int(1)?,
                comm: take::<COMM_LEN>(&data, 8, WHAT)?,
            },
            what::COREDUMP => ProcEvent::Coredump {
                pid: int(0)?,
                tgid: int(1)?,
                parent_pid: int(2)?,
                parent_tgid: int(3)?,
            },
            what::EXIT => ProcEvent::Exit {
                pid: int(0)?,
                tgid: int(1)?,
                exit_code: uint(2)?,
                exit_signal: uint(3)?,
                parent_pid: int(4)?,
                parent_tgid: int(5)?,
            },
            other => return Err(DecodeError::UnknownWhat(other)),
        };
        Ok(ProcEventRecord {
            cpu,
            timestamp_ns,
            event,
        })
    }
}

/// A decoded connector message carrying a process event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcMessage {
    /// The connector header (`seq` is the per-CPU sequence number).
    pub header: CnMsgHeader,
    /// The CPU the event was generated on.
    pub cpu: u32,
    /// Nanoseconds since boot.
    pub timestamp_ns: u64,
    /// The event.
    pub event: ProcEvent,
}

impl ProcMessage {
    /// The event with its CPU and time.
    pub const fn record(&self) -> ProcEventRecord {
        ProcEventRecord {
            cpu: self.cpu,
            timestamp_ns: self.timestamp_ns,
            event: self.event,
        }
    }
}

/// Encodes a connector message (`cn_msg` header then `proc_event`, 60 bytes) as the
/// kernel would send it: id `{CN_IDX_PROC, CN_VAL_PROC}`, sequence number `seq`, ack 0.
pub fn encode(event: &ProcEvent, seq: u32, cpu: u32, timestamp_ns: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(CN_MSG_HEADER_LEN + PROC_EVENT_LEN);
    encode_message_into(
        &ProcMessage {
            header: CnMsgHeader::proc(seq, 0, PROC_EVENT_LEN as u16),
            cpu,
            timestamp_ns,
            event: *event,
        },
        &mut out,
    );
    out
}

/// Appends a connector message with exactly this header (whose `len` is written as
/// given, even if wrong, so tests can forge odd messages) and the 40-byte event.
pub fn encode_message_into(message: &ProcMessage, out: &mut Vec<u8>) {
    message.header.encode_into(out);
    out.extend_from_slice(&message.record().encode());
}

/// Encodes `event` as a whole netlink datagram as the kernel sends it: `nlmsghdr`
/// (type `NLMSG_DONE`, sequence `seq`, sender port 0) around [`encode`]'s bytes.
pub fn encode_netlink(event: &ProcEvent, seq: u32, cpu: u32, timestamp_ns: u64) -> Vec<u8> {
    wrap_netlink(
        &encode(event, seq, cpu, timestamp_ns),
        netlink::NLMSG_DONE,
        0,
        seq,
        0,
    )
}

/// Wraps `payload` in a `nlmsghdr` (padded to the netlink alignment).
pub fn wrap_netlink(payload: &[u8], kind: u16, flags: u16, seq: u32, port: u32) -> Vec<u8> {
    let len = netlink::NLMSG_HDRLEN + payload.len();
    let mut out = Vec::with_capacity(netlink::align(len));
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&port.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(netlink::align(len), 0);
    out
}

/// Decodes a connector message carrying a process event (`cn_msg` + `proc_event`).
///
/// Checks, in order: the 20-byte header is present; the id is
/// `{CN_IDX_PROC, CN_VAL_PROC}`; `cn_msg.len` fits in the bytes given (bytes after it,
/// such as netlink padding, are ignored); the event fits [`ProcEventRecord::decode`].
pub fn decode(bytes: &[u8]) -> Result<ProcMessage, DecodeError> {
    let header = CnMsgHeader::decode(bytes)?;
    if !header.is_proc() {
        return Err(DecodeError::WrongConnector {
            idx: header.idx,
            val: header.val,
        });
    }
    let available = bytes.len() - CN_MSG_HEADER_LEN;
    let declared = usize::from(header.len);
    let payload = bytes
        .get(CN_MSG_HEADER_LEN..CN_MSG_HEADER_LEN + declared)
        .ok_or(DecodeError::BadLength {
            what: "cn_msg",
            declared,
            available,
        })?;
    let record = ProcEventRecord::decode(payload)?;
    Ok(ProcMessage {
        header,
        cpu: record.cpu,
        timestamp_ns: record.timestamp_ns,
        event: record.event,
    })
}

/// The subscribe operations (`enum proc_cn_mcast_op`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum McastOp {
    /// `PROC_CN_MCAST_LISTEN`.
    Listen,
    /// `PROC_CN_MCAST_IGNORE`.
    Ignore,
}

impl McastOp {
    /// The kernel's value.
    pub const fn value(self) -> u32 {
        match self {
            McastOp::Listen => PROC_CN_MCAST_LISTEN,
            McastOp::Ignore => PROC_CN_MCAST_IGNORE,
        }
    }
}

/// A set of `what` bits: the `event_type` of a filtered subscribe (`struct proc_input`).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ProcEventMask(pub u32);

impl ProcEventMask {
    /// Every event the kernel knows (`PROC_EVENT_ALL`, without `NONZERO_EXIT`, which
    /// would narrow exits).
    pub const ALL: ProcEventMask = ProcEventMask(
        what::FORK
            | what::EXEC
            | what::UID
            | what::GID
            | what::SID
            | what::PTRACE
            | what::COMM
            | what::COREDUMP
            | what::EXIT,
    );
    /// The kernel's `PROC_EVENT_ALL` (including the `NONZERO_EXIT` bit); a socket whose
    /// filter is exactly this receives everything, acks included.
    pub const KERNEL_ALL: ProcEventMask = ProcEventMask(ProcEventMask::ALL.0 | what::NONZERO_EXIT);

    /// The `what` bit of one watcher event kind (`free` comes from `exit`).
    pub const fn of(kind: EventKind) -> ProcEventMask {
        ProcEventMask(match kind {
            EventKind::Fork => what::FORK,
            EventKind::Exec => what::EXEC,
            EventKind::Uid => what::UID,
            EventKind::Gid => what::GID,
            EventKind::Sid => what::SID,
            EventKind::Comm => what::COMM,
            EventKind::Ptrace => what::PTRACE,
            EventKind::Coredump => what::COREDUMP,
            EventKind::Exit | EventKind::Free => what::EXIT,
        })
    }

    /// The kernel events needed to produce `set`.
    pub fn from_event_set(set: EventSet) -> ProcEventMask {
        set.iter().fold(ProcEventMask(0), |mask, kind| {
            mask | ProcEventMask::of(kind)
        })
    }

    /// The watcher events these kernel events produce (`exit` gives `exit` and `free`).
    pub fn event_set(self) -> EventSet {
        EventKind::ALL
            .into_iter()
            .filter(|&kind| self.contains(ProcEventMask::of(kind)))
            .collect()
    }

    /// Whether every bit of `other` is set here.
    pub const fn contains(self, other: ProcEventMask) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether a message with this `what` passes the mask (acks always pass).
    pub const fn admits(self, what_value: u32) -> bool {
        what_value == what::NONE || self.0 & what_value != 0
    }

    /// Whether no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for ProcEventMask {
    type Output = ProcEventMask;
    fn bitor(self, rhs: ProcEventMask) -> ProcEventMask {
        ProcEventMask(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for ProcEventMask {
    fn bitor_assign(&mut self, rhs: ProcEventMask) {
        self.0 |= rhs.0;
    }
}

impl From<EventSet> for ProcEventMask {
    fn from(set: EventSet) -> ProcEventMask {
        ProcEventMask::from_event_set(set)
    }
}

impl fmt::Debug for ProcEventMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProcEventMask({:#010x})", self.0)
    }
}

/// `struct proc_input`: a subscribe request with an event filter (kernels 6.6+; older
/// kernels ignore a request of this length and do not answer it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcInput {
    /// Listen or ignore.
    pub op: McastOp,
    /// The events to receive ([`ProcEventMask::KERNEL_ALL`] or 0 mean everything).
    pub events: ProcEventMask,
}

impl ProcInput {
    /// The 8 bytes of the request.
    pub fn encode(&self) -> [u8; PROC_INPUT_LEN] {
        let mut out = [0u8; PROC_INPUT_LEN];
        out[..4].copy_from_slice(&self.op.value().to_ne_bytes());
        out[4..].copy_from_slice(&self.events.0.to_ne_bytes());
        out
    }
}

/// A subscribe request as a connector message: `cn_msg` with sequence `seq` and ack
/// `ack` (the kernel answers with `ack + 1`), then either the plain 4-byte operation
/// (`events: None`, every kernel) or a [`ProcInput`] (`Some(mask)`, kernels 6.6+).
pub fn encode_subscribe(op: McastOp, events: Option<ProcEventMask>, seq: u32, ack: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(CN_MSG_HEADER_LEN + PROC_INPUT_LEN);
    match events {
        None => {
            CnMsgHeader::proc(seq, ack, 4).encode_into(&mut out);
            out.extend_from_slice(&op.value().to_ne_bytes());
        }
        Some(events) => {
            CnMsgHeader::proc(seq, ack, PROC_INPUT_LEN as u16).encode_into(&mut out);
            out.extend_from_slice(&ProcInput { op, events }.encode());
        }
    }
    out
}

/// One netlink message of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetlinkMessage<'a> {
    /// `nlmsg_type` (the connector uses [`netlink::NLMSG_DONE`]).
    pub kind: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// `nlmsg_pid`: the sender's port (0 for the kernel, but only the socket address
    /// from `recvfrom` proves where a datagram came from).
    pub port: u32,
    /// The payload, `nlmsg_len - NLMSG_HDRLEN` bytes.
    pub payload: &'a [u8],
}

impl NetlinkMessage<'_> {
    /// For an `NLMSG_ERROR` message, the (negative) errno, 0 meaning an ack.
    pub fn error_code(&self) -> Option<i32> {
        (self.kind == netlink::NLMSG_ERROR)
            .then(|| i32_at(self.payload, 0, "nlmsgerr").ok())
            .flatten()
    }
}

/// Walks the netlink messages of a datagram (`NLMSG_OK`/`NLMSG_NEXT`), checking every
/// length. After the first malformed header the iterator yields that error and stops.
pub fn netlink_messages(datagram: &[u8]) -> NetlinkMessages<'_> {
    NetlinkMessages {
        rest: datagram,
        failed: false,
    }
}

/// The iterator of [`netlink_messages`].
#[derive(Clone, Debug)]
pub struct NetlinkMessages<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Iterator for NetlinkMessages<'a> {
    type Item = Result<NetlinkMessage<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let result = self.parse_one();
        if result.is_err() {
            self.failed = true;
        }
        Some(result)
    }
}

impl<'a> NetlinkMessages<'a> {
    fn parse_one(&mut self) -> Result<NetlinkMessage<'a>, DecodeError> {
        const WHAT: &str = "nlmsghdr";
        let rest = self.rest;
        let len = u32_at(rest, 0, WHAT)?;
        let kind = u16_at(rest, 4, WHAT)?;
        let flags = u16_at(rest, 6, WHAT)?;
        let seq = u32_at(rest, 8, WHAT)?;
        let port = u32_at(rest, 12, WHAT)?;
        let declared = usize::try_from(len).unwrap_or(usize::MAX);
        if declared < netlink::NLMSG_HDRLEN || declared > rest.len() {
            return Err(DecodeError::BadLength {
                what: WHAT,
                declared,
                available: rest.len(),
            });
        }
        let payload = &rest[netlink::NLMSG_HDRLEN..declared];
        let next = netlink::align(declared).min(rest.len());
        self.rest = &rest[next..];
        Ok(NetlinkMessage {
            kind,
            flags,
            seq,
            port,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A fork by init, the event the hand-made edge cases bend.
    const FORK_OF_INIT: ProcEvent = ProcEvent::Fork {
        parent_pid: 1,
        parent_tgid: 1,
        child_pid: 2,
        child_tgid: 2,
    };

    fn samples() -> Vec<ProcEvent> {
        vec![
            ProcEvent::Ack { err: 0 },
            ProcEvent::Ack { err: 22 },
            ProcEvent::Fork {
                parent_pid: 10,
                parent_tgid: 9,
                child_pid: 11,
                child_tgid: 11,
            },
            ProcEvent::Exec { pid: 5, tgid: 5 },
            ProcEvent::Uid {
                pid: 5,
                tgid: 5,
                ruid: 1000,
                euid: 0,
            },
            ProcEvent::Gid {
                pid: 5,
                tgid: 5,
                rgid: 100,
                egid: 4,
            },
            ProcEvent::Sid { pid: 7, tgid: 7 },
            ProcEvent::Ptrace {
                pid: 7,
                tgid: 7,
                tracer_pid: 8,
                tracer_tgid: 8,
            },
            ProcEvent::Comm {
                pid: 7,
                tgid: 6,
                comm: comm_bytes("kworker/0:1-events"),
            },
            ProcEvent::Coredump {
                pid: 3,
                tgid: 3,
                parent_pid: 1,
                parent_tgid: 1,
            },
            ProcEvent::Exit {
                pid: 3,
                tgid: 3,
                exit_code: 3 << 8,
                exit_signal: 17,
                parent_pid: 1,
                parent_tgid: 1,
            },
        ]
    }

    #[test]
    fn sizes_match_the_kernel() {
        assert_eq!(PROC_EVENT_LEN, 40);
        assert_eq!(CN_MSG_HEADER_LEN + PROC_EVENT_LEN, 60);
        for event in samples() {
            assert_eq!(encode(&event, 0, 0, 0).len(), 60);
            assert_eq!(encode_netlink(&event, 0, 0, 0).len(), 76);
        }
    }

    #[test]
    fn round_trip() {
        for (i, event) in samples().into_iter().enumerate() {
            let seq = i as u32 * 3;
            let bytes = encode(&event, seq, 2, 99 + i as u64);
            let message = decode(&bytes).unwrap();
            assert_eq!(message.event, event);
            assert_eq!(message.header, CnMsgHeader::proc(seq, 0, 40));
            assert_eq!((message.cpu, message.timestamp_ns), (2, 99 + i as u64));
            let datagram = encode_netlink(&event, seq, 2, 99 + i as u64);
            let all: Vec<_> = netlink_messages(&datagram).collect();
            assert_eq!(all.len(), 1);
            let nl = all[0].clone().unwrap();
            assert_eq!((nl.kind, nl.port, nl.seq), (netlink::NLMSG_DONE, 0, seq));
            assert_eq!(decode(nl.payload).unwrap(), message);
        }
    }

    #[test]
    fn comm_helpers() {
        assert_eq!(comm_str(&comm_bytes("sh")), "sh");
        assert_eq!(
            comm_str(&comm_bytes("0123456789abcdefXYZ")),
            "0123456789abcde"
        );
        assert_eq!(comm_str(&[b'a'; 16]), "a".repeat(16));
    }

    #[test]
    fn odd_messages_are_errors() {
        let fork = FORK_OF_INIT;
        let bytes = encode(&fork, 0, 0, 0);
        assert!(matches!(
            decode(&bytes[..10]),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            decode(&bytes[..59]),
            Err(DecodeError::BadLength { .. })
        ));
        // A header claiming a shorter event than the fork member needs.
        let mut short = bytes.clone();
        short[16..18].copy_from_slice(&20u16.to_ne_bytes());
        assert!(matches!(decode(&short), Err(DecodeError::Truncated { .. })));
        // Longer than struct proc_event.
        let mut long = bytes.clone();
        long[16..18].copy_from_slice(&44u16.to_ne_bytes());
        long.extend_from_slice(&[0; 4]);
        assert!(matches!(decode(&long), Err(DecodeError::Oversized { .. })));
        // Unknown what, including the filter-only NONZERO_EXIT bit.
        for bad in [0x400u32, what::NONZERO_EXIT, what::FORK | what::EXEC] {
            let mut unknown = bytes.clone();
            unknown[20..24].copy_from_slice(&bad.to_ne_bytes());
            assert_eq!(decode(&unknown), Err(DecodeError::UnknownWhat(bad)));
        }
        // Another connector.
        let mut foreign = bytes.clone();
        foreign[0..4].copy_from_slice(&7u32.to_ne_bytes());
        assert_eq!(
            decode(&foreign),
            Err(DecodeError::WrongConnector { idx: 7, val: 1 })
        );
        // Old kernels' shorter exit (no parent) decodes with parent 0.
        let exit = ProcEvent::Exit {
            pid: 4,
            tgid: 4,
            exit_code: 0,
            exit_signal: 17,
            parent_pid: 0,
            parent_tgid: 0,
        };
        let mut old = encode(&exit, 0, 0, 0);
        old.truncate(CN_MSG_HEADER_LEN + 32);
        old[16..18].copy_from_slice(&32u16.to_ne_bytes());
        assert_eq!(decode(&old).unwrap().event, exit);
    }

    #[test]
    fn several_messages_per_datagram() {
        let mut datagram = Vec::new();
        for seq in 0..3 {
            datagram.extend(encode_netlink(
                &ProcEvent::Exec { pid: 9, tgid: 9 },
                seq,
                0,
                0,
            ));
        }
        let seqs: Vec<u32> = netlink_messages(&datagram)
            .map(|m| m.unwrap().seq)
            .collect();
        assert_eq!(seqs, [0, 1, 2]);
        // A length pointing past the end stops the walk with an error.
        datagram[76..80].copy_from_slice(&1000u32.to_ne_bytes());
        let all: Vec<_> = netlink_messages(&datagram).collect();
        assert_eq!(all.len(), 2);
        assert!(all[1].is_err());
        // A zero length cannot loop forever.
        let zero = [0u8; 32];
        assert_eq!(netlink_messages(&zero).count(), 1);
    }

    #[test]
    fn masks() {
        let mask = ProcEventMask::from(EventSet::FORK | EventSet::FREE);
        assert_eq!(mask, ProcEventMask(what::FORK | what::EXIT));
        assert_eq!(
            mask.event_set(),
            EventSet::FORK | EventSet::EXIT | EventSet::FREE
        );
        assert_eq!(ProcEventMask::from(EventSet::ALL), ProcEventMask::ALL);
        assert_eq!(ProcEventMask::ALL.event_set(), EventSet::ALL);
        assert!(mask.admits(what::NONE));
        assert!(!mask.admits(what::EXEC));
        let request = encode_subscribe(McastOp::Listen, Some(mask), 5, 6);
        assert_eq!(request.len(), 28);
        let header = CnMsgHeader::decode(&request).unwrap();
        assert_eq!(header, CnMsgHeader::proc(5, 6, 8));
        assert_eq!(&request[20..24], &1u32.to_ne_bytes());
        assert_eq!(&request[24..28], &mask.0.to_ne_bytes());
        assert_eq!(encode_subscribe(McastOp::Ignore, None, 0, 0).len(), 24);
    }

    #[test]
    fn kinds() {
        for event in samples() {
            match event {
                ProcEvent::Ack { .. } => assert_eq!(event.event_kind(), None),
                _ => {
                    let kind = event.event_kind().unwrap();
                    assert_eq!(ProcEventMask::of(kind).0, event.what());
                }
            }
        }
    }

    /// A netlink message with a header whose length says `declared`, whatever the
    /// payload really is.
    fn lying(declared: u32, kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = wrap_netlink(payload, kind, 0, 0, 0);
        out[0..4].copy_from_slice(&declared.to_ne_bytes());
        out
    }

    fn walk(bytes: &[u8]) -> Vec<Result<NetlinkMessage<'_>, DecodeError>> {
        netlink_messages(bytes).collect()
    }

    #[test]
    fn hand_made_netlink_edge_cases_are_typed_errors() {
        let exec = encode(&ProcEvent::Exec { pid: 9, tgid: 9 }, 1, 0, 0);
        // Fewer bytes than a header.
        assert!(matches!(
            &walk(&[1, 2, 3])[..],
            [Err(DecodeError::Truncated {
                what: "nlmsghdr",
                ..
            })]
        ));
        // nlmsg_len shorter than the header (0 included: no endless loop), past the end,
        // or u32::MAX.
        for declared in [0, 1, 15, 77, 1000, u32::MAX] {
            let bytes = lying(declared, netlink::NLMSG_DONE, &exec);
            let all = walk(&bytes);
            assert!(
                matches!(
                    &all[..],
                    [Err(DecodeError::BadLength {
                        what: "nlmsghdr",
                        ..
                    })]
                ),
                "{declared}: {all:?}"
            );
        }
        // A length that is not a multiple of 4: the next message starts aligned.
        let mut two = lying(17, netlink::NLMSG_NOOP, &[0xaa; 4]);
        two.extend(wrap_netlink(&exec, netlink::NLMSG_DONE, 0, 5, 0));
        let all = walk(&two);
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[0].as_ref().unwrap().payload, &[0xaa]);
        assert_eq!(
            decode(all[1].as_ref().unwrap().payload).unwrap().header.seq,
            1
        );
        // A multi-part datagram whose last message is cut: the good ones, then one error.
        let mut cut = wrap_netlink(&exec, netlink::NLMSG_DONE, 0, 1, 0);
        cut.extend(&wrap_netlink(&exec, netlink::NLMSG_DONE, 0, 2, 0)[..40]);
        let all = walk(&cut);
        assert!(
            matches!(&all[..], [Ok(_), Err(DecodeError::BadLength { .. })]),
            "{all:?}"
        );
        // NLMSG_ERROR: an ack (0), an error, and one too short to say.
        let error = |payload: &[u8]| {
            let bytes = wrap_netlink(payload, netlink::NLMSG_ERROR, 0, 0, 0);
            walk(&bytes)[0].as_ref().unwrap().error_code()
        };
        assert_eq!(error(&0i32.to_ne_bytes()), Some(0));
        assert_eq!(error(&(-22i32).to_ne_bytes()), Some(-22));
        assert_eq!(error(&[1, 2]), None);
        // Another type has no error code.
        let done = wrap_netlink(&exec, netlink::NLMSG_DONE, 0, 0, 0);
        assert_eq!(walk(&done)[0].as_ref().unwrap().error_code(), None);
    }

    #[test]
    fn hand_made_connector_edge_cases_are_typed_errors() {
        let fork = FORK_OF_INIT;
        let bytes = encode(&fork, 3, 0, 0);
        let with_len = |len: u16| {
            let mut b = bytes.clone();
            b[16..18].copy_from_slice(&len.to_ne_bytes());
            b
        };
        // cn_msg.len lying: zero, too short for the header, past the end.
        assert!(matches!(
            decode(&with_len(0)),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            decode(&with_len(3)),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            decode(&with_len(41)),
            Err(DecodeError::BadLength {
                declared: 41,
                available: 40,
                ..
            })
        ));
        assert!(matches!(
            decode(&with_len(u16::MAX)),
            Err(DecodeError::BadLength { .. })
        ));
        // Oversized, even when the bytes are there.
        let mut long = with_len(44);
        long.extend([0; 4]);
        assert_eq!(
            decode(&long),
            Err(DecodeError::Oversized { max: 40, got: 44 })
        );
        // An ack needs only its error field.
        let mut ack = encode(&ProcEvent::Ack { err: 0 }, 0, u32::MAX, 0);
        ack.truncate(CN_MSG_HEADER_LEN + PROC_EVENT_HEADER_LEN + 4);
        ack[16..18].copy_from_slice(&20u16.to_ne_bytes());
        assert_eq!(decode(&ack).unwrap().event, ProcEvent::Ack { err: 0 });
        // Unknown and combined `what` codes.
        for what_value in [0x8u32, 0x10, 0x400, 0x1000_0000, u32::MAX] {
            let mut unknown = bytes.clone();
            unknown[20..24].copy_from_slice(&what_value.to_ne_bytes());
            assert_eq!(decode(&unknown), Err(DecodeError::UnknownWhat(what_value)));
        }
        // Misaligned: the same bytes at every offset of a buffer decode the same.
        for shift in 0..8 {
            let mut buffer = vec![0xee; shift];
            buffer.extend(&bytes);
            assert_eq!(decode(&buffer[shift..]).unwrap().event, fork);
        }
    }

    #[test]
    fn many_random_datagrams_are_events_or_typed_errors() {
        // Deterministic (xorshift64), so a failure replays: headers that are right,
        // lie, or are noise, around events that are right, cut, or noise.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let samples = samples();
        let (mut events, mut errors) = (0, 0);
        for _ in 0..20_000 {
            let event = samples[(next() % samples.len() as u64) as usize];
            let mut payload = encode(&event, next() as u32, (next() % 4) as u32, next());
            match next() % 4 {
                0 => payload.truncate((next() % 61) as usize),
                1 => {
                    let at = (next() % 60) as usize;
                    payload[at] = next() as u8;
                }
                2 => payload.extend((0..next() % 9).map(|_| next() as u8)),
                _ => {}
            }
            let mut datagram = Vec::new();
            for _ in 0..=next() % 3 {
                let kind = [
                    netlink::NLMSG_DONE,
                    netlink::NLMSG_ERROR,
                    netlink::NLMSG_NOOP,
                    0x10,
                ][(next() % 4) as usize];
                let mut message = wrap_netlink(&payload, kind, 0, 0, 0);
                if next() % 4 == 0 {
                    message[0..4].copy_from_slice(&(next() as u32 % 128).to_ne_bytes());
                }
                datagram.extend(message);
            }
            datagram.truncate(datagram.len() - (next() % 3) as usize);
            let mut walked = 0;
            let mut failed = false;
            for message in netlink_messages(&datagram) {
                assert!(!failed, "nothing follows an error");
                match message {
                    Ok(message) => {
                        walked += netlink::NLMSG_HDRLEN + message.payload.len();
                        let _ = message.error_code();
                        match decode(message.payload) {
                            Ok(decoded) => {
                                events += 1;
                                // What decodes re-encodes to the same event.
                                let again = encode(&decoded.event, 0, 0, 0);
                                assert_eq!(decode(&again).unwrap().event, decoded.event);
                            }
                            Err(_) => errors += 1,
                        }
                    }
                    Err(_) => failed = true,
                }
            }
            assert!(walked <= datagram.len());
        }
        // The mix really reached both outcomes, many times.
        assert!(
            events > 1_000 && errors > 1_000,
            "{events} events, {errors} errors"
        );
    }

    fn any_event() -> impl Strategy<Value = ProcEvent> {
        let i = any::<i32>;
        let u = any::<u32>;
        prop_oneof![
            u().prop_map(|err| ProcEvent::Ack { err }),
            (i(), i(), i(), i()).prop_map(|(a, b, c, d)| ProcEvent::Fork {
                parent_pid: a,
                parent_tgid: b,
                child_pid: c,
                child_tgid: d
            }),
            (i(), i()).prop_map(|(pid, tgid)| ProcEvent::Exec { pid, tgid }),
            (i(), i(), u(), u()).prop_map(|(pid, tgid, ruid, euid)| ProcEvent::Uid {
                pid,
                tgid,
                ruid,
                euid
            }),
            (i(), i(), u(), u()).prop_map(|(pid, tgid, rgid, egid)| ProcEvent::Gid {
                pid,
                tgid,
                rgid,
                egid
            }),
            (i(), i()).prop_map(|(pid, tgid)| ProcEvent::Sid { pid, tgid }),
            (i(), i(), i(), i()).prop_map(|(pid, tgid, a, b)| ProcEvent::Ptrace {
                pid,
                tgid,
                tracer_pid: a,
                tracer_tgid: b
            }),
            (i(), i(), any::<[u8; 16]>()).prop_map(|(pid, tgid, comm)| ProcEvent::Comm {
                pid,
                tgid,
                comm
            }),
            (i(), i(), i(), i()).prop_map(|(pid, tgid, a, b)| ProcEvent::Coredump {
                pid,
                tgid,
                parent_pid: a,
                parent_tgid: b
            }),
            (i(), i(), u(), u(), i(), i()).prop_map(|(pid, tgid, c, s, a, b)| {
                ProcEvent::Exit {
                    pid,
                    tgid,
                    exit_code: c,
                    exit_signal: s,
                    parent_pid: a,
                    parent_tgid: b,
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn round_trips(event in any_event(), seq in any::<u32>(), cpu in any::<u32>(), ts in any::<u64>()) {
            let message = decode(&encode(&event, seq, cpu, ts)).unwrap();
            prop_assert_eq!(message.event, event);
            prop_assert_eq!((message.header.seq, message.cpu, message.timestamp_ns), (seq, cpu, ts));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
            let _ = CnMsgHeader::decode(&bytes);
            let _ = ProcEventRecord::decode(&bytes);
            for message in netlink_messages(&bytes).flatten() {
                let _ = message.error_code();
                let _ = decode(message.payload);
            }
        }

        #[test]
        fn mutated_messages_never_panic(event in any_event(), flips in proptest::collection::vec((0usize..76, any::<u8>()), 0..8), cut in 0usize..=76) {
            let mut bytes = encode_netlink(&event, 1, 2, 3);
            for (at, value) in flips {
                bytes[at] = value;
            }
            bytes.truncate(cut);
            for message in netlink_messages(&bytes).flatten() {
                let _ = decode(message.payload);
            }
        }
    }
}
