//! The few OS facts the source needs: thread ids, the main thread, thread names.

use std::io;

/// The calling thread's OS id, where the platform has one.
pub(crate) fn tid() -> Option<u32> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: gettid has no preconditions and cannot fail.
        let tid = unsafe { libc::gettid() };
        u32::try_from(tid).ok()
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        None
    }
}

/// Whether the calling thread, whose OS id is `tid` (from [`tid`]), is the process's
/// main thread.
pub(crate) fn is_main_thread(tid: Option<u32>) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        tid == Some(std::process::id())
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = tid;
        std::thread::current().name() == Some("main")
    }
}

/// The calling thread's name as the OS holds it (its `comm`), if it can be read.
///
/// On Linux this asks the kernel, not std: a thread may first meet the source after
/// std's own clean-up of the thread (from another library's pthread key destructor),
/// when `std::thread::current` panics.
pub(crate) fn thread_name() -> Option<String> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let mut name = [0u8; watchers_core::COMM_MAX + 1];
        // SAFETY: PR_GET_NAME writes at most 16 bytes, NUL included, into `name`,
        // which holds 16.
        let result = unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr()) };
        if result != 0 {
            return None;
        }
        let name = std::ffi::CStr::from_bytes_until_nul(&name).ok()?;
        Some(name.to_string_lossy().into_owned())
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        std::thread::current().name().map(str::to_owned)
    }
}

/// The process's name: the kernel's `comm` where it can be read, else the executable's
/// file name.
pub(crate) fn process_name() -> String {
    if let Ok(comm) = std::fs::read_to_string("/proc/self/comm") {
        return comm.trim_end_matches('\n').to_owned();
    }
    std::env::current_exe()
        .ok()
        .and_then(|path| {
            path.file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "process".to_owned())
}

/// Sets the calling thread's OS name, cut to the kernel's 15 bytes on a character
/// boundary. `name` holds no NUL byte.
pub(crate) fn set_thread_name(name: &str) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let mut end = name.len().min(watchers_core::COMM_MAX);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        let name = std::ffi::CString::new(&name[..end])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: `name` is a NUL-terminated string of at most 15 bytes plus the NUL, as
        // the call requires, and pthread_self() is the calling, live thread.
        let error = unsafe { libc::pthread_setname_np(libc::pthread_self(), name.as_ptr()) };
        if error != 0 {
            return Err(io::Error::from_raw_os_error(error));
        }
        Ok(())
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = name;
        Ok(())
    }
}
