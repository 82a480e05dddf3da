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
        Some(comm_of(name.to_bytes()))
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        std::thread::current().name().map(str::to_owned)
    }
}

/// The text of an OS thread name. The kernel keeps 15 bytes of a longer name, which may
/// cut its last character: that part is left out, as the task table cuts names, rather
/// than read as U+FFFD. Other bytes that are not UTF-8 become U+FFFD.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn comm_of(bytes: &[u8]) -> String {
    // A character's start and its continuation bytes, cut short by the end of the name:
    // at most 3 bytes of a 4-byte character.
    let cut = (1..=bytes.len().min(3)).find(|&len| {
        std::str::from_utf8(&bytes[bytes.len() - len..])
            .is_err_and(|error| error.valid_up_to() == 0 && error.error_len().is_none())
    });
    let whole = &bytes[..bytes.len() - cut.unwrap_or(0)];
    String::from_utf8_lossy(whole).into_owned()
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::comm_of;

    #[test]
    fn a_character_cut_at_the_end_is_left_out_and_other_bad_bytes_are_replaced() {
        assert_eq!(comm_of(b"abc"), "abc");
        assert_eq!(comm_of(b""), "");
        assert_eq!(comm_of("ab\u{1F600}".as_bytes()), "ab\u{1F600}");
        assert_eq!(comm_of(b"ab\xF0\x9F\x98"), "ab");
        assert_eq!(comm_of(b"ab\xE2\x82"), "ab");
        assert_eq!(comm_of(b"ab\xE2"), "ab");
        assert_eq!(comm_of(b"a\xFFb\xE2\x82"), "a\u{FFFD}b");
        // A lone continuation byte at the end is no cut character: it is replaced.
        assert_eq!(comm_of(b"ab\x82"), "ab\u{FFFD}");
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
