//! `cargo xtask cuda-env` (the CUDA build environment from PyPI wheels and link stubs, see
//! cuda/setup_cuda_build_env.sh) and `cargo xtask gpu-bundle` (stripped GPU test and benchmark
//! binaries, the `magseg` binary, run.sh and summary.py, the peers, training configurations and the
//! accuracy data, in one folder to copy to a GPU machine; docs/GPU.md).

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
/// The accuracy stage's training configuration.
const TRAIN_BRATS_GPU: &str = include_str!("../../data/examples/train-brats-2mm-gpu.toml");
/// The bundle's result tables.
const SUMMARY: &str = include_str!("../cuda/summary.py");
/// The converter of prep_brats_2mm.py's npz files into a NIfTI data set.
const NPZ_TO_NIFTI: &str = include_str!("../peers/npz_to_nifti.py");
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

/// The GPU binaries of the bundle: (cargo target kind, target name).
const TARGETS: [(&str, &str); 8] = [
    ("test", "cuda_edt"),
    ("test", "cuda_conv"),
    ("test", "cuda_model"),
    ("test", "cuda_model_tf32"),
    ("example", "edt_gpu_bench"),
    ("example", "conv_gpu_bench"),
    ("example", "model_bench"),
    ("bin", "magseg"),
];

/// Build every GPU binary in one release cargo invocation (one feature resolution, so candle's CUDA
/// kernels compile once) and return `(path, name)` of each.
fn build_all(envs: &[(String, String)]) -> Result<Vec<(PathBuf, &'static str)>, String> {
    let mut args: Vec<String> = ["build", "--release", "--message-format=json"].map(String::from).to_vec();
    for p in ["magseg-metrics", "magseg-kernels", "magseg-model", "magseg-train", "magseg-cli"] {
        args.extend(["-p".to_string(), p.to_string()]);
    }
    args.extend([
        "--features".into(),
        "magseg-metrics/cuda magseg-kernels/cuda magseg-model/cuda magseg-train/cuda magseg-cli/cuda".into(),
    ]);
    for (kind, name) in TARGETS {
        args.extend([format!("--{kind}"), name.to_string()]);
    }
    let out = Command::new("cargo")
        .args(&args)
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(root())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo {} failed ({})", args.join(" "), out.status));
    }
    let artifacts: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact")
        .collect();
    TARGETS
        .iter()
        .map(|&(_, name)| {
            artifacts
                .iter()
                .filter(|v| v["target"]["name"] == name)
                .find_map(|v| v["executable"].as_str().map(PathBuf::from))
                .map(|p| (p, name))
                .ok_or_else(|| format!("cargo reported no executable named {name}"))
        })
        .collect()
}

/// The python with nibabel for preparing the accuracy data: `$PYTHON`, else the peers' venv
/// (`.peers/`, created with the light peer packages on first use), else `python3`.
fn data_python() -> PathBuf {
    if let Some(p) = std::env::var_os("PYTHON") {
        return PathBuf::from(p);
    }
    match crate::peers::python(crate::peers::LIGHT, "numpy, nibabel") {
        Ok(py) => py,
        Err(e) => {
            eprintln!("warning: {e}; preparing the accuracy data with python3");
            PathBuf::from("python3")
        }
    }
}

/// Run `cmd`, turning a failure into a message naming `what`.
fn run_ok(cmd: &mut Command, what: &str) -> Result<(), String> {
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("{what} failed ({s})")),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

/// The accuracy stage's inputs in `out/data`: prep_brats_2mm.py of the shared BraTS cases, the first
/// 12 by id into train.npz, the last 3 into test.npz (the split of data/examples/train-brats-2mm.toml).
fn accuracy_data(python: &Path, out: &Path, shared: &Path) -> Result<(), String> {
    let brats = shared.join("data/brats2018");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&brats)
        .map_err(|e| format!("{}: {e}", brats.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    if cases.len() < 15 {
        return Err(format!("{}: expected 15 BraTS cases, found {}", brats.display(), cases.len()));
    }
    let data = out.join("data");
    std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
    let prep = shared.join("peers/prep_brats_2mm.py");
    for (file, part) in [("train.npz", &cases[..12]), ("test.npz", &cases[12..15])] {
        let mut cmd = Command::new(python);
        cmd.arg(&prep).arg(data.join(file)).args(part).stdout(Stdio::null());
        run_ok(&mut cmd, &format!("{} {file} (needs numpy and nibabel; set PYTHON)", prep.display()))?;
    }
    Ok(())
}

/// `gpu-bundle [--out DIR] [--env DIR]`: build (release, feature `cuda`, one cargo invocation) the GPU
/// test binaries (metrics `cuda_edt`, kernels `cuda_conv`, model `cuda_model` and `cuda_model_tf32`), the benchmarks
/// (`edt_gpu_bench`, `conv_gpu_bench`, `model_bench`) and `magseg`, strip them, xz the large ones
/// (`NAME.xz`; run.sh unpacks them), and put them into DIR (default `out/gpu-bundle`) with run.sh,
/// summary.py, the peers (cupy_edt.py, torch_conv3d.py, ../shared/peers/{gpu_peer,magms_unet_ref}.py
/// and the MONAI and einops wheels from PyPI), npz_to_nifti.py, the phantom and BraTS-2 mm GPU training
/// configurations and, for the accuracy stage, the 15 shared BraTS cases prepared at 2 mm by
/// prep_brats_2mm.py (`data/`). Runs the cuda-env setup itself (default env folder `.cuda-env`).
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
    let shared = root().join("../shared");
    for f in ["peers/gpu_peer.py", "peers/magms_unet_ref.py", "peers/prep_brats_2mm.py"] {
        if !shared.join(f).is_file() {
            return Err(format!("{} is missing (the bundle ships the shared peers)", shared.join(f).display()));
        }
    }
    let envs = parse_exports(&setup(&env_dir)?);
    for key in ["NVCC", "CUDA_COMPUTE_CAP", "CUDARC_CUDA_VERSION", "CUDA_HOME", "PATH"] {
        if !envs.iter().any(|(k, _)| k == key) {
            return Err(format!("{SETUP} printed no export of {key}"));
        }
    }
    eprintln!("building the GPU test binaries, benchmarks and magseg (release, --features cuda)");
    let built = build_all(&envs)?;
    if out.exists() {
        std::fs::remove_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    for (src, name) in &built {
        let dst = out.join(name);
        std::fs::copy(src, &dst).map_err(|e| format!("copy {} -> {}: {e}", src.display(), dst.display()))?;
        run_ok(Command::new("strip").arg(&dst), &format!("strip {}", dst.display()))?;
        if std::fs::metadata(&dst).map(|m| m.len()).unwrap_or(0) > 4 << 20 {
            // candle's embedded PTX text shrinks about 9-fold with xz (4-fold with gzip).
            run_ok(Command::new("xz").args(["-9", "-T2", "-f"]).arg(&dst), &format!("xz {}", dst.display()))?;
        }
    }
    for (name, text, exec) in [
        ("run.sh", RUN_SH, true),
        ("summary.py", SUMMARY, false),
        ("cupy_edt.py", CUPY_EDT, false),
        ("torch_conv3d.py", TORCH_CONV3D, false),
        ("npz_to_nifti.py", NPZ_TO_NIFTI, false),
        ("train-phantom.toml", TRAIN_PHANTOM, false),
        ("train-brats-2mm-gpu.toml", TRAIN_BRATS_GPU, false),
    ] {
        write(&out.join(name), text, exec)?;
    }
    for f in ["gpu_peer.py", "magms_unet_ref.py"] {
        let (src, dst) = (shared.join("peers").join(f), out.join(f));
        std::fs::copy(&src, &dst).map_err(|e| format!("copy {} -> {}: {e}", src.display(), dst.display()))?;
    }
    let wheels = out.join("wheels");
    // Checked (and the venv set up) once for the wheels and the accuracy data.
    let python = data_python();
    let mut pip = Command::new(&python);
    pip.args(["-m", "pip", "download", "--quiet", "--no-deps", "-d"]).arg(&wheels).args(["monai", "einops"]);
    if let Err(e) = run_ok(&mut pip, "pip download monai einops") {
        eprintln!("warning: {e}; the bundle's `peer` stage will lack MONAI");
    }
    if let Err(e) = accuracy_data(&python, &out, &shared) {
        eprintln!("warning: {e}; the bundle's `accuracy` stage will report missing data");
    }
    let total = tree_size(&out)?;
    for e in std::fs::read_dir(&out).map_err(|e| e.to_string())?.flatten() {
        println!("{:>12}  {}", tree_size(&e.path())?, e.path().display());
    }
    println!(
        "bundle {}: {:.1} MiB; on the GPU machine: ./run.sh OUTDIR [tests kernels model peer phantom accuracy-magseg accuracy-peer]",
        out.display(),
        total as f64 / 1048576.0
    );
    if total > MAX_BUNDLE {
        return Err(format!("the bundle is {total} bytes, over the limit of {MAX_BUNDLE}"));
    }
    Ok(())
}

/// Total size in bytes of `p` (a file, or a folder's files, recursively).
fn tree_size(p: &Path) -> Result<u64, String> {
    let meta = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for e in std::fs::read_dir(p).map_err(|e| format!("{}: {e}", p.display()))?.flatten() {
        total += tree_size(&e.path())?;
    }
    Ok(total)
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
