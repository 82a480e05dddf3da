//! The Linux process-events connector as an event source for task watchers.
//!
//! [`cn_proc`] is the connector's wire format (every platform);
//! [`ProcConnector`] (Linux only) subscribes to the kernel and dispatches every real
//! process event of the machine through a [`watchers_core::WatcherTable`].
//!
//! ```
//! use watchers_proc_connector::cn_proc::{self, ProcEvent};
//!
//! let exit = ProcEvent::Exit { pid: 42, tgid: 42, exit_code: 1 << 8, exit_signal: 17, parent_pid: 1, parent_tgid: 1 };
//! let message = cn_proc::decode(&cn_proc::encode(&exit, 1, 0, 0))?;
//! assert_eq!(message.event, exit);
//! # Ok::<(), cn_proc::DecodeError>(())
//! ```
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod cn_proc;
#[cfg(target_os = "linux")]
mod connector;

#[cfg(target_os = "linux")]
pub use connector::*;
