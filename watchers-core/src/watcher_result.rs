//! What a watcher returns: the boxed error, and the conversions from the return
//! types a watcher may declare.

/// The error a watcher returns: any error type, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a watcher returns once its own return type is converted.
pub type WatcherResult = Result<(), BoxError>;

/// The return types a task watcher may have: `()` or `Result<(), E>` where `E` converts
/// into [`BoxError`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a return type a task watcher can have",
    label = "unsupported return type",
    note = "a task watcher returns `()` or `Result<(), E>` where `E` converts into `watchers_core::BoxError` (any `std::error::Error + Send + Sync + 'static`, a `String` or a `&str`)"
)]
pub trait IntoWatcherResult {
    /// Converts the watcher's own return value.
    fn into_watcher_result(self) -> WatcherResult;
}

impl IntoWatcherResult for () {
    #[inline]
    fn into_watcher_result(self) -> WatcherResult {
        Ok(())
    }
}

impl<E: IntoWatcherError> IntoWatcherResult for Result<(), E> {
    #[inline]
    fn into_watcher_result(self) -> WatcherResult {
        self.map_err(IntoWatcherError::into_watcher_error)
    }
}

/// The error types a task watcher may return in `Result<(), E>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the error type of a task watcher",
    label = "this error type does not convert into `watchers_core::BoxError`",
    note = "a task watcher returns `()` or `Result<(), E>` where `E` converts into `watchers_core::BoxError` (any `std::error::Error + Send + Sync + 'static`, a `String` or a `&str`)"
)]
pub trait IntoWatcherError {
    /// Boxes the error.
    fn into_watcher_error(self) -> BoxError;
}

// Without this, rustc explains a bad error type through the blanket impl's own bound
// ("`i32: Error` is not satisfied") instead of this trait's message.
#[diagnostic::do_not_recommend]
impl<E: Into<BoxError>> IntoWatcherError for E {
    #[inline]
    fn into_watcher_error(self) -> BoxError {
        self.into()
    }
}
