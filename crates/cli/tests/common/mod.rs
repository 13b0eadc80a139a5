//! Shared helpers of the CLI tests: locating `../shared/data` with a clear skip (or failure in CI).

#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared/data` relative to the workspace root, or `None` (with a SKIPPED line) when absent.
/// With `MAGSEG_REQUIRE_SHARED=1` absence is a test failure.
pub fn shared_data(test: &str) -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if root.is_dir() {
        return Some(root);
    }
    if std::env::var("MAGSEG_REQUIRE_SHARED").is_ok_and(|v| v == "1") {
        panic!("{test}: ../shared/data is required (MAGSEG_REQUIRE_SHARED=1) but {} is missing", root.display());
    }
    // Written to the real stderr, not through eprintln!, so the test harness's capture does not hide it.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: ../shared/data not found at {}", root.display());
    None
}
