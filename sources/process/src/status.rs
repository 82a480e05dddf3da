//! From std's exit status to the task model's wait status.

/// The task model's form of a child's exit status: on Unix the raw wait status (so code,
/// signal and core dump survive); elsewhere the exit code.
///
/// ```
/// # #[cfg(unix)] {
/// use std::os::unix::process::ExitStatusExt;
/// use std::process::ExitStatus;
/// use watchers_process::to_task_status;
///
/// assert_eq!(to_task_status(ExitStatus::from_raw(3 << 8)).code(), Some(3));
/// let killed = to_task_status(ExitStatus::from_raw(11 | 0x80));
/// assert_eq!((killed.signal(), killed.core_dumped()), (Some(11), true));
/// # }
/// ```
pub fn to_task_status(status: std::process::ExitStatus) -> watchers_core::ExitStatus {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        watchers_core::ExitStatus(status.into_raw())
    }
    #[cfg(not(unix))]
    {
        watchers_core::ExitStatus::exited(status.code().unwrap_or(1))
    }
}
