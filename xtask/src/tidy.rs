//! `cargo xtask tidy`: architecture checks — dependency direction (DESIGN.md §1) and file headers.

use std::process::Command;

use crate::peers::root;

/// Crates that must never depend on candle (directly or transitively).
const CANDLE_FREE: &[&str] = &["magseg-volume", "magseg-metrics", "magseg-patch"];

/// Run every check; the error lists all failures.
pub fn run() -> Result<(), String> {
    let mut failures = Vec::new();
    let members = workspace_members()?;
    for krate in CANDLE_FREE.iter().filter(|k| members.iter().any(|m| m == *k)) {
        let out = Command::new("cargo")
            .args(["tree", "--quiet", "-e", "normal", "--prefix", "none", "-p", krate])
            .current_dir(root())
            .output()
            .map_err(|e| format!("cargo tree: {e}"))?;
        if !out.status.success() {
            return Err(format!("cargo tree -p {krate} failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let tree = String::from_utf8_lossy(&out.stdout);
        let bad: Vec<&str> = tree.lines().filter(|l| l.starts_with("candle")).collect();
        if bad.is_empty() {
            println!("ok: {krate} does not depend on candle");
        } else {
            failures.push(format!("{krate} depends on candle: {}", bad.join(", ")));
        }
    }
    let out =
        Command::new("git").args(["ls-files", "*.rs"]).current_dir(root()).output().map_err(|e| format!("git: {e}"))?;
    for f in String::from_utf8_lossy(&out.stdout).lines() {
        let text = std::fs::read_to_string(root().join(f)).unwrap_or_default();
        if !text.starts_with("//!") {
            failures.push(format!("{f}: does not start with a //! line"));
        }
    }
    if failures.is_empty() {
        println!("ok: every tracked .rs file starts with a //! line");
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

fn workspace_members() -> Result<Vec<String>, String> {
    let out = Command::new("cargo")
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(root())
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    Ok(v["packages"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["name"].as_str().map(String::from)).collect())
        .unwrap_or_default())
}
