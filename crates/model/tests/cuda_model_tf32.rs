//! CPU vs GPU (feature `cuda`) with the GPU convolutions as tf32 (`--precision tf32`,
//! [`CudaConvPath::GemmTf32`], fixed for this test binary's process): the tiny MAG-MS networks of
//! cuda_model.rs in f32 on the CPU and in f32 with tf32 convolutions on the GPU, logits and every
//! trainable gradient compared as for bf16 mixed precision (tests/common) with a quarter of its
//! bounds. tf32 keeps 10 mantissa bits against bf16's 7 and rounds only the convolutions' operands
//! (bf16 also stores every activation rounded), so its errors should sit far below that; the bound
//! is not yet calibrated on a GPU run. Fails (does not skip) when there is no GPU.
#![cfg(feature = "cuda")]

use candle_core::DType;
use magseg_kernels::CudaConvPath;

mod common;
use common::{compare_gpu_reduced, unet, unetr, GradTol, LOGIT_TOL, UNETR_GRAD, UNET_GRAD};

/// A quarter of the bf16 bounds `tol`.
fn quarter(tol: GradTol) -> GradTol {
    GradTol { all: tol.all / 4.0, median: tol.median / 4.0 }
}

#[test]
fn tf32_convolutions_on_the_gpu_match_f32_on_the_cpu() {
    assert_eq!(CudaConvPath::set_process_default(CudaConvPath::GemmTf32), CudaConvPath::GemmTf32);
    for (name, config, tol) in [("U-Net", unet(), UNET_GRAD), ("UNETR", unetr(), UNETR_GRAD)] {
        eprintln!("{name}:");
        compare_gpu_reduced(config, DType::F32, LOGIT_TOL / 4.0, quarter(tol));
    }
}
