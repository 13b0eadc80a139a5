//! `cargo xtask cuda-env` (the CUDA build environment from PyPI wheels and link stubs, see
//! cuda/setup_cuda_build_env.sh) and `cargo xtask gpu-bundle` (stripped GPU test and benchmark
//! binaries plus run.sh and the CuPy peer, in one folder to copy to a GPU machine).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::peers::root;

/// The recipe (pinned nvcc 13.0.88 wheels, link stubs); prints `export ...` lines.
const SETUP: &str = "xtask/cuda/setup_cuda_build_env.sh";
/// The bundle's runner script.
const RUN_SH: &str = include_str!("../cuda/run.sh");
/// The CuPy EDT peer of the bundle.
const CUPY_EDT: &str = include_str!("../peers/cupy_edt.py");
/// Largest bundle allowed (bytes).
const MAX_BUNDLE: u64 = 60 << 20;

/// Run the setup script for `dir` and return its stdout (the `export ...` lines).
fn setup(dir: &Path) -> Result<String, String> {
    // The script stubs libraries from the cudarc sources: make sure they are in the registry.
    let fetched = Command::new("cargo").args(["fetch", "--quiet"]).current_dir(root()).status();
    if !fetched.map(|s| s.success()).unwrap_or(false) {
        return Err("cargo fetch failed (the cudarc sources are needed for the link stubs)".into());
    }
    let out = Command::new("bash")
        .arg(root().join(SETUP))
        .arg(dir)
        .current_dir(root())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("bash {SETUP}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{SETUP} {} failed ({})", dir.display(), out.status));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("{SETUP}: {e}"))
}

/// `cuda-env [DIR]` (default `.cuda-env`): print the export lines, to be used as
/// `source <(cargo xtask cuda-env)`.
pub fn env(args: &[String]) -> Result<(), String> {
    let dir = args.first().map(PathBuf::from).unwrap_or_else(|| root().join(".cuda-env"));
    print!("{}", setup(&dir)?);
    Ok(())
}

/// `(name, value)` of every `export NAME="value"  # comment` line, with `$PATH` expanded.
fn parse_exports(text: &str) -> Vec<(String, String)> {
    let path = std::env::var("PATH").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = match v.strip_prefix('"') {
                Some(q) => q.split('"').next().unwrap_or(""),
                None => v.split_whitespace().next().unwrap_or(""),
            };
            (k.trim().to_string(), v.replace("\\$PATH", &path).replace("$PATH", &path))
        })
        .collect()
}

/// Build one cargo target in release with `envs`; returns the executables cargo reports for targets
/// named `name`.
fn build(cargo_args: &[&str], name: &str, envs: &[(String, String)]) -> Result<PathBuf, String> {
    let out = Command::new("cargo")
        .args(cargo_args)
        .args(["--release", "--message-format=json"])
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(root())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo {} failed ({})", cargo_args.join(" "), out.status));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == name)
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| format!("cargo {} reported no executable named {name}", cargo_args.join(" ")))
}

/// `gpu-bundle [--out DIR] [--env DIR]`: build (release, feature `cuda`) the metrics crate's GPU test
/// binary and the GPU EDT benchmark, strip them and put them with run.sh and cupy_edt.py into DIR
/// (default `out/gpu-bundle`). Runs the cuda-env setup itself (default env folder `.cuda-env`).
pub fn bundle(args: &[String]) -> Result<(), String> {
    let mut out = root().join("out/gpu-bundle");
    let mut env_dir = root().join(".cuda-env");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = || format!("{a} needs a value");
        match a.as_str() {
            "--out" => out = PathBuf::from(it.next().ok_or_else(value)?),
            "--env" => env_dir = PathBuf::from(it.next().ok_or_else(value)?),
            _ => return Err(format!("gpu-bundle: unknown argument {a}\n{}", crate::USAGE)),
        }
    }
    let envs = parse_exports(&setup(&env_dir)?);
    for key in ["NVCC", "CUDA_COMPUTE_CAP", "CUDARC_CUDA_VERSION", "CUDA_HOME", "PATH"] {
        if !envs.iter().any(|(k, _)| k == key) {
            return Err(format!("{SETUP} printed no export of {key}"));
        }
    }
    eprintln!("building the GPU test binary and benchmark (release, --features cuda)");
    let test = build(
        &["test", "-p", "magseg-metrics", "--features", "cuda", "--test", "cuda_edt", "--no-run"],
        "cuda_edt",
        &envs,
    )?;
    let bench = build(
        &["build", "-p", "magseg-metrics", "--features", "cuda", "--example", "edt_gpu_bench"],
        "edt_gpu_bench",
        &envs,
    )?;
    if out.exists() {
        std::fs::remove_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    for (src, name) in [(&test, "cuda_edt"), (&bench, "edt_gpu_bench")] {
        let dst = out.join(name);
        std::fs::copy(src, &dst).map_err(|e| format!("copy {} -> {}: {e}", src.display(), dst.display()))?;
        let ok = Command::new("strip").arg(&dst).status().map(|s| s.success()).unwrap_or(false);
        if !ok {
            return Err(format!("strip {} failed", dst.display()));
        }
    }
    write(&out.join("run.sh"), RUN_SH, true)?;
    write(&out.join("cupy_edt.py"), CUPY_EDT, false)?;
    let mut total = 0;
    for e in std::fs::read_dir(&out).map_err(|e| e.to_string())?.flatten() {
        let len = e.metadata().map(|m| m.len()).unwrap_or(0);
        println!("{:>12}  {}", len, e.path().display());
        total += len;
    }
    println!("bundle {}: {:.1} MiB; on the GPU machine: ./run.sh OUTDIR", out.display(), total as f64 / 1048576.0);
    if total > MAX_BUNDLE {
        return Err(format!("the bundle is {total} bytes, over the limit of {MAX_BUNDLE}"));
    }
    Ok(())
}

/// Write `text` to `path` (executable when `exec`).
fn write(path: &Path, text: &str, exec: bool) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    if exec {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_are_parsed_with_comments_and_path() {
        let e = parse_exports(
            "export NVCC=\"/x/nvcc\"  # c\nexport CUDA_COMPUTE_CAP=90   # no\nexport PATH=\"/x:$PATH\"\n",
        );
        assert_eq!(e[0], ("NVCC".into(), "/x/nvcc".into()));
        assert_eq!(e[1], ("CUDA_COMPUTE_CAP".into(), "90".into()));
        assert!(e[2].1.starts_with("/x:") && !e[2].1.contains('$'));
    }
}
