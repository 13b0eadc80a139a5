//! The CUDA kernels of src/cuda/ run on the CPU through a C++ emulation shim (tests/emu/: threads per
//! block, a barrier for `__syncthreads`, the mma and ldmatrix fragment layouts of the PTX ISA), with
//! the launch configuration of the Rust launchers (src/cuda/*.rs) mirrored in tests/emu/*.cpp, and
//! every kernel bit-identical when run twice:
//!
//! - conv3d_igemm.cu (implicit GEMM f32 FMA / bf16 and tf32 tensor cores, channels-last staging,
//!   split-K backward-weight, one-tap backward-data) and conv3d.cu (the direct reference kernels)
//!   against a double-precision direct convolution: `|err| ≤ 1e-4 · max |ref|` (f32),
//!   `≤ 1e-2 · max |ref|` (bf16), `≤ 2e-3 · max |ref|` (tf32);
//! - norm.cu (instance norm, with and without γ/β and the fused leaky ReLU, f32 and bf16, one and
//!   several chunks per slice) against double-precision definitions (norm_emu.cpp);
//! - rows.cu (layer norm, softmax), activation.cu (leaky ReLU, GELU, max pooling) and optim.cu (the
//!   Adam passes): bit for bit against C++ transcriptions of the CPU code where the GPU tests claim
//!   bit equality (leaky ReLU, max pooling, Adam), against double-precision definitions within
//!   cuda_conv.rs's bounds otherwise (rows_emu.cpp).
//!
//! A check of the kernels' index logic without a GPU (not of the Rust launch code itself, which the
//! programs copy by hand, not of timing, the GPU's math library or the hardware).
//!
//! Needs g++ with C++20 and bash (about 5–7 minutes on 2 cores); without them it prints
//! `SKIPPED kernel emulation: ...` and passes.

use std::path::Path;
use std::process::Command;

#[test]
fn cuda_kernels_match_the_reference_in_host_emulation() {
    if Command::new("g++").arg("--version").output().is_err() {
        eprintln!("SKIPPED kernel emulation: no g++ on PATH");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/emu/run.sh");
    let out = match Command::new("bash").arg(&script).env("TMPDIR", env!("CARGO_TARGET_TMPDIR")).output() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("SKIPPED kernel emulation: cannot run bash ({e})");
            return;
        }
    };
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{text}");
    assert!(out.status.success(), "kernel emulation failed:\n{text}");
    assert_eq!(text.matches("ALL OK").count(), 4, "all four emulation programs must report ALL OK:\n{text}");
}
