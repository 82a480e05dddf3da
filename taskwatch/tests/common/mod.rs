//! Outputs that refuse writes, for the tests of both binaries.

use std::process::Stdio;

/// `/dev/full`: every write fails with ENOSPC.
pub fn dev_full() -> Stdio {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full")
        .into()
}

/// A pipe whose reading end is already closed: every write fails with EPIPE.
pub fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    writer.into()
}
