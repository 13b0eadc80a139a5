//! The fused Adam passes of [`crate::optim`] on the GPU (`optim.cu`), launched on candle's stream.

use candle_core::cuda_backend::cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDevice, CudaStorageSlice, WrapErr};
use candle_core::{CudaStorage, Layout};

use super::{contiguous_range, elementwise_config};
use crate::optim::{square_sum_count, AdamStep, SquareSums, SQUARE_SUM_CHUNK};
use crate::KernelsError;

/// PTX of `optim.cu`, compiled by build.rs with nvcc.
const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/optim.ptx"));
/// Name under which candle caches the loaded module.
const MODULE: &str = "magseg_kernels_optim";
/// Threads per block of `square_sums_f32` (`SQ_THREADS`).
const SQ_THREADS: u32 = 256;

/// The f32 slice of a storage and its contiguous range `(start, len)`, or a layout error.
fn f32_range<'a>(
    op: &'static str,
    s: &'a CudaStorage,
    l: &Layout,
) -> Result<(&'a CudaSlice<f32>, usize, usize), KernelsError> {
    let CudaStorageSlice::F32(slice) = &s.slice else {
        return Err(KernelsError::Layout { op, msg: "expected an f32 operand".into() });
    };
    let (a, b) = contiguous_range(op, l, slice.len())?;
    Ok((slice, a, b - a))
}

/// The mutable f32 slice of a storage and its contiguous range `(start, len)`.
fn f32_range_mut<'a>(
    op: &'static str,
    s: &'a mut CudaStorage,
    l: &Layout,
) -> Result<(&'a mut CudaSlice<f32>, usize, usize), KernelsError> {
    let CudaStorageSlice::F32(slice) = &mut s.slice else {
        return Err(KernelsError::Layout { op, msg: "expected an f32 operand".into() });
    };
    let (a, b) = contiguous_range(op, l, slice.len())?;
    Ok((slice, a, b - a))
}

/// `SquareSums` on the GPU: one block per partial sum.
pub(crate) fn square_sums(
    op: &SquareSums,
    (dst, dl): (&mut CudaStorage, &Layout),
    (g, gl): (&CudaStorage, &Layout),
) -> candle_core::Result<()> {
    let name = "square_sums";
    let dev: CudaDevice = dst.device.clone();
    let (g, g0, n) = f32_range(name, g, gl)?;
    let (out, o0, olen) = f32_range_mut(name, dst, dl)?;
    let parts = square_sum_count(n);
    if op.offset + parts > olen {
        return Err(KernelsError::Shape { op: name, msg: format!("{parts} partial sums past {olen}") }.into());
    }
    if n == 0 {
        return Ok(());
    }
    let g = g.slice(g0..g0 + n);
    let mut out = out.slice_mut(o0 + op.offset..o0 + op.offset + parts);
    let blocks = u32::try_from(parts)
        .map_err(|_| KernelsError::Shape { op: name, msg: format!("{n} elements are too many for one launch") })?;
    let f = dev.get_or_load_custom_func("square_sums_f32", MODULE, PTX)?;
    let (n_arg, clip) = (n as i64, op.clip);
    let mut b = f.builder();
    b.arg(&g).arg(&mut out).arg(&n_arg).arg(&clip);
    let cfg = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (SQ_THREADS, 1, 1), shared_mem_bytes: 0 };
    debug_assert_eq!(SQUARE_SUM_CHUNK % SQ_THREADS as usize, 0);
    // SAFETY: square_sums_f32(const float* g, float* partials, long long n, float clip): block b < parts
    // reads g[b·SQ_CHUNK .. min((b+1)·SQ_CHUNK, n)) (inside the view of n values) and writes
    // partials[b] (inside the view of `parts` values); static shared memory only.
    unsafe { b.launch(cfg) }.w()?;
    Ok(())
}

/// `AdamMoments` on the GPU: one thread per element.
pub(crate) fn adam_moments(
    s: &AdamStep,
    clip: f32,
    (st, stl): (&mut CudaStorage, &Layout),
    (g, gl): (&CudaStorage, &Layout),
    (p, pl): (&CudaStorage, &Layout),
) -> candle_core::Result<()> {
    let name = "adam_moments";
    let dev: CudaDevice = st.device.clone();
    let (g, g0, n) = f32_range(name, g, gl)?;
    let (p, p0, pn) = f32_range(name, p, pl)?;
    let (state, s0, slen) = f32_range_mut(name, st, stl)?;
    let rows = slen / n.max(1);
    if pn != n || !(rows == 2 || rows == 3) || rows * n != slen {
        return Err(KernelsError::Shape { op: name, msg: format!("state of {slen} for {n} and {pn} values") }.into());
    }
    if n == 0 {
        return Ok(());
    }
    let (g, p) = (g.slice(g0..g0 + n), p.slice(p0..p0 + n));
    let mut state = state.slice_mut(s0..s0 + slen);
    let f = dev.get_or_load_custom_func("adam_moments_f32", MODULE, PTX)?;
    let (n_arg, rows_arg) = (n as i64, rows as i32);
    let mut b = f.builder();
    b.arg(&g).arg(&p).arg(&mut state).arg(&n_arg).arg(&rows_arg).arg(&clip).arg(&s.grad_scale).arg(&s.l2);
    b.arg(&s.b1[0]).arg(&s.b1[1]).arg(&s.b2[0]).arg(&s.b2[1]);
    // SAFETY: adam_moments_f32(const float* g, const float* p, float* state, long long n, int rows,
    // float ×7): thread i < n reads g[i], p[i] (views of n values) and reads/writes state[r·n + i]
    // for r < rows (a view of rows·n values).
    unsafe { b.launch(elementwise_config(name, n)?) }.w()?;
    Ok(())
}

/// `AdamApply` on the GPU: one thread per element.
pub(crate) fn adam_apply(
    s: &AdamStep,
    (p, pl): (&mut CudaStorage, &Layout),
    (st, stl): (&CudaStorage, &Layout),
) -> candle_core::Result<()> {
    let name = "adam_apply";
    let dev: CudaDevice = p.device.clone();
    let (state, s0, slen) = f32_range(name, st, stl)?;
    let (p, p0, n) = f32_range_mut(name, p, pl)?;
    let rows = slen / n.max(1);
    if !(rows == 2 || rows == 3) || rows * n != slen {
        return Err(KernelsError::Shape { op: name, msg: format!("state of {slen} for {n} values") }.into());
    }
    if n == 0 {
        return Ok(());
    }
    let state = state.slice(s0..s0 + slen);
    let mut p = p.slice_mut(p0..p0 + n);
    let f = dev.get_or_load_custom_func("adam_apply_f32", MODULE, PTX)?;
    let (n_arg, rows_arg) = (n as i64, rows as i32);
    let mut b = f.builder();
    b.arg(&mut p).arg(&state).arg(&n_arg).arg(&rows_arg).arg(&s.decay).arg(&s.inv_sqrt_bc2).arg(&s.eps);
    b.arg(&s.step_size);
    // SAFETY: adam_apply_f32(float* p, const float* state, long long n, int rows, float ×4): thread
    // i < n reads/writes p[i] (a view of n values) and reads state[i], state[(rows−1)·n + i] (a view
    // of rows·n values).
    unsafe { b.launch(elementwise_config(name, n)?) }.w()?;
    Ok(())
}
