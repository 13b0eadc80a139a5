//! magseg-testkit: helpers shared by the workspace's tests (a dev-dependency only, never of a library):
//! locating the real data in `../shared/data` with a clear skip when it is absent, or a failure when
//! `MAGSEG_REQUIRE_SHARED=1` (CI).

use std::path::PathBuf;

/// `../shared/data` relative to the workspace root (it may be missing).
pub fn shared_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data")
}

/// Whether tests must fail instead of skipping when shared data is missing (`MAGSEG_REQUIRE_SHARED=1`).
pub fn shared_required() -> bool {
    std::env::var("MAGSEG_REQUIRE_SHARED").is_ok_and(|v| v == "1")
}

/// Reports that `test` is skipped, with the reason, as a `SKIPPED {test}: {why}` line.
pub fn skip(test: &str, why: &str) {
    // Written to the real stderr, not through eprintln!, so the test harness's capture does not hide it.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// `../shared/data` relative to the workspace root, or `None` (with a SKIPPED line) when absent.
/// With `MAGSEG_REQUIRE_SHARED=1` absence is a test failure.
pub fn shared_data(test: &str) -> Option<PathBuf> {
    let root = shared_root();
    if root.is_dir() {
        return Some(root);
    }
    if shared_required() {
        panic!("{test}: ../shared/data is required (MAGSEG_REQUIRE_SHARED=1) but {} is missing", root.display());
    }
    skip(test, &format!("../shared/data not found at {}", root.display()));
    None
}
