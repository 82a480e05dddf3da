//! Input and call sites a reviewer would try against the source: names std refuses,
//! renames past the kernel's length, lookups from other libraries' thread-end callbacks.

use std::sync::{Arc, Mutex};

use watchers_core::{Event, EventKind, EventSet, Pid, WatcherTable};
use watchers_threads::{SpawnError, Threads};

type Log = Arc<Mutex<Vec<(EventKind, Pid)>>>;

/// A source whose watcher logs every fork, exit and free.
fn source() -> (&'static Threads, Log) {
    let table = WatcherTable::from_watchers([]).unwrap().leak();
    let log = Log::default();
    let seen = log.clone();
    table
        .watcher(
            "test::log",
            EventSet::FORK | EventSet::EXIT | EventSet::FREE,
        )
        .register(move |event: &Event<'_>| -> watchers_core::WatcherResult {
            seen.lock()
                .unwrap()
                .push((event.kind(), event.task().pid()));
            Ok(())
        })
        .unwrap()
        .keep();
    (Box::leak(Box::new(Threads::new(table))), log)
}

/// How many `fork` and `free` events the log holds for tasks other than `skip`.
fn forks_and_frees(log: &Log, skip: &[Pid]) -> (usize, usize) {
    let log = log.lock().unwrap();
    let count = |kind| {
        log.iter()
            .filter(|(k, pid)| *k == kind && !skip.contains(pid))
            .count()
    };
    (count(EventKind::Fork), count(EventKind::Free))
}

#[test]
fn a_thread_name_with_a_nul_byte_is_an_error_and_leaves_no_task_behind() {
    let (threads, log) = source();
    let me = threads.current().unwrap();
    let tasks_before = threads.tasks().stats().tasks;
    let spawned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        threads
            .builder()
            .name("bad\0name".into())
            .spawn(|| ())
            .map(|handle| handle.join().is_ok())
    }));
    let outcome = spawned.expect("a name std refuses must be an error, not a panic");
    assert!(
        matches!(outcome, Err(SpawnError::Nul)),
        "a thread named with a NUL byte: {outcome:?}"
    );
    let (forks, frees) = forks_and_frees(&log, &[me.pid(), threads.process().pid()]);
    assert_eq!(
        forks,
        frees,
        "every fork has its free: {:?}",
        log.lock().unwrap()
    );
    assert_eq!(threads.tasks().stats().tasks, tasks_before);
}

/// `SpawnError::Nul`'s promise, for both ways to spawn: not even a `fork` watcher ran.
#[test]
fn a_nul_name_runs_no_fork_watcher_for_a_thread_or_a_scoped_thread() {
    let (threads, log) = source();
    let me = threads.current().unwrap();
    let name = || String::from("bad\0name");
    let spawned = threads.builder().name(name()).spawn(|| ());
    assert!(matches!(spawned, Err(SpawnError::Nul)), "{spawned:?}");
    let scoped = std::thread::scope(|scope| {
        let spawned = threads.builder().name(name()).spawn_scoped(scope, || ());
        matches!(spawned, Err(SpawnError::Nul))
    });
    assert!(scoped, "a scoped thread named with a NUL byte");
    let seen = forks_and_frees(&log, &[me.pid(), threads.process().pid()]);
    assert_eq!(seen, (0, 0), "{:?}", log.lock().unwrap());
}

/// The source that [`foreign_key_end`] looks the thread's task up in, and what it got.
static FOREIGN: Mutex<Option<&'static Threads>> = Mutex::new(None);
static FOREIGN_GOT: Mutex<Option<Result<Pid, String>>> = Mutex::new(None);
/// Whether `std::thread::current` panicked there: std had cleaned up the thread.
static FOREIGN_STD_GONE: Mutex<Option<bool>> = Mutex::new(None);

/// Another library's pthread key destructor: it runs after every thread-local
/// destructor of the thread, and after std's own clean-up when its key is older.
extern "C" fn foreign_key_end(_: *mut libc::c_void) {
    let source = *FOREIGN.lock().unwrap();
    let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        source.map(|threads| threads.current())
    }));
    *FOREIGN_GOT.lock().unwrap() = Some(match got {
        Ok(Some(Ok(task))) => Ok(task.pid()),
        Ok(Some(Err(error))) => Err(error.to_string()),
        Ok(None) => Err("no source".into()),
        Err(_) => Err("panicked".into()),
    });
    // Its panic message in the test output is expected.
    let std_gone = std::panic::catch_unwind(|| drop(std::thread::current())).is_err();
    *FOREIGN_STD_GONE.lock().unwrap() = Some(std_gone);
}

#[test]
fn a_thread_first_met_in_another_librarys_key_destructor_still_ends_once() {
    let (threads, log) = source();
    *FOREIGN.lock().unwrap() = Some(threads);
    // std's own key (its thread clean-up) and the source's exist before the foreign
    // one, whose destructor then runs after theirs.
    threads.builder().spawn(|| ()).unwrap().join().unwrap();
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: `key` is a valid place for the new key; the destructor does not unwind.
    assert_eq!(
        unsafe { libc::pthread_key_create(&mut key, Some(foreign_key_end)) },
        0
    );
    std::thread::spawn(move || {
        // SAFETY: the key was just created; a non-null value makes its destructor run.
        unsafe { libc::pthread_setspecific(key, std::ptr::dangling_mut::<libc::c_void>()) };
    })
    .join()
    .unwrap();
    // SAFETY: no thread holds a value for the key any more.
    unsafe { libc::pthread_key_delete(key) };
    assert_eq!(
        *FOREIGN_STD_GONE.lock().unwrap(),
        Some(true),
        "premise: the foreign destructor ran after std's clean-up of the thread"
    );
    let got = FOREIGN_GOT.lock().unwrap().clone();
    let pid = got
        .expect("the foreign destructor ran")
        .expect("the thread got a task");
    let kinds: Vec<EventKind> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, p)| *p == pid)
        .map(|(kind, _)| *kind)
        .collect();
    assert_eq!(kinds, [EventKind::Fork, EventKind::Exit, EventKind::Free]);
}

/// Counts its drops.
struct Counted;

static COUNTED_DROPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Drop for Counted {
    fn drop(&mut self) {
        COUNTED_DROPS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

static COUNTED: watchers_core::TaskSlot<Counted> = watchers_core::TaskSlot::new();

#[test]
fn an_os_refusal_after_fork_frees_once_and_drops_each_slot_value_once() {
    let (threads, log) = source();
    let me = threads.current().unwrap();
    let forked = Arc::new(Mutex::new(Vec::new()));
    let seen = forked.clone();
    threads
        .tasks()
        .watchers()
        .watcher("hostile::slot", EventSet::FORK)
        .register(move |event: &Event<'_>| -> watchers_core::WatcherResult {
            COUNTED.set(event.task(), Counted);
            seen.lock().unwrap().push(event.task().pid());
            Ok(())
        })
        .unwrap()
        .keep();
    let drops_before = COUNTED_DROPS.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..3 {
        // A stack larger than the address space: the OS refuses the thread.
        let error = threads
            .builder()
            .stack_size(1 << 52)
            .spawn(|| ())
            .unwrap_err();
        assert!(matches!(error, SpawnError::Os(_)), "{error}");
    }
    let forked = forked.lock().unwrap();
    assert_eq!(forked.len(), 3, "premise: the fork watchers ran");
    assert_eq!(
        COUNTED_DROPS.load(std::sync::atomic::Ordering::SeqCst) - drops_before,
        3,
        "each slot value dropped once, by the time the spawn returned"
    );
    for pid in forked.iter() {
        let kinds: Vec<EventKind> = log
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, seen)| seen == pid)
            .map(|(kind, _)| *kind)
            .collect();
        // Mirror pids are reused: each spawn's fork and free, never an exit.
        assert!(
            kinds
                .chunks(2)
                .all(|pair| pair == [EventKind::Fork, EventKind::Free]),
            "{kinds:?}"
        );
    }
    let (forks, frees) = forks_and_frees(&log, &[me.pid(), threads.process().pid()]);
    assert_eq!((forks, frees), (3, 3));
}
