//! NVRTC compile check of every `*.cu` under crates/, without a GPU: compiles each file with the real
//! libnvrtc.so.13 of `nvidia-cuda-nvrtc==13.0.88` (installed into `.cuda-env/venv` by
//! `cargo xtask cuda-env`) through xtask/cuda/nvrtc_check.py, for compute_90 with `--fmad=false`.
//!
//! This test is allowed to SKIP: when no libnvrtc.so.13 is found under `$MAGSEG_CUDA_ENV` (default
//! `.cuda-env`) or python3 is missing, it prints `SKIPPED nvrtc compile check: ...` to stderr and
//! passes. Run `cargo xtask cuda-env` once to make it run.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// Files under `dir` whose name ends with `ext`, recursively, sorted.
fn find(dir: &Path, keep: &dyn Fn(&Path) -> bool, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            find(&p, keep, found);
        } else if keep(&p) {
            found.push(p);
        }
    }
}

#[test]
fn every_cu_file_compiles_with_nvrtc() {
    let env = std::env::var_os("MAGSEG_CUDA_ENV").map(PathBuf::from).unwrap_or_else(|| root().join(".cuda-env"));
    // The real library lives in the venv (link/lib holds a stub with the same name).
    let mut libs = Vec::new();
    find(&env.join("venv"), &|p| p.file_name().is_some_and(|n| n == "libnvrtc.so.13"), &mut libs);
    let Some(lib) = libs.first() else {
        eprintln!(
            "SKIPPED nvrtc compile check: no libnvrtc.so.13 under {}/venv (run `cargo xtask cuda-env`)",
            env.display()
        );
        return;
    };
    let mut sources = Vec::new();
    find(&root().join("crates"), &|p| p.extension().is_some_and(|e| e == "cu"), &mut sources);
    sources.sort();
    assert!(!sources.is_empty(), "no .cu files under crates/");
    let out = match Command::new("python3")
        .arg(root().join("xtask/cuda/nvrtc_check.py"))
        .arg(lib)
        .arg(std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into()))
        .args(&sources)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("SKIPPED nvrtc compile check: cannot run python3 ({e})");
            return;
        }
    };
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{text}");
    assert!(out.status.success(), "NVRTC rejected a .cu file:\n{text}");
}
