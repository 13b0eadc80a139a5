//! `cargo xtask`: project automation — benchmarks side by side with peer tools, architecture checks.

mod bench;
mod cuda;
mod peers;
mod tidy;

/// Usage text.
pub const USAGE: &str = "usage: cargo xtask <command>
  bench io [--case DIR] [--rounds N] [--reps N]   load a BraTS case: magseg vs nibabel
  bench metrics [--reps N] [--seg FILE]          EDT vs scipy, HD95 vs MONAI and MedPy
  bench ops [--reps N]                           conv3d / conv_transpose3d vs PyTorch (CPU)
  bench model [--reps N] [--roi 96]              UNETR and MAG-MS forward vs MONAI / PyTorch (CPU)
  cuda-env [DIR]                                CUDA build env from PyPI wheels in DIR (default .cuda-env);
                                                prints export lines: source <(cargo xtask cuda-env)
  gpu-bundle [--out DIR] [--env DIR]            GPU tests, benchmarks, peers and accuracy data for a GPU
                                                machine (default out/gpu-bundle; runs cuda-env itself):
                                                DIR/run.sh OUT [tests kernels model peer phantom accuracy-magseg accuracy-peer]
  tidy                                          dependency direction and file-header checks";

fn main() -> std::process::ExitCode {
    // As the magseg binary does: large blocks stay in the heap for reuse (see magseg_kernels::alloc).
    magseg_kernels::alloc::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("bench") => bench::run(&args[1..]),
        Some("tidy") => tidy::run(),
        Some("cuda-env") => cuda::env(&args[1..]),
        Some("gpu-bundle") => cuda::bundle(&args[1..]),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
