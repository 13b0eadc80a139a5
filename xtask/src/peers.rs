//! The Python environment of the peer tools (`.peers/` at the workspace root), created on first use.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Pinned peer packages for IO benchmarks and golden files.
pub const LIGHT: &[&str] = &["numpy==2.4.6", "nibabel==5.4.2", "scipy==1.17.1", "MedPy==0.5.2"];
/// Pinned peer packages that need PyTorch (about 6 GB): MONAI metrics and models.
pub const TORCH: &[&str] = &[
    "numpy==2.4.6",
    "nibabel==5.4.2",
    "scipy==1.17.1",
    "MedPy==0.5.2",
    "torch==2.15.0",
    "monai==1.6.1",
    "einops==0.8.2",
];

/// The workspace root (the folder holding xtask/).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// Path of the venv's python, creating the venv and installing `packages` when an import fails.
pub fn python(packages: &[&str], imports: &str) -> Result<PathBuf, String> {
    let venv = root().join(".peers");
    let py = venv.join("bin/python");
    let ok = |py: &Path| {
        Command::new(py)
            .args(["-c", &format!("import {imports}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if py.exists() && ok(&py) {
        return Ok(py);
    }
    eprintln!("setting up the peer environment in {} ({})", venv.display(), packages.join(" "));
    if !py.exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    run(Command::new(&py).args(["-m", "pip", "install", "--quiet"]).args(packages))?;
    if ok(&py) {
        Ok(py)
    } else {
        Err(format!("peer environment still cannot import {imports}"))
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let st = cmd.status().map_err(|e| format!("{cmd:?}: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {st}"))
    }
}

/// A one-line description of this machine for benchmark records.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{cpu}, {cores} cores")
}
