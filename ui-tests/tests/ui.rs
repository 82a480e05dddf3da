//! Compile-pass and compile-fail cases of `#[task_watcher]`.
//!
//! The `.stderr` files hold the diagnostics of the pinned toolchain
//! (`rust-toolchain.toml`); after a toolchain bump, regenerate them with
//! `TRYBUILD=overwrite cargo test -p ui-tests` and review the diff.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
