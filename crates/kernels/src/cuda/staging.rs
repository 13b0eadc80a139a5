//! The channels-last staging copies of the tensor-core conv kernels (`to_channels_last_*`,
//! `reorder_weight_*` in conv3d_igemm.cu): the gathered tensor as `[b][voxel][c]` and the weight as the
//! GEMM A operand `[row][tap][c]`, so the `_cl` kernels load 16 bytes of channels of one tap at once.

use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, CudaView, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use candle_core::cuda_backend::{CudaDevice, WrapErr};

use super::{grid_dim, int_arg, BLOCK, MODULE_GEMM, PTX_GEMM};
use crate::{Conv3dGeometry, KernelsError};

/// The staging kernel `base` (`to_channels_last`, `reorder_weight`) for elements of `T`: `{base}_bf16`
/// for a 16-bit slice type, `{base}_f32` otherwise (the f32 one); the kernels move raw values.
fn staging_kernel<T>(base: &str) -> String {
    format!("{base}_{}", if std::mem::size_of::<T>() == 2 { "bf16" } else { "f32" })
}

/// A channels-last copy `[b][voxel][c]` of the `batch × channels × vol` tensor `src`
/// (`to_channels_last_{bf16,f32}`; `T` is the bf16 or f32 slice type).
pub(super) fn to_channels_last<T: DeviceRepr + ValidAsZeroBits>(
    op: &'static str,
    dev: &CudaDevice,
    src: &CudaView<'_, T>,
    (batch, channels, vol): (usize, usize, usize),
) -> candle_core::Result<CudaSlice<T>> {
    if src.len() != batch * channels * vol {
        return Err(
            KernelsError::Shape { op, msg: format!("{} values for {batch}×{channels}×{vol}", src.len()) }.into()
        );
    }
    let cfg = LaunchConfig {
        grid_dim: (grid_dim(op, vol.div_ceil(32))?, grid_dim(op, channels.div_ceil(32))?, grid_dim(op, batch)?),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    if cfg.grid_dim.1 > 65535 || cfg.grid_dim.2 > 65535 {
        return Err(KernelsError::Shape { op, msg: format!("{channels} channels or batch {batch} too large") }.into());
    }
    // SAFETY: uninitialised device memory of `src.len()` elements; the kernel below writes every one
    // (each (b, v, c) with c < C, v < vol once) before anything reads it.
    let dst = unsafe { dev.alloc::<T>(src.len()) }?;
    let f = dev.get_or_load_custom_func(&staging_kernel::<T>("to_channels_last"), MODULE_GEMM, PTX_GEMM)?;
    let mut b = f.builder();
    let (c, vol64) = (int_arg(op, channels)?, vol as i64);
    b.arg(src).arg(&dst).arg(&c).arg(&vol64);
    // SAFETY: to_channels_last_{bf16,f32}(const T* src, T* dst, int C, long long vol) with T of the
    // size of the slice type (staging_kernel), 256 threads,
    // static shared memory: block (bx, by, bz) reads src[bz][c][v] and writes dst[bz][v][c] only for
    // c < C, v < vol, and the grid's z is the batch, so both stay inside the batch·C·vol elements that
    // `src` (checked above) and `dst` (its length) hold.
    unsafe { b.launch(cfg) }.w()?;
    Ok(dst)
}

/// The channels-last staging copies of a bf16 or f32 forward (`transposed` false: `src` = x, channels
/// Ci) or backward-data (`src` = dy, channels Co) pass for the `_cl` kernels: `src` as `[b][voxel][c]`
/// and the GEMM A operand `[row][tap][c]` from the weight `[Co][Ci][taps]` (`reorder_weight_*`).
pub(super) fn stage_channels_last<T: DeviceRepr + ValidAsZeroBits>(
    op: &'static str,
    dev: &CudaDevice,
    src: &CudaView<'_, T>,
    w: &CudaView<'_, T>,
    g: &Conv3dGeometry,
    transposed: bool,
) -> candle_core::Result<(CudaSlice<T>, CudaSlice<T>)> {
    let (channels, vol) =
        if transposed { (g.out_channels, g.output_volume()) } else { (g.in_channels, g.input_volume()) };
    let src_cl = to_channels_last(op, dev, src, (g.batch, channels, vol))?;
    let (taps, ci, co) = (int_arg(op, g.kernel_volume())?, int_arg(op, g.in_channels)?, int_arg(op, g.out_channels)?);
    if w.len() != g.weight_len() {
        return Err(KernelsError::Shape { op, msg: format!("{} weight values for {g:?}", w.len()) }.into());
    }
    // SAFETY: uninitialised device memory of `w.len()` elements; the kernel below writes every index
    // i < co·ci·taps = w.len() before anything reads it.
    let w_cl = unsafe { dev.alloc::<T>(w.len()) }?;
    let blocks = grid_dim(op, w.len().div_ceil(BLOCK as usize).min(65535))?;
    let cfg = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 };
    let f = dev.get_or_load_custom_func(&staging_kernel::<T>("reorder_weight"), MODULE_GEMM, PTX_GEMM)?;
    let mut b = f.builder();
    let tr = i32::from(transposed);
    b.arg(w).arg(&w_cl).arg(&co).arg(&ci).arg(&taps).arg(&tr);
    // SAFETY: reorder_weight_{bf16,f32}(const T* w, T* out, int co, int ci, int taps, int transposed),
    // T of the size of the slice type (staging_kernel):
    // a grid-stride loop over i < co·ci·taps, reading w at a (c, m, t) index below co·ci·taps and
    // writing out[i]; `w` holds exactly co·ci·taps values (checked above) and `w_cl` as many.
    unsafe { b.launch(cfg) }.w()?;
    Ok((src_cl, w_cl))
}
