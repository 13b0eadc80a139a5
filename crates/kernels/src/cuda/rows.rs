//! Row-wise ops over the last dimension (`rows.cu`) on the GPU, f32, launched on candle's stream:
//! layer norm (statistics, forward, both gradients) and softmax (forward, gradient).

use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaStorage, Layout, Shape};

use super::{elementwise_config, f32_view, wrap_f32};
use crate::KernelsError;

/// PTX of `rows.cu`, compiled by build.rs with nvcc.
const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/rows.ptx"));
/// Name under which candle caches the loaded module.
const MODULE: &str = "magseg_kernels_rows";
/// Threads per block of the per-row kernels (`ROW_THREADS`).
const ROW_THREADS: u32 = 256;

/// Rows and row length of `x`'s layout, as the kernels take them.
fn rows(op: &'static str, l: &Layout) -> Result<(usize, usize, i32), KernelsError> {
    let h = l.dims().last().copied().unwrap_or(1).max(1);
    let r = l.shape().elem_count() / h;
    let h32 = i32::try_from(h).map_err(|_| KernelsError::Shape { op, msg: format!("rows of {h} are too long") })?;
    // CUDA's grid x is at most 2³¹ − 1 blocks.
    if i32::try_from(r).is_err() {
        return Err(KernelsError::Shape { op, msg: format!("{r} rows are too many for one launch") });
    }
    Ok((r, h, h32))
}

/// One block of [`ROW_THREADS`] per row.
fn per_row(r: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (r.max(1) as u32, 1, 1), block_dim: (ROW_THREADS, 1, 1), shared_mem_bytes: 0 }
}

/// `(R, H)` → `(R, 2)`: mean and `1 / sqrt(var + eps)` of each row.
pub(crate) fn stats(eps: f32, (s, l): (&CudaStorage, &Layout)) -> candle_core::Result<(CudaStorage, Shape)> {
    let op = "layer_norm_stats";
    let dev = &s.device;
    let (r, h, h32) = rows(op, l)?;
    let x = f32_view(op, s, l, r * h)?;
    // SAFETY (allocation): the kernel writes all 2·r values.
    let out = unsafe { dev.alloc::<f32>(2 * r) }?;
    if r > 0 {
        let f = dev.get_or_load_custom_func("ln_stats_f32", MODULE, PTX)?;
        let mut b = f.builder();
        b.arg(&x).arg(&out).arg(&h32).arg(&eps);
        // SAFETY: ln_stats_f32(const float* x, float* stats, int h, float eps): block r reads x[r·h ..
        // (r+1)·h) (x has r·h values) and writes stats[2r], stats[2r+1]; static shared memory.
        unsafe { b.launch(per_row(r)) }.w()?;
    }
    Ok(wrap_f32(out, dev, Shape::from((r, 2))))
}

/// `y = (x − mean)·rstd·γ + β`.
pub(crate) fn forward(
    (s, l): (&CudaStorage, &Layout),
    (st, stl): (&CudaStorage, &Layout),
    (g, gl): (&CudaStorage, &Layout),
    (bt, btl): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    let op = "layer_norm";
    let dev = &s.device;
    let (r, h, h32) = rows(op, l)?;
    let n = r * h;
    let (x, stats) = (f32_view(op, s, l, n)?, f32_view(op, st, stl, 2 * r)?);
    let (gamma, beta) = (f32_view(op, g, gl, h)?, f32_view(op, bt, btl, h)?);
    // SAFETY (allocation): the kernel writes all n values.
    let out = unsafe { dev.alloc::<f32>(n) }?;
    if n > 0 {
        let f = dev.get_or_load_custom_func("ln_fwd_f32", MODULE, PTX)?;
        let n_arg = n as i64;
        let mut b = f.builder();
        b.arg(&x).arg(&stats).arg(&gamma).arg(&beta).arg(&out).arg(&n_arg).arg(&h32);
        // SAFETY: ln_fwd_f32(x, stats, gamma, beta, y, long long n, int h): thread i < n reads x[i],
        // stats[2(i/h)], stats[2(i/h)+1], gamma[i%h], beta[i%h] and writes y[i] (sizes checked above).
        unsafe { b.launch(elementwise_config(op, n)?) }.w()?;
    }
    Ok(wrap_f32(out, dev, l.shape().clone()))
}

/// The input gradient of `(x, γ, dy)`.
pub(crate) fn input_grad(
    (s, l): (&CudaStorage, &Layout),
    (st, stl): (&CudaStorage, &Layout),
    (g, gl): (&CudaStorage, &Layout),
    (d, dl): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    let op = "layer_norm_grad_input";
    let dev = &s.device;
    let (r, h, h32) = rows(op, l)?;
    let n = r * h;
    let (x, stats, gamma, dy) =
        (f32_view(op, s, l, n)?, f32_view(op, st, stl, 2 * r)?, f32_view(op, g, gl, h)?, f32_view(op, d, dl, n)?);
    // SAFETY (allocation): the kernel writes all n values.
    let out = unsafe { dev.alloc::<f32>(n) }?;
    if n > 0 {
        let f = dev.get_or_load_custom_func("ln_grad_input_f32", MODULE, PTX)?;
        let mut b = f.builder();
        b.arg(&x).arg(&stats).arg(&gamma).arg(&dy).arg(&out).arg(&h32);
        // SAFETY: ln_grad_input_f32(x, stats, gamma, dy, dx, int h): block r reads row r of x and dy,
        // stats[2r..2r+2], gamma[0..h) and writes row r of dx (sizes checked above); static shared memory.
        unsafe { b.launch(per_row(r)) }.w()?;
    }
    Ok(wrap_f32(out, dev, l.shape().clone()))
}

/// `(2, H)`: the gradients of γ and β, from `(x, dy)`.
pub(crate) fn param_grads(
    (s, l): (&CudaStorage, &Layout),
    (st, stl): (&CudaStorage, &Layout),
    (d, dl): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    let op = "layer_norm_grad_params";
    let dev = &s.device;
    let (r, h, h32) = rows(op, l)?;
    let n = r * h;
    let (x, stats, dy) = (f32_view(op, s, l, n)?, f32_view(op, st, stl, 2 * r)?, f32_view(op, d, dl, n)?);
    let out = dev.alloc_zeros::<f32>(2 * h)?;
    if n > 0 {
        let f = dev.get_or_load_custom_func("ln_grad_params_f32", MODULE, PTX)?;
        let r_arg = r as i64;
        let mut b = f.builder();
        b.arg(&x).arg(&stats).arg(&dy).arg(&out).arg(&r_arg).arg(&h32);
        // SAFETY: ln_grad_params_f32(x, stats, dy, out, long long rows, int h): thread j < h reads column
        // j of every row of x and dy and stats[0..2·rows), writes out[j] and out[h + j] (2h values).
        unsafe { b.launch(elementwise_config(op, h)?) }.w()?;
    }
    Ok(wrap_f32(out, dev, Shape::from((2, h))))
}

/// Softmax over each row: `y = exp(x − max) / Σ exp(x − max)`.
pub(crate) fn softmax((s, l): (&CudaStorage, &Layout)) -> candle_core::Result<(CudaStorage, Shape)> {
    let op = "softmax_last";
    let dev = &s.device;
    let (r, h, h32) = rows(op, l)?;
    let x = f32_view(op, s, l, r * h)?;
    // SAFETY (allocation): the kernel writes all r·h values.
    let out = unsafe { dev.alloc::<f32>(r * h) }?;
    if r * h > 0 {
        let f = dev.get_or_load_custom_func("softmax_fwd_f32", MODULE, PTX)?;
        let mut b = f.builder();
        b.arg(&x).arg(&out).arg(&h32);
        // SAFETY: softmax_fwd_f32(const float* x, float* y, int h): block r reads and writes row r (r·h
        // values each); static shared memory.
        unsafe { b.launch(per_row(r)) }.w()?;
    }
    Ok(wrap_f32(out, dev, l.shape().clone()))
}

/// The softmax's input gradient from `(y, dy)`: `dx = y · (dy − Σ dy·y)` per row.
pub(crate) fn softmax_grad(
    (s, l): (&CudaStorage, &Layout),
    (d, dl): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    let op = "softmax_last_grad";
    let dev = &s.device;
    let (r, h, h32) = rows(op, l)?;
    let (y, dy) = (f32_view(op, s, l, r * h)?, f32_view(op, d, dl, r * h)?);
    // SAFETY (allocation): the kernel writes all r·h values.
    let out = unsafe { dev.alloc::<f32>(r * h) }?;
    if r * h > 0 {
        let f = dev.get_or_load_custom_func("softmax_bwd_f32", MODULE, PTX)?;
        let mut b = f.builder();
        b.arg(&y).arg(&dy).arg(&out).arg(&h32);
        // SAFETY: softmax_bwd_f32(const float* y, const float* dy, float* dx, int h): block r reads row r
        // of y and dy and writes row r of dx (r·h values each); static shared memory.
        unsafe { b.launch(per_row(r)) }.w()?;
    }
    Ok(wrap_f32(out, dev, l.shape().clone()))
}
