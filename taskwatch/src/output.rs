//! Writing to stdout and stderr without panicking: `print!` and `eprintln!` panic when
//! the stream is closed or full.

use std::io::{self, Write};
use std::process::ExitCode;

/// Writes a line to stderr; a stderr that cannot be written to is ignored (there is
/// nowhere left to report it).
pub fn write_warning(message: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "taskwatch: {message}");
}

/// `say!("...")`: [`write_warning`] with `format!` arguments.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::write_warning(format_args!($($arg)*))
    };
}
pub(crate) use say;

/// Writes `text` to stdout and flushes it.
///
/// # Errors
/// What the write returned.
pub fn print(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// The exit code after a failed write to stdout: a reader that went away (`| head`)
/// ends the program quietly and successfully; any other failure (a full disk,
/// `/dev/full`) is reported and fails.
pub fn write_failed(error: &io::Error) -> ExitCode {
    if error.kind() == io::ErrorKind::BrokenPipe {
        ExitCode::SUCCESS
    } else {
        say!("cannot write the output: {error}");
        ExitCode::FAILURE
    }
}
