//! How the source learns that a thread has ended, after its thread-locals are gone.
//!
//! On Linux with glibc a pthread key's destructor reports it: glibc runs those after
//! every thread-local destructor, and setting the key's value allocates nothing, where a
//! thread-local destructor's registration costs a `calloc` and a `free` on each thread.
//! glibc runs no key destructor for a thread that ends the process with `exit`, so an
//! `atexit` handler, registered with the key, reports that thread's end; it runs after
//! the exiting thread's thread-local destructors.
//!
//! The main thread, other platforms (where key destructors may run before other
//! thread-locals' destructors, as on musl), and a process that has used up its keys get
//! a thread-local destructor instead, registered when the thread first meets the
//! source; glibc runs the main thread's at `exit`.
//!
//! A report runs at most once per thread ([`bind::thread_ended`] empties the bindings),
//! so a thread reached by two of these reports only once. The key and the handler stay
//! for the life of the process: a library built on this crate must not be unloaded while
//! threads it bound still run.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::bind;

/// Makes sure that [`bind::thread_ended`] runs when the calling thread ends; `main`:
/// whether it is the main thread.
pub(crate) fn arm(main: bool) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if !main && key::arm() {
        return;
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = main;
    // Fails only while the thread-locals are being destroyed; the bindings were made
    // before that, when `thread_ended` had not run, so it still runs for them.
    let _ = GUARD.try_with(|_| ());
}

/// The thread-local whose destructor reports the end where no pthread key does.
struct Guard;

thread_local! {
    static GUARD: Guard = const { Guard };
}

impl Drop for Guard {
    fn drop(&mut self) {
        bind::thread_ended();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod key {
    use std::ffi::c_void;
    use std::ptr::NonNull;
    use std::sync::OnceLock;

    /// The key, if one could be created (once per process; never deleted).
    static KEY: OnceLock<Option<libc::pthread_key_t>> = OnceLock::new();

    /// Gives the calling thread a value for the key, so that its destructor runs when
    /// the thread ends; false if there is no key.
    pub(super) fn arm() -> bool {
        let Some(key) = *KEY.get_or_init(create) else {
            return false;
        };
        // Never read: a non-null value is all that makes the destructor run.
        let marker = NonNull::<c_void>::dangling().as_ptr();
        // SAFETY: `key` was created by pthread_key_create and is never deleted.
        unsafe { libc::pthread_setspecific(key, marker) == 0 }
    }

    /// The key, and the `atexit` handler for a thread that ends the process.
    fn create() -> Option<libc::pthread_key_t> {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: `key` is a valid place for the new key; `ended` is an
        // `extern "C" fn(*mut c_void)` that does not unwind.
        let status = unsafe { libc::pthread_key_create(&mut key, Some(ended)) };
        if status != 0 {
            return None;
        }
        // SAFETY: `exiting` is an `extern "C" fn()` that does not unwind. Should the
        // registration fail, a thread that calls `exit` goes unreported, as before it.
        unsafe { libc::atexit(exiting) };
        Some(key)
    }

    extern "C" fn ended(_marker: *mut c_void) {
        super::report();
    }

    extern "C" fn exiting() {
        super::report();
    }
}

/// Runs [`bind::thread_ended`] where a panic must not escape (a C callback).
#[cfg_attr(
    not(all(target_os = "linux", target_env = "gnu")),
    allow(dead_code, reason = "only the pthread key's callbacks report this way")
)]
fn report() {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(bind::thread_ended)) {
        // Its destructor could panic in turn; leaking it is the safe choice.
        std::mem::forget(payload);
    }
}
