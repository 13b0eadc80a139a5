//! Build script of magseg-kernels: with the `cuda` feature, compiles every kernel file of src/cuda/
//! (`conv3d.cu`: direct kernels, `conv3d_igemm.cu`: implicit-GEMM / tensor-core kernels, `optim.cu`: the
//! fused Adam passes, `activation.cu`: leaky ReLU, GELU and 2×2×2 max pooling, `rows.cu`: layer norm and
//! softmax over rows, `norm.cu`: instance norm) to PTX with nvcc
//! (`$NVCC`, else `nvcc` on PATH; `-arch=compute_$CUDA_COMPUTE_CAP`, default 90) into `OUT_DIR`.
//! Without the feature it does nothing, so CPU builds need no CUDA.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    println!("cargo::rerun-if-env-changed=NVCC");
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".to_string());
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".to_string());
    let cap = cap.trim().replace('.', "");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // Included by activation.cu and norm.cu.
    println!("cargo::rerun-if-changed=src/cuda/bf16.cuh");
    for name in ["conv3d", "conv3d_igemm", "optim", "activation", "rows", "norm"] {
        let src = format!("src/cuda/{name}.cu");
        println!("cargo::rerun-if-changed={src}");
        let out = out_dir.join(format!("{name}.ptx"));
        // Fused multiply-adds stay on: the CPU's gemm sums in another order anyway, so the GPU result
        // equals the CPU's within f32 rounding, not bit for bit (tests/cuda_conv.rs states the tolerance).
        let status = Command::new(&nvcc)
            .args(["-ptx", &format!("-arch=compute_{cap}"), "-O3", "-o"])
            .arg(&out)
            .arg(&src)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => panic!("{nvcc} failed ({s}) compiling {src}"),
            Err(e) => {
                panic!("cannot run {nvcc} ({e}): the `cuda` feature needs nvcc; run `source <(cargo xtask cuda-env)` first")
            }
        }
    }
}
