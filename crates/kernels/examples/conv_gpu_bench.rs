//! Times conv3d on CUDA device 0 (feature `cuda`) for N × C → C channels at S³ (default 2 × 32 → 32 at
//! 64³; the GPU bundle's run.sh passes its shapes as `REPS N C S`), kernel 3, padding 1:
//! the forward pass, backward-data, backward-weight and forward + backward through autograd (loss
//! Σ y·dy, as the peer's `(y * dy).sum().backward()`), and prints one JSON line (medians in ms,
//! GFLOP/s of the forward). `xtask/peers/torch_conv3d.py` times the same shape with PyTorch/cuDNN;
//! `run.sh` of the GPU bundle prints the ratio.
//!
//! Keys: `fwd_ms`, `bwd_data_ms`, `bwd_weight_ms`, `fwd_bwd_ms`, `fwd_gflops`: f32 on the default
//! CUDA path (`default_path`: GEMM unless `MAGSEG_CONV_CUDA=direct`); `direct_*`: f32 on the direct
//! reference kernels; `gemm_*`: f32 on the GEMM kernels; `bf16_*`: bf16 on the GEMM kernels (tensor
//! cores; forward and backward-data through channels-last staging); `bf16_ncdhw_*`: the same without
//! the staging (`CudaConvPath::GemmNcdhw`, gathers from NCDHW); `tf32_*`: f32 on tensor cores as
//! tf32 (`CudaConvPath::GemmTf32`, against cuDNN with TF32 allowed); `convt_k2s2_ms` / `bf16_convt_k2s2_ms`: conv_transpose3d kernel 2 stride 2, 2 × 32 → 16
//! channels, 32³ → 64³, forward only (GEMM path); `check_*`: at the benchmark shape, the largest
//! |difference| relative to the largest |value| between the direct f32 result and the GEMM f32
//! (`check_gemm_{fwd,bwd_data,bwd_weight}`, expect ≲ 1e-5) and GEMM bf16 results
//! (`check_bf16_*`, inputs rounded to bf16 for both, expect ≲ 1e-2) and GEMM tf32 results
//! (`check_tf32_*`, the same bf16-exact inputs, so expect f32-level differences ≲ 1e-5).
//!
//! `cargo run --release -p magseg-kernels --features cuda --example conv_gpu_bench [-- REPS [N C S]]`

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use magseg_kernels::{
    conv3d_with_path, Conv3d, Conv3dBackwardData, Conv3dBackwardWeight, Conv3dConfig, Conv3dGeometry, ConvTranspose3d,
    CudaConvPath,
};

/// Median wall time in ms of `reps` runs (each synchronised) after two warm-up runs.
fn time_ms(dev: &Device, reps: usize, mut f: impl FnMut() -> candle_core::Result<()>) -> candle_core::Result<f64> {
    for _ in 0..2 {
        f()?;
    }
    dev.synchronize()?;
    let mut t = Vec::with_capacity(reps);
    for _ in 0..reps {
        let s = Instant::now();
        f()?;
        dev.synchronize()?;
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

/// Rounds to µs.
fn r(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// (fwd, bwd_data, bwd_weight, fwd_bwd) in ms for one path and dtype.
fn time_passes(
    dev: &Device,
    reps: usize,
    g: Conv3dGeometry,
    dt: DType,
    path: CudaConvPath,
) -> candle_core::Result<[f64; 4]> {
    let cfg = Conv3dConfig { stride: g.stride, padding: g.padding };
    let x = Tensor::randn(0f32, 1.0, g.input_shape().to_vec(), dev)?.to_dtype(dt)?;
    let w = (Tensor::randn(0f32, 1.0, g.weight_shape().to_vec(), dev)? * 0.05)?.to_dtype(dt)?;
    let dy = Tensor::randn(0f32, 1.0, g.output_shape().to_vec(), dev)?.to_dtype(dt)?;
    let fwd = time_ms(dev, reps, || x.apply_op2_no_bwd(&w, &Conv3d { geometry: g, path }).map(drop))?;
    let bwd_data = time_ms(dev, reps, || dy.apply_op2_no_bwd(&w, &Conv3dBackwardData { geometry: g, path }).map(drop))?;
    let bwd_weight =
        time_ms(dev, reps, || x.apply_op2_no_bwd(&dy, &Conv3dBackwardWeight { geometry: g, path }).map(drop))?;
    let (xv, wv) = (Var::from_tensor(&x)?, Var::from_tensor(&w)?);
    let fwd_bwd = time_ms(dev, reps, || {
        let y = conv3d_with_path(&xv, &wv, None, cfg, path)?;
        // The loss Σ y·dy summed in two stages: candle's own `sum_all` runs on one SM (crate::reduce);
        // with it this timing was ~11 ms above the sum of the three passes on an H100 at 2 × 32 × 96³.
        magseg_kernels::reduce::sum_all(&(y * &dy)?)?.backward().map(drop)
    })?;
    Ok([fwd, bwd_data, bwd_weight, fwd_bwd])
}

/// A JSON number, or `null` when not finite (a NaN from a broken kernel must not break the JSON).
fn json(v: f64) -> String {
    if v.is_finite() {
        v.to_string()
    } else {
        "null".to_string()
    }
}

/// max |a − b| / max |a| (both cast to f32).
fn rel_diff(a: &Tensor, b: &Tensor) -> candle_core::Result<f64> {
    let (a, b) = (a.to_dtype(DType::F32)?, b.to_dtype(DType::F32)?);
    let num = (&a - &b)?.abs()?.max_all()?.to_scalar::<f32>()?;
    let den = a.abs()?.max_all()?.to_scalar::<f32>()?.max(1e-30);
    Ok(((num / den) as f64 * 1e9).round() / 1e9)
}

/// Differences of the three passes at geometry `g`: direct f32 vs GEMM f32 and vs GEMM bf16, on inputs
/// rounded to bf16 (so all three see the same values).
fn check_passes(dev: &Device, g: Conv3dGeometry) -> candle_core::Result<[f64; 9]> {
    let round = |t: Tensor| t.to_dtype(DType::BF16)?.to_dtype(DType::F32);
    let x = round(Tensor::randn(0f32, 1.0, g.input_shape().to_vec(), dev)?)?;
    let w = round((Tensor::randn(0f32, 1.0, g.weight_shape().to_vec(), dev)? * 0.05)?)?;
    let dy = round(Tensor::randn(0f32, 1.0, g.output_shape().to_vec(), dev)?)?;
    let passes = |path: CudaConvPath, dt: DType| -> candle_core::Result<[Tensor; 3]> {
        let (x, w, dy) = (x.to_dtype(dt)?, w.to_dtype(dt)?, dy.to_dtype(dt)?);
        Ok([
            x.apply_op2_no_bwd(&w, &Conv3d { geometry: g, path })?,
            dy.apply_op2_no_bwd(&w, &Conv3dBackwardData { geometry: g, path })?,
            x.apply_op2_no_bwd(&dy, &Conv3dBackwardWeight { geometry: g, path })?,
        ])
    };
    let direct = passes(CudaConvPath::Direct, DType::F32)?;
    let gemm = passes(CudaConvPath::Gemm, DType::F32)?;
    let bf16 = passes(CudaConvPath::Gemm, DType::BF16)?;
    let tf32 = passes(CudaConvPath::GemmTf32, DType::F32)?;
    let mut out = [0.0; 9];
    for i in 0..3 {
        out[i] = rel_diff(&direct[i], &gemm[i])?;
        out[3 + i] = rel_diff(&direct[i], &bf16[i])?;
        out[6 + i] = rel_diff(&direct[i], &tf32[i])?;
    }
    Ok(out)
}

/// conv_transpose3d k2 s2 forward, 2 × 32 → 16 channels, 32³ → 64³, in ms.
fn time_convt(dev: &Device, reps: usize, dt: DType) -> candle_core::Result<f64> {
    // The convolution this transposed convolution undoes: input 64³ × 16 channels, output 32³ × 32.
    let g = Conv3dGeometry::new(2, 16, 32, [64; 3], [2; 3], [2; 3], [0; 3])?;
    let x = Tensor::randn(0f32, 1.0, g.output_shape().to_vec(), dev)?.to_dtype(dt)?;
    let w = Tensor::randn(0f32, 1.0, g.weight_shape().to_vec(), dev)?.to_dtype(dt)?;
    let op = ConvTranspose3d { geometry: g, path: CudaConvPath::Gemm };
    time_ms(dev, reps, || x.apply_op2_no_bwd(&w, &op).map(drop))
}

fn main() -> candle_core::Result<()> {
    let arg = |i: usize, default: usize| std::env::args().nth(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    let reps = arg(1, 10).max(1);
    let (n, c, size) = (arg(2, 2), arg(3, 32), arg(4, 64));
    let dev = magseg_kernels::alloc::cuda_device(0)?;
    let g = Conv3dGeometry::new(n, c, c, [size; 3], [3; 3], [1; 3], [1; 3])?;
    let default = time_passes(&dev, reps, g, DType::F32, CudaConvPath::Auto)?;
    let direct = time_passes(&dev, reps, g, DType::F32, CudaConvPath::Direct)?;
    let gemm = time_passes(&dev, reps, g, DType::F32, CudaConvPath::Gemm)?;
    let bf16 = time_passes(&dev, reps, g, DType::BF16, CudaConvPath::Gemm)?;
    let bf16_ncdhw = time_passes(&dev, reps, g, DType::BF16, CudaConvPath::GemmNcdhw)?;
    let tf32 = time_passes(&dev, reps, g, DType::F32, CudaConvPath::GemmTf32)?;
    let convt = time_convt(&dev, reps, DType::F32)?;
    let bf16_convt = time_convt(&dev, reps, DType::BF16)?;
    let check = check_passes(&dev, g)?;
    let gflops = |ms: f64| (g.flops() / (ms * 1e-3) / 1e9 * 10.0).round() / 10.0;
    let keys = |prefix: &str, t: &[f64; 4]| {
        let names = ["fwd_ms", "bwd_data_ms", "bwd_weight_ms", "fwd_bwd_ms"];
        names.iter().zip(t).map(|(n, v)| format!("\"{prefix}{n}\":{}", r(*v))).collect::<Vec<_>>().join(",")
    };
    println!(
        "{{\"shape\":\"{n}x{c}x{size}^3 k3 p1 f32\",\"reps\":{reps},\"default_path\":\"{:?}\",{},\"fwd_gflops\":{},{},{},{},{},{},\
         \"bf16_fwd_gflops\":{},\"convt_k2s2_ms\":{},\"bf16_convt_k2s2_ms\":{},\"check_gemm_fwd\":{},\
         \"check_gemm_bwd_data\":{},\"check_gemm_bwd_weight\":{},\"check_bf16_fwd\":{},\"check_bf16_bwd_data\":{},\
         \"check_bf16_bwd_weight\":{},\"check_tf32_fwd\":{},\"check_tf32_bwd_data\":{},\"check_tf32_bwd_weight\":{}}}",
        CudaConvPath::Auto.resolve(),
        keys("", &default),
        gflops(default[0]),
        keys("direct_", &direct),
        keys("gemm_", &gemm),
        keys("bf16_", &bf16),
        keys("bf16_ncdhw_", &bf16_ncdhw),
        keys("tf32_", &tf32),
        gflops(bf16[0]),
        r(convt),
        r(bf16_convt),
        json(check[0]),
        json(check[1]),
        json(check[2]),
        json(check[3]),
        json(check[4]),
        json(check[5]),
        json(check[6]),
        json(check[7]),
        json(check[8])
    );
    Ok(())
}
