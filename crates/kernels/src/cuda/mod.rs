//! The conv3d passes on an NVIDIA GPU (feature `cuda`): the kernels of `conv3d.cu` (compiled to PTX by
//! build.rs) launched on candle's CUDA stream, f32 only, with the semantics of the CPU passes in
//! [`crate::cpu`] (same geometry, same layouts; sums in a different but fixed order).
//!
//! Kernel launches are `unsafe` in cudarc; this is the only module of the crate allowed to use it.
#![allow(unsafe_code)]

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaView, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDevice, WrapErr};
use candle_core::{CudaStorage, DType, Layout, Shape};

use crate::check::SUPPORTED;
use crate::{Conv3dGeometry, KernelsError};

/// PTX of `conv3d.cu`, compiled by build.rs with nvcc.
const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/conv3d.ptx"));
/// Name under which candle caches the loaded module.
const MODULE: &str = "magseg_kernels_conv3d";
/// Threads per block of the one-thread-per-element kernels.
const BLOCK: u32 = 256;
/// Channels one thread of the forward / backward-data kernels computes (`CH_BLOCK` in conv3d.cu).
const CH_BLOCK: usize = 8;
/// Threads per block of backward-weight (`WGRAD_THREADS` in conv3d.cu).
const WGRAD_THREADS: u32 = 256;
/// Blocks backward-weight aims for (a few per SM of an H100).
const WGRAD_TARGET_BLOCKS: usize = 1024;
/// Fewest output voxels per backward-weight run (16 per thread).
const WGRAD_MIN_RUN: usize = 16 * WGRAD_THREADS as usize;

/// The f32 data of a contiguous CUDA storage as a view, or a dtype/shape/layout error.
fn f32_view<'a>(
    op: &'static str,
    s: &'a CudaStorage,
    l: &Layout,
    dims: &[usize],
) -> candle_core::Result<CudaView<'a, f32>> {
    if s.dtype() != DType::F32 {
        // bf16/f16 kernels are future work.
        return Err(KernelsError::Dtype { op, dtype: s.dtype().as_str().to_string(), supported: SUPPORTED }.into());
    }
    if l.dims() != dims {
        return Err(KernelsError::Shape {
            op,
            msg: format!("expected an operand of shape {dims:?}, got {:?}", l.dims()),
        }
        .into());
    }
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| KernelsError::Layout { op, msg: "operand is not contiguous".to_string() })?;
    let slice = s.as_cuda_slice::<f32>()?;
    if end > slice.len() {
        return Err(KernelsError::Layout {
            op,
            msg: format!("layout {start}..{end} outside a storage of {}", slice.len()),
        }
        .into());
    }
    Ok(slice.slice(start..end))
}

/// The 18 geometry ints every kernel takes (see the header of conv3d.cu), or an error when a size
/// does not fit an `i32`.
fn geometry_args(op: &'static str, g: &Conv3dGeometry) -> Result<[i32; 18], KernelsError> {
    let o = g.output();
    let v = [
        g.batch,
        g.in_channels,
        g.out_channels,
        g.input[0],
        g.input[1],
        g.input[2],
        g.kernel[0],
        g.kernel[1],
        g.kernel[2],
        g.stride[0],
        g.stride[1],
        g.stride[2],
        g.padding[0],
        g.padding[1],
        g.padding[2],
        o[0],
        o[1],
        o[2],
    ];
    let mut out = [0i32; 18];
    for (o, x) in out.iter_mut().zip(v) {
        *o = i32::try_from(x)
            .map_err(|_| KernelsError::Shape { op, msg: format!("size {x} is too large for the GPU kernels") })?;
    }
    Ok(out)
}

/// One thread per element of `total`, [`BLOCK`] threads per block.
fn elementwise_config(op: &'static str, total: usize) -> Result<LaunchConfig, KernelsError> {
    let blocks = u32::try_from(total.div_ceil(BLOCK as usize))
        .map_err(|_| KernelsError::Shape { op, msg: format!("{total} elements are too many for one launch") })?;
    Ok(LaunchConfig { grid_dim: (blocks.max(1), 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 })
}

/// Launch the kernel `func` (one thread per voxel of `vol` and group of [`CH_BLOCK`] of `channels`
/// channels) with inputs `a`, `b` and a fresh output shaped `shape`.
#[allow(clippy::too_many_arguments)]
fn run_elementwise(
    op: &'static str,
    func: &str,
    dev: &CudaDevice,
    a: &CudaView<'_, f32>,
    b: &CudaView<'_, f32>,
    g: &Conv3dGeometry,
    (channels, vol): (usize, usize),
    shape: [usize; 5],
) -> candle_core::Result<(CudaStorage, Shape)> {
    let args = geometry_args(op, g)?;
    let len = shape.iter().product();
    let threads = g.batch * channels.div_ceil(CH_BLOCK) * vol;
    let cfg = elementwise_config(op, threads)?;
    let total = threads as i64;
    let out = dev.alloc_zeros::<f32>(len)?;
    let f = dev.get_or_load_custom_func(func, MODULE, PTX)?;
    let mut builder = f.builder();
    builder.arg(a).arg(b).arg(&out).arg(&total);
    for v in &args {
        builder.arg(v);
    }
    // SAFETY: conv3d_fwd_f32 / conv3d_bwd_data_f32 (const float* a, const float* b, float* out,
    // long long total, 18 x int): `a` and `b` are f32 views of exactly the operand sizes the geometry
    // gives (checked by `f32_view`), `out` holds the N·C·vol f32 of `shape`; thread idx < total =
    // N·ceil(C/CH_BLOCK)·vol writes only its voxel of channels c0..min(c0+CH_BLOCK, C) and reads inside
    // the operands by construction of the geometry; the ints are i32 as the kernels declare.
    unsafe { builder.launch(cfg) }.w()?;
    Ok((CudaStorage::wrap_cuda_slice(out, dev.clone()), Shape::from(shape.to_vec())))
}

/// [`crate::Conv3d`] on the GPU: `(x, w)` → `y`.
pub(crate) fn forward(
    op: &'static str,
    g: &Conv3dGeometry,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    let x = f32_view(op, s1, l1, &g.input_shape())?;
    let w = f32_view(op, s2, l2, &g.weight_shape())?;
    let work = (g.out_channels, g.output_volume());
    run_elementwise(op, "conv3d_fwd_f32", &s1.device, &x, &w, g, work, g.output_shape())
}

/// [`crate::Conv3dBackwardData`] on the GPU: `(dy, w)` → `dx`.
pub(crate) fn backward_data(
    op: &'static str,
    g: &Conv3dGeometry,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    let dy = f32_view(op, s1, l1, &g.output_shape())?;
    let w = f32_view(op, s2, l2, &g.weight_shape())?;
    let work = (g.in_channels, g.input_volume());
    run_elementwise(op, "conv3d_bwd_data_f32", &s1.device, &dy, &w, g, work, g.input_shape())
}

/// Number of voxel runs backward-weight splits the batch × output voxels into: enough blocks for a
/// large GPU (about [`WGRAD_TARGET_BLOCKS`]) when there are few channel pairs, but at least
/// [`WGRAD_MIN_RUN`] voxels per run. A function of the geometry only, so results stay deterministic.
fn wgrad_chunks(g: &Conv3dGeometry) -> u32 {
    let pairs = g.in_channels * g.out_channels;
    let work = g.batch * g.output_volume();
    let by_blocks = WGRAD_TARGET_BLOCKS.div_ceil(pairs);
    let by_work = (work / WGRAD_MIN_RUN).max(1);
    by_blocks.min(by_work).clamp(1, 65535) as u32
}

/// [`crate::Conv3dBackwardWeight`] on the GPU: `(x, dy)` → `dw`.
pub(crate) fn backward_weight(
    op: &'static str,
    g: &Conv3dGeometry,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    let x = f32_view(op, s1, l1, &g.input_shape())?;
    let dy = f32_view(op, s2, l2, &g.output_shape())?;
    let args = geometry_args(op, g)?;
    let dev = &s1.device;
    let blocks =
        |n: usize| u32::try_from(n).map_err(|_| KernelsError::Shape { op, msg: format!("{n} channels are too many") });
    let chunks = wgrad_chunks(g);
    let cfg = LaunchConfig {
        grid_dim: (blocks(g.in_channels)?, blocks(g.out_channels)?, chunks),
        block_dim: (WGRAD_THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    let len = g.weight_len();
    let partial = dev.alloc_zeros::<f32>(len * chunks as usize)?;
    let f = dev.get_or_load_custom_func("conv3d_bwd_weight_f32", MODULE, PTX)?;
    let chunks_arg = chunks as i32;
    let mut builder = f.builder();
    builder.arg(&x).arg(&dy).arg(&partial).arg(&chunks_arg);
    for v in &args {
        builder.arg(v);
    }
    // SAFETY: conv3d_bwd_weight_f32(const float* x, const float* dy, float* dw, int chunks, 18 x int):
    // `x` and `dy` are f32 views of the input and output sizes of the geometry (checked by `f32_view`),
    // `partial` holds chunks·Co·Ci·taps f32; block (ci, co, z) writes only its own taps of chunk z and
    // reads inside its channels; the kernel's static shared memory is fixed and the block size equals
    // its WGRAD_THREADS.
    unsafe { builder.launch(cfg) }.w()?;
    if chunks == 1 {
        return Ok((CudaStorage::wrap_cuda_slice(partial, dev.clone()), Shape::from(g.weight_shape().to_vec())));
    }
    let out = dev.alloc_zeros::<f32>(len)?;
    let f = dev.get_or_load_custom_func("conv3d_sum_chunks_f32", MODULE, PTX)?;
    let len_arg = len as i64;
    let mut builder = f.builder();
    builder.arg(&partial).arg(&out).arg(&len_arg).arg(&chunks_arg);
    // SAFETY: conv3d_sum_chunks_f32(const float* partial, float* dw, long long len, int chunks):
    // `partial` holds chunks·len f32, `out` len f32; thread i < len reads partial[z·len + i], writes out[i].
    unsafe { builder.launch(elementwise_config(op, len)?) }.w()?;
    Ok((CudaStorage::wrap_cuda_slice(out, dev.clone()), Shape::from(g.weight_shape().to_vec())))
}
