//! Setup shared by the source's tests.

use std::sync::Mutex;

use watchers_core::WatcherTable;
use watchers_process::Processes;

/// A source on `table`, for the test's duration, with `log` emptied of what its watchers
/// saw while the source adopted the program's own task.
pub fn leaked_source<T>(table: &'static WatcherTable, log: &Mutex<Vec<T>>) -> &'static Processes {
    let processes: &'static Processes = Box::leak(Box::new(Processes::new(table)));
    log.lock().unwrap().clear();
    processes
}
