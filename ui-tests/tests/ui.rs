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

/// The README gives the number of compile-fail cases; it stays the number there is.
#[test]
fn the_readme_counts_every_compile_fail_case() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ui/fail");
    let cases = std::fs::read_dir(dir)
        .expect("the fail cases")
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|e| e == "rs"))
        .count();
    // Line breaks fall anywhere in a paragraph: compare with whitespace collapsed.
    let readme = include_str!("../../README.md")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let lead = "`ui-tests/tests/ui/fail` has one case for each (";
    let said = readme
        .split(lead)
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("the README no longer says: {lead}"));
    assert_eq!(
        said,
        cases.to_string(),
        "README's count of compile-fail cases"
    );
}
