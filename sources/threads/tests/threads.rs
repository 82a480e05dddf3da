//! Real threads through the source: panics, adoption of plain std threads, names,
//! refusal, OS failure and scoped threads. Every test has its own table and source.

mod common;

use std::sync::{Arc, Mutex};

use watchers_core::{
    Event, EventData, EventKind, EventSet, ExitStatus, Pid, Task, TaskState, WatcherTable,
};
use watchers_threads::{CurrentError, PANIC_EXIT_CODE, SpawnError, Threads};

/// What the watchers saw: event, mirror pid, and the exit status or new name.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Fork(Pid),
    Exit(Pid, ExitStatus),
    Comm(Pid, String),
    Free(Pid),
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// A source whose runtime watcher logs every event, and which refuses forks while the
/// returned flag says so.
fn source() -> (&'static Threads, Log, Arc<Mutex<bool>>) {
    let table = WatcherTable::from_watchers([]).unwrap().leak();
    let log = Log::default();
    let refuse = Arc::new(Mutex::new(false));
    let (seen, refusing) = (log.clone(), refuse.clone());
    table
        .watcher("test::log", EventSet::ALL)
        .register(move |event: &Event<'_>| {
            let pid = event.task().pid();
            let entry = match event.data() {
                EventData::Fork { .. } => {
                    seen.lock().unwrap().push(Seen::Fork(pid));
                    if *refusing.lock().unwrap() {
                        return Err("refused by the test");
                    }
                    return Ok(());
                }
                EventData::Exit { status } => Seen::Exit(pid, *status),
                EventData::Comm { new, .. } => Seen::Comm(pid, new.to_string()),
                EventData::Free => Seen::Free(pid),
                _ => return Ok(()),
            };
            seen.lock().unwrap().push(entry);
            Ok(())
        })
        .unwrap()
        .keep();
    let threads = Box::leak(Box::new(Threads::new(table)));
    (threads, log, refuse)
}

fn events_of(log: &Log, pid: Pid) -> Vec<Seen> {
    let log = log.lock().unwrap();
    log.iter()
        .filter(|seen| match seen {
            Seen::Fork(p) | Seen::Exit(p, _) | Seen::Comm(p, _) | Seen::Free(p) => *p == pid,
        })
        .cloned()
        .collect()
}

#[test]
fn a_panicking_thread_exits_with_the_panic_code_and_is_freed() {
    let (threads, log, _) = source();
    let handle = threads
        .builder()
        .spawn(|| -> u32 { panic!("the closure panics") })
        .unwrap();
    let pid = handle.task().pid();
    let payload = handle.join().unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"the closure panics"));
    assert_eq!(
        events_of(&log, pid),
        [
            Seen::Fork(pid),
            Seen::Exit(pid, ExitStatus::exited(PANIC_EXIT_CODE)),
            Seen::Free(pid),
        ]
    );
}

#[test]
fn a_thread_that_returns_exits_with_code_zero_on_itself() {
    let (threads, log, _) = source();
    let handle = threads
        .builder()
        .spawn(move || {
            let me = threads.current().unwrap();
            let tid = watchers_threads::os_tid(&me).unwrap();
            (me.pid(), me.state(), tid)
        })
        .unwrap();
    let task = handle.task().clone();
    let (pid, state, tid) = handle.join().unwrap();
    assert_eq!((pid, state), (task.pid(), TaskState::Running));
    // The OS id is the thread's, not the process's or this test thread's.
    assert_ne!(tid, std::process::id());
    assert_eq!(task.tgid(), threads.process().pid());
    assert_eq!(
        events_of(&log, pid),
        [
            Seen::Fork(pid),
            Seen::Exit(pid, ExitStatus::exited(0)),
            Seen::Free(pid)
        ]
    );
}

#[test]
fn plain_std_threads_are_adopted_and_still_get_exit_and_free() {
    let (threads, log, refuse) = source();
    // A thread that already runs cannot be refused.
    *refuse.lock().unwrap() = true;
    let mut pids = Vec::new();
    for _ in 0..4 {
        let (pid, tgid, again) = std::thread::spawn(move || {
            let me = threads.current().unwrap();
            let again = threads.current().unwrap();
            (me.pid(), me.tgid(), again.pid())
        })
        .join()
        .unwrap();
        assert_eq!((tgid, again), (threads.process().pid(), pid));
        pids.push(pid);
    }
    *refuse.lock().unwrap() = false;
    for pid in pids {
        // Pids are reused after free, so each thread's three events may recur; the log
        // holds them in order, and they come in complete triples.
        let events = events_of(&log, pid);
        assert!(!events.is_empty());
        for triple in events.chunks(3) {
            assert_eq!(
                triple,
                [
                    Seen::Fork(pid),
                    Seen::Exit(pid, ExitStatus::exited(0)),
                    Seen::Free(pid)
                ]
            );
        }
    }
}

/// Reports, when the thread-local holding it is destroyed, the state of the task it
/// was given and whether the thread still has that task.
struct Probe {
    source: &'static Threads,
    task: Option<Arc<Task>>,
    report: std::sync::mpsc::Sender<(TaskState, bool)>,
}

impl Drop for Probe {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            let same = matches!(self.source.current(), Ok(me) if Arc::ptr_eq(&me, &task));
            let _ = self.report.send((task.state(), same));
        }
    }
}

#[test]
#[cfg_attr(
    not(all(target_os = "linux", target_env = "gnu")),
    ignore = "elsewhere a thread-local destructor reports the end, so thread-locals made before the binding go after it"
)]
fn a_thread_keeps_its_task_until_every_thread_local_is_gone() {
    thread_local! {
        static PROBE: std::cell::RefCell<Option<Probe>> = const { std::cell::RefCell::new(None) };
    }
    let (threads, log, _) = source();
    let (report, reports) = std::sync::mpsc::channel();
    // Spawned through the source (bound first), and adopted after the thread-local was
    // made: either way the thread-local goes first, while the task is still running.
    let probe = move |report| {
        PROBE.with(|probe| {
            *probe.borrow_mut() = Some(Probe {
                source: threads,
                task: None,
                report,
            })
        });
        let me = threads.current().unwrap();
        PROBE.with(|probe| probe.borrow_mut().as_mut().unwrap().task = Some(me.clone()));
        me.pid()
    };
    let adopted = {
        let report = report.clone();
        std::thread::spawn(move || probe(report)).join().unwrap()
    };
    let spawned = threads.builder().spawn(move || probe(report)).unwrap();
    let spawned_pid = spawned.task().pid();
    spawned.join().unwrap();
    let seen: Vec<_> = reports.iter().collect();
    // The spawned thread has exited when its closure returned; the adopted one exits
    // only when the thread ends, after its thread-locals.
    assert_eq!(
        seen,
        [(TaskState::Running, true), (TaskState::Zombie, true)]
    );
    for pid in [adopted, spawned_pid] {
        assert_eq!(events_of(&log, pid).last(), Some(&Seen::Free(pid)));
    }
}

#[test]
fn a_watcher_at_a_threads_end_cannot_bind_it_again() {
    let table = WatcherTable::from_watchers([]).unwrap().leak();
    let threads: &'static Threads = Box::leak(Box::new(Threads::new(table)));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    table
        .watcher("test::reenter", EventSet::EXIT | EventSet::FREE)
        .register(move |event: &Event<'_>| {
            let ending = matches!(threads.current(), Err(CurrentError::ThreadEnding));
            log.lock().unwrap().push((event.kind(), ending));
            Ok::<(), &str>(())
        })
        .unwrap()
        .keep();
    let pid = std::thread::spawn(move || threads.current().unwrap().pid())
        .join()
        .unwrap();
    let forks_before = threads.tasks().stats().forks;
    assert_eq!(
        *seen.lock().unwrap(),
        [(EventKind::Exit, true), (EventKind::Free, true),]
    );
    // Nothing was adopted during the thread's end.
    assert_eq!(threads.tasks().stats().forks, forks_before);
    assert!(threads.tasks().get(pid).is_none());
}

#[test]
fn a_refused_spawn_names_the_watcher_and_runs_nothing() {
    let (threads, log, refuse) = source();
    *refuse.lock().unwrap() = true;
    let ran = Arc::new(Mutex::new(false));
    let flag = ran.clone();
    let error = threads
        .builder()
        .spawn(move || *flag.lock().unwrap() = true)
        .unwrap_err();
    assert_eq!(error.watcher(), Some("test::log"));
    assert!(error.to_string().contains("test::log"), "{error}");
    assert!(!*ran.lock().unwrap());
    // The log watcher itself refused the new thread, so no rollback `free` is due to
    // it, and nothing else happened.
    assert!(
        log.lock()
            .unwrap()
            .iter()
            .all(|seen| matches!(seen, Seen::Fork(_)))
    );
}

#[test]
fn an_os_failure_after_the_fork_watchers_rolls_back() {
    let (threads, log, _) = source();
    let me = threads.current().unwrap();
    // A stack larger than the address space: the OS refuses the thread.
    let error = threads
        .builder()
        .stack_size(1 << 52)
        .spawn(|| ())
        .unwrap_err();
    assert!(matches!(error, SpawnError::Os(_)), "{error}");
    let log = log.lock().unwrap();
    let forked: Vec<Pid> = log
        .iter()
        .filter_map(|seen| match seen {
            Seen::Fork(pid) if *pid != me.pid() && *pid != threads.process().pid() => Some(*pid),
            _ => None,
        })
        .collect();
    assert_eq!(forked.len(), 1);
    // The fork watcher that succeeded got `free`, and no `exit`.
    assert_eq!(log.last(), Some(&Seen::Free(forked[0])));
    assert!(!log.iter().any(|seen| matches!(seen, Seen::Exit(..))));
}

/// The size of this process's mapping that holds `address`, from `/proc/self/maps`.
fn mapping_size(address: usize) -> Option<usize> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| {
        let range = line.split_whitespace().next()?;
        let (start, end) = range.split_once('-')?;
        let start = usize::from_str_radix(start, 16).ok()?;
        let end = usize::from_str_radix(end, 16).ok()?;
        (start..end).contains(&address).then_some(end - start)
    })
}

#[test]
fn a_stack_size_asked_for_is_the_threads_stack() {
    if std::fs::metadata("/proc/self/maps").is_err() {
        println!("skipped: no /proc/self/maps");
        return;
    }
    let (threads, _, _) = source();
    let stack_of_this_thread = |()| {
        let local = 0u8;
        mapping_size(std::hint::black_box(&local) as *const u8 as usize)
    };
    const ASKED: usize = 16 << 20;
    let big = threads
        .builder()
        .stack_size(ASKED)
        .spawn(move || stack_of_this_thread(()))
        .unwrap()
        .join()
        .unwrap()
        .expect("the stack is a mapping");
    // The stack's mapping, less the guard page the OS keeps apart; std's default is
    // 2 MiB, so a builder that dropped the size would give far less.
    assert!(
        big >= ASKED - (1 << 20),
        "asked for {ASKED} bytes of stack, got a {big}-byte mapping"
    );
}

#[test]
fn names_and_renames_are_comm_events() {
    let (threads, log, _) = source();
    let handle = threads
        .builder()
        .name("first-name".into())
        .spawn(move || {
            threads.set_name("second-name-is-long").unwrap();
            let me = threads.current().unwrap();
            let tid = watchers_threads::os_tid(&me).unwrap();
            let os_name = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"));
            (me.comm(), os_name.ok())
        })
        .unwrap();
    let pid = handle.task().pid();
    let (comm, os_name) = handle.join().unwrap();
    assert_eq!(comm, "second-name-is-");
    if let Some(os_name) = os_name {
        assert_eq!(os_name.trim_end(), "second-name-is-");
    }
    let comms: Vec<Seen> = events_of(&log, pid)
        .into_iter()
        .filter(|seen| matches!(seen, Seen::Comm(..)))
        .collect();
    assert_eq!(
        comms,
        [
            Seen::Comm(pid, "first-name".into()),
            Seen::Comm(pid, "second-name-is-".into())
        ]
    );
    assert!(matches!(
        threads.set_name("a\0b"),
        Err(watchers_threads::RenameError::Nul)
    ));
}

#[test]
fn scoped_threads_borrow_and_are_freed_when_joined() {
    let (threads, log, _) = source();
    let mut values = vec![1, 2, 3];
    let pids = std::thread::scope(|scope| {
        let handles: Vec<_> = values
            .iter_mut()
            .map(|value| {
                threads
                    .builder()
                    .spawn_scoped(scope, move || *value *= 10)
                    .unwrap()
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                let pid = handle.task().pid();
                handle.join().unwrap();
                pid
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(values, [10, 20, 30]);
    let log = log.lock().unwrap();
    for pid in pids {
        assert_eq!(
            log.iter().filter(|seen| **seen == Seen::Free(pid)).count(),
            1
        );
    }
}

#[test]
fn the_event_order_of_spawned_threads_is_fork_exit_free_even_when_concurrent() {
    let (threads, log, _) = source();
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let barrier = barrier.clone();
            threads
                .builder()
                .spawn(move || {
                    // All eight run at once: the premise of the test.
                    barrier.wait();
                })
                .unwrap()
        })
        .collect();
    let pids: Vec<Pid> = handles.iter().map(|handle| handle.task().pid()).collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let mut distinct = pids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 8, "eight live threads have eight pids");
    for pid in pids {
        assert_eq!(
            events_of(&log, pid),
            [
                Seen::Fork(pid),
                Seen::Exit(pid, ExitStatus::exited(0)),
                Seen::Free(pid)
            ]
        );
    }
}

/// A thread that meets several sources is a task in each, and ends in each exactly once,
/// last met first: the thread spawned through `a` is adopted by `b`, then by `c`, and the
/// report of its end ends `c`'s task, then `b`'s (each `exit` then `free`); `a`'s task
/// exited when the closure returned and gets its `free` last.
#[test]
fn a_thread_bound_to_several_sources_ends_in_each_once_last_met_first() {
    let order: Arc<Mutex<Vec<(char, EventKind, Pid)>>> = Arc::default();
    let make = |label: char| -> &'static Threads {
        let table = WatcherTable::from_watchers([]).unwrap().leak();
        let seen = order.clone();
        table
            .watcher(format!("test::order-{label}"), EventSet::ALL)
            .register(move |event: &Event<'_>| {
                seen.lock()
                    .unwrap()
                    .push((label, event.kind(), event.task().pid()));
                Ok::<(), std::convert::Infallible>(())
            })
            .unwrap()
            .keep();
        Box::leak(Box::new(Threads::new(table)))
    };
    let (a, b, c) = (make('a'), make('b'), make('c'));
    let handle = a
        .builder()
        .spawn(move || {
            let in_b = b.current().unwrap().pid();
            let in_c = c.current().unwrap().pid();
            // Met once, found again: no second adoption.
            assert_eq!(b.current().unwrap().pid(), in_b);
            (in_b, in_c)
        })
        .unwrap();
    let in_a = handle.task().pid();
    let (in_b, in_c) = handle.join().unwrap();

    let order = order.lock().unwrap();
    let of = |label: char, pid: Pid| -> Vec<EventKind> {
        order
            .iter()
            .filter(|(l, _, p)| *l == label && *p == pid)
            .map(|(_, kind, _)| *kind)
            .collect()
    };
    for (label, pid) in [('a', in_a), ('b', in_b), ('c', in_c)] {
        assert_eq!(
            of(label, pid),
            [EventKind::Fork, EventKind::Exit, EventKind::Free],
            "source {label}"
        );
    }
    let endings: Vec<(char, EventKind)> = order
        .iter()
        .filter(|(label, kind, pid)| {
            matches!(kind, EventKind::Exit | EventKind::Free)
                && [('a', in_a), ('b', in_b), ('c', in_c)].contains(&(*label, *pid))
        })
        .map(|(label, kind, _)| (*label, *kind))
        .collect();
    assert_eq!(
        endings,
        [
            ('a', EventKind::Exit),
            ('c', EventKind::Exit),
            ('c', EventKind::Free),
            ('b', EventKind::Exit),
            ('b', EventKind::Free),
            ('a', EventKind::Free),
        ]
    );
}

/// A thread other than the main one that ends the process with `exit` has its
/// thread-local destructors run by glibc (as the main thread's are), and an `atexit`
/// handler reports its end: its task gets `exit` and `free`.
#[test]
#[cfg_attr(
    not(all(target_os = "linux", target_env = "gnu")),
    ignore = "relies on glibc running the exiting thread's destructors and atexit handlers"
)]
fn a_thread_that_calls_exit_still_gets_exit_and_free() {
    if std::env::var_os(common::CHILD).is_some() {
        // libtest runs this on a thread of its own: not the main thread.
        let _ = common::bind_reporting_to_stderr();
        std::process::exit(0);
    }
    common::child_reports_exit_and_free(&[
        "--exact",
        "a_thread_that_calls_exit_still_gets_exit_and_free",
        "--nocapture",
    ]);
}

/// Once a thread's task is freed, the OS may give its thread id to another thread:
/// `os_tid` no longer names it, as `TaskSlot` values are gone after `free`.
#[test]
fn a_freed_threads_os_tid_goes_with_it() {
    let (threads, _, _) = source();
    let handle = threads
        .builder()
        .spawn(move || watchers_threads::os_tid(&threads.current().unwrap()))
        .unwrap();
    let task = handle.task().clone();
    // The premise: the id was there while the thread ran.
    assert!(handle.join().unwrap().is_some());
    assert_eq!(task.state(), TaskState::Dead);
    assert_eq!(watchers_threads::os_tid(&task), None);
}

#[test]
#[cfg(target_os = "linux")]
fn an_adopted_threads_comm_is_its_name_cut_on_a_character_not_a_replacement_character() {
    let (threads, _log, _refuse) = source();
    // 16 bytes: the kernel keeps 15, cutting the emoji's 4 bytes after the third.
    let name = "abcdefghijkl\u{1F600}";
    let adopted = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || threads.current().unwrap().comm())
        .unwrap()
        .join()
        .unwrap();
    let spawned = threads
        .builder()
        .name(name.to_owned())
        .spawn(move || threads.current().unwrap().comm())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(spawned, "abcdefghijkl");
    assert_eq!(adopted, spawned, "the same name gives the same comm");
}
