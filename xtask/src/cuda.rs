//! `cargo xtask cuda-env` (the CUDA build environment from PyPI wheels and link stubs, see
//! cuda/setup_cuda_build_env.sh) and `cargo xtask gpu-bundle` (stripped GPU test and benchmark
//! binaries, the `magseg` binary, run.sh, the CuPy and PyTorch peers and a training configuration, in
//! one folder to copy to a GPU machine).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::peers::root;

/// The recipe (pinned nvcc 13.0.88 wheels, link stubs); prints `export ...` lines.
const SETUP: &str = "xtask/cuda/setup_cuda_build_env.sh";
/// The bundle's runner script.
const RUN_SH: &str = include_str!("../cuda/run.sh");
/// The CuPy EDT peer of the bundle.
const CUPY_EDT: &str = include_str!("../peers/cupy_edt.py");
/// The PyTorch/cuDNN conv3d peer of the bundle.
const TORCH_CONV3D: &str = include_str!("../peers/torch_conv3d.py");
/// The phantom training configuration run.sh trains on the GPU.
const TRAIN_PHANTOM: &str = include_str!("../../data/examples/train-phantom.toml");
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

/// `gpu-bundle [--out DIR] [--env DIR]`: build (release, feature `cuda`) the GPU test binaries
/// (metrics `cuda_edt`, kernels `cuda_conv`, model `cuda_model`), the GPU benchmarks (`edt_gpu_bench`,
/// `conv_gpu_bench`) and the `magseg` binary, strip them and put them with run.sh, cupy_edt.py,
/// torch_conv3d.py and train-phantom.toml into DIR (default `out/gpu-bundle`). When the stripped
/// binaries exceed the size limit, the largest are gzipped (`NAME.gz`; run.sh unpacks them). Runs the
/// cuda-env setup itself (default env folder `.cuda-env`).
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
    eprintln!("building the GPU test binaries, benchmarks and magseg (release, --features cuda)");
    let targets: [(&[&str], &str); 6] = [
        (&["test", "-p", "magseg-metrics", "--features", "cuda", "--test", "cuda_edt", "--no-run"], "cuda_edt"),
        (&["build", "-p", "magseg-metrics", "--features", "cuda", "--example", "edt_gpu_bench"], "edt_gpu_bench"),
        (&["test", "-p", "magseg-kernels", "--features", "cuda", "--test", "cuda_conv", "--no-run"], "cuda_conv"),
        (&["build", "-p", "magseg-kernels", "--features", "cuda", "--example", "conv_gpu_bench"], "conv_gpu_bench"),
        (&["test", "-p", "magseg-model", "--features", "cuda", "--test", "cuda_model", "--no-run"], "cuda_model"),
        (&["build", "-p", "magseg-cli", "--features", "cuda", "--bin", "magseg"], "magseg"),
    ];
    let mut built = Vec::new();
    for (cargo_args, name) in targets {
        built.push((build(cargo_args, name, &envs)?, name));
    }
    if out.exists() {
        std::fs::remove_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    for (src, name) in &built {
        let dst = out.join(name);
        std::fs::copy(src, &dst).map_err(|e| format!("copy {} -> {}: {e}", src.display(), dst.display()))?;
        let ok = Command::new("strip").arg(&dst).status().map(|s| s.success()).unwrap_or(false);
        if !ok {
            return Err(format!("strip {} failed", dst.display()));
        }
    }
    write(&out.join("run.sh"), RUN_SH, true)?;
    write(&out.join("cupy_edt.py"), CUPY_EDT, false)?;
    write(&out.join("torch_conv3d.py"), TORCH_CONV3D, false)?;
    write(&out.join("train-phantom.toml"), TRAIN_PHANTOM, false)?;
    compress_to_fit(&out, &built.iter().map(|(_, n)| *n).collect::<Vec<_>>())?;
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

/// Total size in bytes of the files directly in `dir`.
fn dir_size(dir: &Path) -> Result<u64, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(entries.flatten().map(|e| e.metadata().map(|m| m.len()).unwrap_or(0)).sum())
}

/// While the bundle is over [`MAX_BUNDLE`], gzip the largest of the binaries `names` in `dir` (to
/// `NAME.gz`, which run.sh unpacks; candle's embedded PTX shrinks about 4-fold, xz would give 9-fold).
fn compress_to_fit(dir: &Path, names: &[&str]) -> Result<(), String> {
    let mut left: Vec<(u64, &str)> =
        names.iter().map(|n| (std::fs::metadata(dir.join(n)).map(|m| m.len()).unwrap_or(0), *n)).collect();
    left.sort();
    while dir_size(dir)? > MAX_BUNDLE {
        let Some((_, name)) = left.pop() else { break };
        let ok = Command::new("gzip").args(["-9", "-n"]).arg(dir.join(name)).status().map(|s| s.success());
        if !ok.unwrap_or(false) {
            return Err(format!("gzip {} failed", dir.join(name).display()));
        }
        eprintln!("gzipped {name} to fit the bundle into {} MiB", MAX_BUNDLE >> 20);
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
