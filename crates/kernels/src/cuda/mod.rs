//! The conv3d passes on an NVIDIA GPU (feature `cuda`), launched on candle's CUDA stream with the
//! semantics of the CPU passes in [`crate::cpu`] (same geometry, same layouts; sums in a different but
//! fixed order, so results are deterministic run to run):
//!
//! - [`CudaConvPath::Gemm`] (default): the tiled implicit-GEMM kernels of `conv3d_igemm.cu` — f32 with
//!   64×64×16 block tiles (32×128×16 for at most 32 output channels) and 4×4 register micro-tiles,
//!   bf16 on tensor cores (mma.sync m16n8k16 fed by ldmatrix, 64×64×32 or 32×128×32 block tiles, f32
//!   accumulation; forward and backward-data from channels-last staging copies where the gathered
//!   channels are a multiple of 8, so 8 channels of a tap are one 16-byte load — see
//!   [`CudaConvPath::GemmNcdhw`] for the path without staging),
//!   backward-weight (f32: 64×64×16 or 32×128×16 FMA tiles; bf16: 64×64×32 tensor-core tiles, from
//!   channels-last copies of x and dy when both channel counts are multiples of 8; f32
//!   accumulation) split over a fixed partition of the voxels into partial buffers summed in order by
//!   a second kernel, and a one-tap kernel for backward-data when kernel == stride and padding 0
//!   (conv_transpose3d kernel 2 stride 2). The im2col gathers use per-column tap masks when there are
//!   at most 32 taps (and stride 1 for backward-data), bounds checks per axis otherwise. Kernels with
//!   more than [`MAX_GEMM_TAPS`] taps use the direct kernels.
//! - [`CudaConvPath::GemmTf32`]: as `Gemm`, but f32 passes run on tensor cores with operands rounded
//!   to tf32 (mma.sync m16n8k8, f32 accumulation; the bf16 kernels' tiles with 16 f32 per K tile):
//!   forward and backward-data from channels-last copies where the gathered channels are a multiple
//!   of 4, backward-weight from NCDHW (k-contiguous tiles).
//! - [`CudaConvPath::Direct`]: the direct reference kernels of `conv3d.cu` (f32; bf16 operands are
//!   converted to f32 on the GPU and the result back to bf16).
//!
//! Kernel launches are `unsafe` in cudarc; this is the only module of the crate allowed to use it.
#![allow(unsafe_code)]

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, CudaView, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use candle_core::cuda_backend::{CudaDType, CudaDevice, CudaStorageSlice, WrapErr};
use candle_core::{CudaStorage, DType, Layout, Shape};

use crate::check::{is_supported, SUPPORTED};
use crate::{Conv3dGeometry, CudaConvPath, KernelsError};

pub(crate) mod activation;
pub(crate) mod norm;
pub(crate) mod optim;
pub(crate) mod rows;
mod staging;

use staging::{stage_channels_last, to_channels_last};

/// PTX of `conv3d.cu` (direct kernels), compiled by build.rs with nvcc.
const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/conv3d.ptx"));
/// Name under which candle caches the loaded direct module.
const MODULE: &str = "magseg_kernels_conv3d";
/// PTX of `conv3d_igemm.cu` (implicit-GEMM kernels), compiled by build.rs with nvcc.
const PTX_GEMM: &str = include_str!(concat!(env!("OUT_DIR"), "/conv3d_igemm.ptx"));
/// Name under which candle caches the loaded implicit-GEMM module.
const MODULE_GEMM: &str = "magseg_kernels_conv3d_igemm";
/// Most kernel taps the GEMM kernels take (`MAX_TAPS_TABLE` in conv3d_igemm.cu).
pub(crate) const MAX_GEMM_TAPS: usize = 512;
/// Block tile (M and N) of the GEMM kernels (64 × 64; backward-weight always).
const GEMM_TILE: usize = 64;
/// Most output rows (channels) for the narrow `_m32` forward / backward-data kernels.
const NARROW_ROWS: usize = 32;
/// Block tile (M, N) of the narrow `_m32` kernels (BM = 32 template instances).
const NARROW_TILE: (usize, usize) = (32, 128);
/// K tile of the f32 kernels (`F_BK`): backward-weight chunks are multiples of it.
const GEMM_BK: usize = 16;
/// Threads per block of the f32 GEMM kernels (`F_THREADS`).
const F32_THREADS: u32 = 256;
/// Threads per block of the tensor-core kernels, bf16 and tf32 (`H_THREADS`).
const MMA_THREADS: u32 = 128;
/// bf16 values per 16-byte load of the channels-last kernels: their channel counts are multiples.
const CL_VECTOR: usize = 8;
/// f32 values per 16-byte load of the tf32 channels-last kernels.
const CL_VECTOR_F32: usize = 4;
/// Most taps of the channels-last kernels (`FAST_TAPS`: one bit per tap in a column's mask).
const CL_MAX_TAPS: usize = 32;
/// Blocks the GEMM backward-weight aims for (4 per SM of a 132-SM H100).
const GEMM_WGRAD_TARGET_BLOCKS: usize = 528;
/// Fewest voxels per GEMM backward-weight chunk (128 K tiles).
const GEMM_WGRAD_MIN_RUN: usize = 128 * GEMM_BK;
/// Input channels one thread of the one-tap backward-data kernel computes (`NO_CH`).
const NO_CH: usize = 8;
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

/// A contiguous operand of exactly `dims` as a typed view, or a shape/layout error.
fn view<'a, T: DeviceRepr>(
    op: &'static str,
    slice: &'a CudaSlice<T>,
    l: &Layout,
    dims: &[usize],
) -> candle_core::Result<CudaView<'a, T>> {
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
    if end > slice.len() {
        return Err(KernelsError::Layout {
            op,
            msg: format!("layout {start}..{end} outside a storage of {}", slice.len()),
        }
        .into());
    }
    Ok(slice.slice(start..end))
}

/// The one dtype of both operands: f32 or bf16; mixed or other dtypes are an error.
fn pass_dtype(op: &'static str, a: &CudaStorage, b: &CudaStorage) -> Result<DType, KernelsError> {
    let (da, db) = (a.dtype(), b.dtype());
    if da != db {
        return Err(KernelsError::DtypeMismatch { op, lhs: da.as_str().to_string(), rhs: db.as_str().to_string() });
    }
    if !is_supported(da) {
        return Err(KernelsError::Dtype { op, dtype: da.as_str().to_string(), supported: SUPPORTED });
    }
    Ok(da)
}

/// Runs the f32 pass `f` on bf16 operands converted to f32 (on the GPU, exact) and rounds its result
/// back to bf16: the direct path's bf16 support, and the fallback for geometries without bf16 kernels.
fn via_f32(
    op: &'static str,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
    f: impl FnOnce((&CudaStorage, &Layout), (&CudaStorage, &Layout)) -> candle_core::Result<(CudaStorage, Shape)>,
) -> candle_core::Result<(CudaStorage, Shape)> {
    let dtype = pass_dtype(op, s1, s2)?;
    if dtype != DType::BF16 {
        return Err(KernelsError::Layout { op, msg: format!("f32 fallback called for {}", dtype.as_str()) }.into());
    }
    let a = s1.to_dtype(l1, DType::F32)?;
    let b = s2.to_dtype(l2, DType::F32)?;
    let (la, lb) = (Layout::contiguous(l1.shape().clone()), Layout::contiguous(l2.shape().clone()));
    let (out, shape) = f((&a, &la), (&b, &lb))?;
    let out = out.to_dtype(&Layout::contiguous(shape.clone()), DType::BF16)?;
    Ok((out, shape))
}

/// Whether the GEMM kernels take this geometry (tap table of [`MAX_GEMM_TAPS`] entries).
fn gemm_supported(g: &Conv3dGeometry) -> bool {
    g.kernel_volume() <= MAX_GEMM_TAPS
}

/// Whether the GEMM path runs this geometry: the path resolves to `Gemm` and the kernels take it.
fn use_gemm(path: CudaConvPath, g: &Conv3dGeometry) -> bool {
    path.is_gemm() && gemm_supported(g)
}

/// Whether `path` stages channels-last copies where the geometry allows it (`Gemm`, `GemmTf32`).
fn stages(path: CudaConvPath) -> bool {
    matches!(path.resolve(), CudaConvPath::Gemm | CudaConvPath::GemmTf32)
}

/// Whether f32 passes on `path` run the tf32 tensor-core kernels (`GemmTf32`).
fn tf32(path: CudaConvPath) -> bool {
    path.resolve() == CudaConvPath::GemmTf32
}

/// Whether a forward (`transposed` false) or backward-data pass of `g` on `path` runs the
/// channels-last kernels (`igemm_{fwd,bwd_data}_{bf16,tf32}_cl`): a staging path, the gathered
/// tensor's channels a multiple of `vector` (values per 16-byte load: [`CL_VECTOR`] bf16,
/// [`CL_VECTOR_F32`] f32), the fast gathers' at most 32 taps, and stride 1 for backward-data.
fn use_channels_last(path: CudaConvPath, g: &Conv3dGeometry, transposed: bool, vector: usize) -> bool {
    let channels = if transposed { g.out_channels } else { g.in_channels };
    stages(path) && channels % vector == 0 && g.kernel_volume() <= CL_MAX_TAPS && (!transposed || g.stride == [1; 3])
}

/// Whether a bf16 backward-weight pass of `g` on `path` runs `igemm_wgrad_bf16_cl`: a staging path
/// and both channel counts multiples of 8 (x and dy are both read channels-last).
fn use_channels_last_wgrad(path: CudaConvPath, g: &Conv3dGeometry) -> bool {
    stages(path) && g.in_channels % CL_VECTOR == 0 && g.out_channels % CL_VECTOR == 0
}

/// A grid dimension as `u32`, or an error.
fn grid_dim(op: &'static str, n: usize) -> Result<u32, KernelsError> {
    u32::try_from(n.max(1))
        .map_err(|_| KernelsError::Shape { op, msg: format!("{n} blocks are too many for one launch") })
}

/// Launches the implicit-GEMM data kernel `func` (forward or backward-data, f32 or bf16):
/// `out[b, m, v] = Σ_k A[m][k] · B[k][(b, v)]` over `rows` = M channels and `vol` = voxels per
/// channel of the output, `threads` per block; returns a fresh output `shape`. At most
/// [`NARROW_ROWS`] rows run the `{func}_m32` kernel (32 × 128 block tiles), more the 64 × 64 one.
#[allow(clippy::too_many_arguments)]
fn run_igemm<T: CudaDType + DeviceRepr + ValidAsZeroBits>(
    op: &'static str,
    func: &str,
    threads: u32,
    dev: &CudaDevice,
    src: &CudaView<'_, T>,
    w: &CudaView<'_, T>,
    g: &Conv3dGeometry,
    (rows, vol): (usize, usize),
    shape: [usize; 5],
) -> candle_core::Result<(CudaStorage, Shape)> {
    let (func, (bm, bn)) = if rows <= NARROW_ROWS {
        (format!("{func}_m32"), NARROW_TILE)
    } else {
        (func.to_string(), (GEMM_TILE, GEMM_TILE))
    };
    let cfg = LaunchConfig {
        grid_dim: (grid_dim(op, (g.batch * vol).div_ceil(bn))?, grid_dim(op, rows.div_ceil(bm))?, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    };
    if cfg.grid_dim.1 > 65535 {
        return Err(
            KernelsError::Shape { op, msg: format!("{rows} channels are too many for the GEMM kernels") }.into()
        );
    }
    let out = dev.alloc_zeros::<T>(shape.iter().product())?;
    // SAFETY: igemm_{fwd,bwd_data}_{f32,bf16,tf32}[_cl][_m32](const T* src, const T* w, T* out,
    // 18 x int), T = f32 (f32, tf32) or bf16 (u16) as the slice type: `src` and `w` are views of
    // exactly the operand sizes of the geometry (checked by `view`) or staging copies of the same
    // lengths whose channel count is a multiple of the 16-byte vector the `_cl` kernels load (checked
    // by `use_channels_last`), `out` holds the N·rows·vol elements of `shape`. Block (bx, by)
    // writes only output rows by·bm.. < rows and columns bx·bn.. < N·vol (the kernel's tile is bm × bn,
    // the grid covers rows and N·vol with it), reads A and B only at indices
    // the geometry bounds (gathers are bounds-checked per axis); `threads` is the block size the kernel
    // was written for (F_THREADS / H_THREADS, also its __launch_bounds__), shared memory is static;
    // the kernel's taps ≤ MAX_TAPS_TABLE (checked by `gemm_supported`).
    unsafe { launch_conv(op, dev, (&func, MODULE_GEMM, PTX_GEMM), cfg, (src, w, &out), None::<i32>, g) }?;
    Ok((CudaStorage::wrap_cuda_slice(out, dev.clone()), Shape::from(shape.to_vec())))
}

/// A value as the `i32` a kernel takes, or a shape error.
fn int_arg(op: &'static str, v: usize) -> Result<i32, KernelsError> {
    i32::try_from(v).map_err(|_| KernelsError::Shape { op, msg: format!("size {v} is too large for the GPU kernels") })
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
        *o = int_arg(op, x)?;
    }
    Ok(out)
}

/// A kernel of one of this module's PTX modules: function name, module name, PTX.
type Kernel<'a> = (&'a str, &'static str, &'static str);

/// Launches the conv kernel `func` on `cfg` with the arguments every conv kernel here takes:
/// `(a, b, out, extra, the 18 geometry ints of g)`, `extra` left out when `None`.
///
/// # Safety
/// The kernel must declare exactly these parameters (element types `T` for `a` and `b`, `U` for
/// `out`, `E` for `extra`, then 18 `int`s) and, launched on `cfg` (grid, block size, static shared
/// memory), read `a` and `b` and write `out` only inside their lengths.
#[allow(clippy::too_many_arguments)]
unsafe fn launch_conv<T: DeviceRepr, U: DeviceRepr, E: DeviceRepr>(
    op: &'static str,
    dev: &CudaDevice,
    (func, module, ptx): Kernel,
    cfg: LaunchConfig,
    (a, b, out): (&CudaView<'_, T>, &CudaView<'_, T>, &CudaSlice<U>),
    extra: Option<E>,
    g: &Conv3dGeometry,
) -> candle_core::Result<()> {
    let args = geometry_args(op, g)?;
    let f = dev.get_or_load_custom_func(func, module, ptx)?;
    let mut builder = f.builder();
    builder.arg(a).arg(b).arg(out);
    if let Some(e) = &extra {
        builder.arg(e);
    }
    for v in &args {
        builder.arg(v);
    }
    // SAFETY: the caller's contract (see `# Safety`).
    unsafe { builder.launch(cfg) }.w()?;
    Ok(())
}

/// The contiguous element range `(start, end)` of `l` inside a slice of `len` elements.
fn contiguous_range(op: &'static str, l: &Layout, len: usize) -> Result<(usize, usize), KernelsError> {
    match l.contiguous_offsets() {
        Some((a, b)) if b <= len => Ok((a, b)),
        _ => Err(KernelsError::Layout { op, msg: format!("operand is not contiguous inside {len} elements") }),
    }
}

/// The contiguous f32 view of an operand of exactly `len` elements.
fn f32_view<'a>(
    op: &'static str,
    s: &'a CudaStorage,
    l: &Layout,
    len: usize,
) -> Result<CudaView<'a, f32>, KernelsError> {
    let CudaStorageSlice::F32(slice) = &s.slice else {
        return Err(KernelsError::Dtype { op, dtype: s.dtype().as_str().into(), supported: "f32" });
    };
    typed_view(op, slice, l, len)
}

/// The contiguous view of an operand of exactly `len` elements of a typed slice.
fn typed_view<'a, T>(
    op: &'static str,
    slice: &'a CudaSlice<T>,
    l: &Layout,
    len: usize,
) -> Result<CudaView<'a, T>, KernelsError> {
    match contiguous_range(op, l, slice.len())? {
        (a, b) if b - a == len => Ok(slice.slice(a..b)),
        _ => Err(KernelsError::Layout { op, msg: format!("expected a contiguous operand of {len} elements") }),
    }
}

/// A fresh f32 slice as a storage of `shape`.
fn wrap_f32(out: CudaSlice<f32>, dev: &CudaDevice, shape: Shape) -> (CudaStorage, Shape) {
    (CudaStorage::wrap_cuda_slice(out, dev.clone()), shape)
}

/// One thread per element of `total`, [`BLOCK`] threads per block.
fn elementwise_config(op: &'static str, total: usize) -> Result<LaunchConfig, KernelsError> {
    // CUDA's grid x is at most 2³¹ − 1 blocks.
    let blocks = i32::try_from(total.div_ceil(BLOCK as usize))
        .map_err(|_| KernelsError::Shape { op, msg: format!("{total} elements are too many for one launch") })?;
    Ok(LaunchConfig { grid_dim: (blocks.max(1) as u32, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 })
}

/// A per-voxel kernel: its name, the module holding it (name, PTX) and the channels one thread
/// computes.
struct PerVoxel<'a> {
    func: &'a str,
    module: (&'static str, &'static str),
    ch_block: usize,
}

/// A direct kernel of conv3d.cu ([`CH_BLOCK`] channels per thread).
fn direct(func: &str) -> PerVoxel<'_> {
    PerVoxel { func, module: (MODULE, PTX), ch_block: CH_BLOCK }
}

/// A one-tap backward-data kernel of conv3d_igemm.cu (kernel == stride, padding 0; [`NO_CH`] channels
/// per thread).
fn one_tap_kernel(func: &str) -> PerVoxel<'_> {
    PerVoxel { func, module: (MODULE_GEMM, PTX_GEMM), ch_block: NO_CH }
}

/// Launch the per-voxel kernel `k` (one thread per voxel of `vol` and group of `k.ch_block` of
/// `channels` channels) with inputs `a`, `b` and a fresh output shaped `shape`.
#[allow(clippy::too_many_arguments)]
fn run_elementwise<T: CudaDType + DeviceRepr + ValidAsZeroBits>(
    op: &'static str,
    k: PerVoxel,
    dev: &CudaDevice,
    a: &CudaView<'_, T>,
    b: &CudaView<'_, T>,
    g: &Conv3dGeometry,
    (channels, vol): (usize, usize),
    shape: [usize; 5],
) -> candle_core::Result<(CudaStorage, Shape)> {
    let len = shape.iter().product();
    let threads = g.batch * channels.div_ceil(k.ch_block) * vol;
    let cfg = elementwise_config(op, threads)?;
    let total = threads as i64;
    let out = dev.alloc_zeros::<T>(len)?;
    // SAFETY: conv3d_fwd_f32 / conv3d_bwd_data_f32 / nooverlap_bwd_data_{f32,bf16} (const T* a,
    // const T* b, T* out, long long total, 18 x int), T the slice type: `a` and `b` are views of
    // exactly the operand sizes the geometry gives (checked by `view`), `out` holds the N·C·vol
    // elements of `shape`; thread idx < total = N·ceil(C/ch_block)·vol writes only its voxel of
    // channels c0..min(c0+ch_block, C) (ch_block is the kernel's CH_BLOCK / NO_CH) and reads inside the
    // operands by construction of the geometry (the one-tap kernels read dy at output voxel i / s only
    // when it is inside the output, w at tap i − s·(i / s) < kernel, kernel == stride checked by the
    // caller); the ints are i32 as the kernels declare.
    unsafe { launch_conv(op, dev, (k.func, k.module.0, k.module.1), cfg, (a, b, &out), Some(total), g) }?;
    Ok((CudaStorage::wrap_cuda_slice(out, dev.clone()), Shape::from(shape.to_vec())))
}

/// A forward (`transposed` false: `src` = x) or backward-data (`src` = dy) pass on the tensor-core
/// kernels `kernel` = `igemm_{fwd,bwd_data}_{bf16,tf32}`: `{kernel}_cl` on channels-last staging copies
/// when [`use_channels_last`] allows it with `vector` values per 16-byte load, else `kernel` on NCDHW.
#[allow(clippy::too_many_arguments)]
fn run_mma_pass<T: CudaDType + DeviceRepr + ValidAsZeroBits>(
    op: &'static str,
    (kernel, vector): (&str, usize),
    dev: &CudaDevice,
    src: &CudaView<'_, T>,
    w: &CudaView<'_, T>,
    g: &Conv3dGeometry,
    path: CudaConvPath,
    transposed: bool,
) -> candle_core::Result<(CudaStorage, Shape)> {
    let (work, shape) = if transposed {
        ((g.in_channels, g.input_volume()), g.input_shape())
    } else {
        ((g.out_channels, g.output_volume()), g.output_shape())
    };
    if use_channels_last(path, g, transposed, vector) {
        let (src_cl, w_cl) = stage_channels_last(op, dev, src, w, g, transposed)?;
        run_igemm(op, &format!("{kernel}_cl"), MMA_THREADS, dev, &src_cl.as_view(), &w_cl.as_view(), g, work, shape)
    } else {
        run_igemm(op, kernel, MMA_THREADS, dev, src, w, g, work, shape)
    }
}

/// [`crate::Conv3d`] on the GPU: `(x, w)` → `y`.
pub(crate) fn forward(
    op: &'static str,
    g: &Conv3dGeometry,
    path: CudaConvPath,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    pass_dtype(op, s1, s2)?;
    let dev = &s1.device;
    let (xd, wd) = (g.input_shape(), g.weight_shape());
    let work = (g.out_channels, g.output_volume());
    let gemm = use_gemm(path, g);
    match (&s1.slice, &s2.slice) {
        (CudaStorageSlice::F32(x), CudaStorageSlice::F32(w)) => {
            let (x, w) = (view(op, x, l1, &xd)?, view(op, w, l2, &wd)?);
            if gemm && tf32(path) {
                run_mma_pass(op, ("igemm_fwd_tf32", CL_VECTOR_F32), dev, &x, &w, g, path, false)
            } else if gemm {
                run_igemm(op, "igemm_fwd_f32", F32_THREADS, dev, &x, &w, g, work, g.output_shape())
            } else {
                run_elementwise(op, direct("conv3d_fwd_f32"), dev, &x, &w, g, work, g.output_shape())
            }
        }
        (CudaStorageSlice::BF16(x), CudaStorageSlice::BF16(w)) if gemm => {
            let (x, w) = (view(op, x, l1, &xd)?, view(op, w, l2, &wd)?);
            run_mma_pass(op, ("igemm_fwd_bf16", CL_VECTOR), dev, &x, &w, g, path, false)
        }
        _ => via_f32(op, (s1, l1), (s2, l2), |a, b| forward(op, g, path, a, b)),
    }
}

/// Whether backward-data is one tap per input voxel: kernel == stride and no padding on every axis.
fn no_overlap(g: &Conv3dGeometry) -> bool {
    g.kernel == g.stride && g.padding == [0; 3]
}

/// [`crate::Conv3dBackwardData`] on the GPU: `(dy, w)` → `dx`.
pub(crate) fn backward_data(
    op: &'static str,
    g: &Conv3dGeometry,
    path: CudaConvPath,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    pass_dtype(op, s1, s2)?;
    let dev = &s1.device;
    let (yd, wd) = (g.output_shape(), g.weight_shape());
    let work = (g.in_channels, g.input_volume());
    let gemm = use_gemm(path, g);
    let one_tap = path.is_gemm() && no_overlap(g);
    match (&s1.slice, &s2.slice) {
        (CudaStorageSlice::F32(dy), CudaStorageSlice::F32(w)) => {
            let (dy, w) = (view(op, dy, l1, &yd)?, view(op, w, l2, &wd)?);
            if one_tap {
                run_elementwise(op, one_tap_kernel("nooverlap_bwd_data_f32"), dev, &dy, &w, g, work, g.input_shape())
            } else if gemm && tf32(path) {
                run_mma_pass(op, ("igemm_bwd_data_tf32", CL_VECTOR_F32), dev, &dy, &w, g, path, true)
            } else if gemm {
                run_igemm(op, "igemm_bwd_data_f32", F32_THREADS, dev, &dy, &w, g, work, g.input_shape())
            } else {
                run_elementwise(op, direct("conv3d_bwd_data_f32"), dev, &dy, &w, g, work, g.input_shape())
            }
        }
        (CudaStorageSlice::BF16(dy), CudaStorageSlice::BF16(w)) if one_tap || gemm => {
            let (dy, w) = (view(op, dy, l1, &yd)?, view(op, w, l2, &wd)?);
            if one_tap {
                run_elementwise(op, one_tap_kernel("nooverlap_bwd_data_bf16"), dev, &dy, &w, g, work, g.input_shape())
            } else {
                run_mma_pass(op, ("igemm_bwd_data_bf16", CL_VECTOR), dev, &dy, &w, g, path, true)
            }
        }
        _ => via_f32(op, (s1, l1), (s2, l2), |a, b| backward_data(op, g, path, a, b)),
    }
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

/// The fixed split-K partition of the GEMM backward-weight with block tiles `bm × bn`: `(chunks, run)`
/// with `run` a multiple of [`GEMM_BK`] voxels and `chunks = ceil(K / run)` non-empty runs,
/// K = batch × output voxels; about [`GEMM_WGRAD_TARGET_BLOCKS`] blocks in all, at least
/// [`GEMM_WGRAD_MIN_RUN`] voxels per run. A function of the geometry and the kernel only, so the
/// summation order (and the result) never changes from run to run.
fn gemm_wgrad_partition(g: &Conv3dGeometry, (bm, bn): (usize, usize)) -> (usize, usize) {
    let k = g.batch * g.output_volume();
    let tiles = g.out_channels.div_ceil(bm) * (g.in_channels * g.kernel_volume()).div_ceil(bn);
    let by_blocks = GEMM_WGRAD_TARGET_BLOCKS.div_ceil(tiles);
    let by_work = (k / GEMM_WGRAD_MIN_RUN).max(1);
    let chunks = by_blocks.min(by_work).clamp(1, 65535);
    let run = k.div_ceil(chunks).div_ceil(GEMM_BK) * GEMM_BK;
    (k.div_ceil(run), run)
}

/// The GEMM backward-weight: partial weight gradients per chunk of voxels (f32), then their sum in
/// chunk order, written as `T` (f32 or bf16). With `narrow` and at most [`NARROW_ROWS`] output
/// channels, the `{func}_m32` kernel (32 × 128 block tiles) runs instead of the 64 × 64 one.
#[allow(clippy::too_many_arguments)]
fn run_igemm_wgrad<T: CudaDType + DeviceRepr + ValidAsZeroBits>(
    op: &'static str,
    (func, threads, narrow, sum_func): (&str, u32, bool, &str),
    dev: &CudaDevice,
    x: &CudaView<'_, T>,
    dy: &CudaView<'_, T>,
    g: &Conv3dGeometry,
) -> candle_core::Result<(CudaStorage, Shape)> {
    let (func, (bm, bn)) = if narrow && g.out_channels <= NARROW_ROWS {
        (format!("{func}_m32"), NARROW_TILE)
    } else {
        (func.to_string(), (GEMM_TILE, GEMM_TILE))
    };
    let (chunks, run) = gemm_wgrad_partition(g, (bm, bn));
    let cols = g.in_channels * g.kernel_volume();
    let cfg = LaunchConfig {
        grid_dim: (grid_dim(op, cols.div_ceil(bn))?, grid_dim(op, g.out_channels.div_ceil(bm))?, grid_dim(op, chunks)?),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    };
    if cfg.grid_dim.1 > 65535 || cfg.grid_dim.2 > 65535 {
        return Err(KernelsError::Shape { op, msg: format!("geometry {g:?} is too large for the GEMM kernels") }.into());
    }
    let len = g.weight_len();
    let partial = dev.alloc_zeros::<f32>(len * chunks)?;
    // SAFETY: igemm_wgrad_f32[_m32] / igemm_wgrad_bf16_mma / igemm_wgrad_bf16_cl / igemm_wgrad_tf32
    // (const T* x, const T* dy,
    // float* partial, long long run, 18 x int): `x` and `dy` hold the input and output sizes of the
    // geometry (views checked by `view`, or channels-last copies of them, same lengths; the `_cl`
    // kernel reads 8 channels from a multiple-of-8 offset, inside since Ci and Co are multiples of 8), `partial` holds chunks·Co·Ci·taps f32 with chunks·run ≥ N·oD·oH·oW; block
    // (bx, by, z) reads the voxels z·run.. < min(N·out_vol, (z+1)·run) (x gathers bounds-checked per
    // axis) and writes only its bm×bn tile (rows < Co, columns < Ci·taps) of chunk z; `threads` is the
    // kernel's block size (F_THREADS = 256 / H_THREADS = 128), static shared memory.
    let kernel = (func.as_str(), MODULE_GEMM, PTX_GEMM);
    unsafe { launch_conv(op, dev, kernel, cfg, (x, dy, &partial), Some(run as i64), g) }?;
    sum_chunks::<T>(op, dev, (sum_func, MODULE_GEMM, PTX_GEMM), &partial, g, chunks)
}

/// Sums the `chunks` partial weight gradients of `partial` (chunk after chunk, in order) with the
/// kernel `(func, module, ptx)` into a fresh weight-shaped output of `T`.
fn sum_chunks<T: CudaDType + DeviceRepr + ValidAsZeroBits>(
    op: &'static str,
    dev: &CudaDevice,
    (func, module, ptx): Kernel,
    partial: &CudaSlice<f32>,
    g: &Conv3dGeometry,
    chunks: usize,
) -> candle_core::Result<(CudaStorage, Shape)> {
    let len = g.weight_len();
    let out = dev.alloc_zeros::<T>(len)?;
    let f = dev.get_or_load_custom_func(func, module, ptx)?;
    let (len_arg, chunks_arg) = (len as i64, chunks as i32);
    let mut builder = f.builder();
    builder.arg(partial).arg(&out).arg(&len_arg).arg(&chunks_arg);
    // SAFETY: conv3d_sum_chunks_f32 / wgrad_sum_{f32,bf16}(const float* partial, T* dw, long long len,
    // int chunks): `partial` holds chunks·len f32 (allocated so by the caller), `out` len elements of
    // T; thread i < len reads partial[z·len + i] for z < chunks and writes out[i].
    unsafe { builder.launch(elementwise_config(op, len)?) }.w()?;
    Ok((CudaStorage::wrap_cuda_slice(out, dev.clone()), Shape::from(g.weight_shape().to_vec())))
}

/// [`crate::Conv3dBackwardWeight`] on the GPU: `(x, dy)` → `dw`.
pub(crate) fn backward_weight(
    op: &'static str,
    g: &Conv3dGeometry,
    path: CudaConvPath,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    pass_dtype(op, s1, s2)?;
    let dev = &s1.device;
    let (xd, yd) = (g.input_shape(), g.output_shape());
    let gemm = use_gemm(path, g);
    match (&s1.slice, &s2.slice) {
        (CudaStorageSlice::F32(x), CudaStorageSlice::F32(dy)) => {
            let (x, dy) = (view(op, x, l1, &xd)?, view(op, dy, l2, &yd)?);
            if gemm && tf32(path) {
                run_igemm_wgrad(op, ("igemm_wgrad_tf32", MMA_THREADS, false, "wgrad_sum_f32"), dev, &x, &dy, g)
            } else if gemm {
                run_igemm_wgrad(op, ("igemm_wgrad_f32", F32_THREADS, true, "wgrad_sum_f32"), dev, &x, &dy, g)
            } else {
                direct_backward_weight(op, g, dev, &x, &dy)
            }
        }
        (CudaStorageSlice::BF16(x), CudaStorageSlice::BF16(dy)) if gemm => {
            let (x, dy) = (view(op, x, l1, &xd)?, view(op, dy, l2, &yd)?);
            if use_channels_last_wgrad(path, g) {
                let x_cl = to_channels_last(op, dev, &x, (g.batch, g.in_channels, g.input_volume()))?;
                let dy_cl = to_channels_last(op, dev, &dy, (g.batch, g.out_channels, g.output_volume()))?;
                let kernel = ("igemm_wgrad_bf16_cl", MMA_THREADS, false, "wgrad_sum_bf16");
                run_igemm_wgrad(op, kernel, dev, &x_cl.as_view(), &dy_cl.as_view(), g)
            } else {
                run_igemm_wgrad(op, ("igemm_wgrad_bf16_mma", MMA_THREADS, false, "wgrad_sum_bf16"), dev, &x, &dy, g)
            }
        }
        _ => via_f32(op, (s1, l1), (s2, l2), |a, b| backward_weight(op, g, path, a, b)),
    }
}

/// The direct backward-weight kernels of conv3d.cu (f32): one block per channel pair and voxel chunk.
fn direct_backward_weight(
    op: &'static str,
    g: &Conv3dGeometry,
    dev: &CudaDevice,
    x: &CudaView<'_, f32>,
    dy: &CudaView<'_, f32>,
) -> candle_core::Result<(CudaStorage, Shape)> {
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
    // SAFETY: conv3d_bwd_weight_f32(const float* x, const float* dy, float* dw, int chunks, 18 x int):
    // `x` and `dy` are f32 views of the input and output sizes of the geometry (checked by `view`),
    // `partial` holds chunks·Co·Ci·taps f32; block (ci, co, z) writes only its own taps of chunk z and
    // reads inside its channels; the kernel's static shared memory is fixed and the block size equals
    // its WGRAD_THREADS.
    let kernel = ("conv3d_bwd_weight_f32", MODULE, PTX);
    unsafe { launch_conv(op, dev, kernel, cfg, (x, dy, &partial), Some(chunks as i32), g) }?;
    if chunks == 1 {
        return Ok((CudaStorage::wrap_cuda_slice(partial, dev.clone()), Shape::from(g.weight_shape().to_vec())));
    }
    sum_chunks::<f32>(op, dev, ("conv3d_sum_chunks_f32", MODULE, PTX), &partial, g, chunks as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_wgrad_partition_covers_every_voxel_once() {
        for g in [
            Conv3dGeometry::new(2, 32, 32, [64; 3], [3; 3], [1; 3], [1; 3]).unwrap(),
            Conv3dGeometry::new(1, 1, 4, [9, 10, 11], [3; 3], [1; 3], [1; 3]).unwrap(),
            Conv3dGeometry::new(2, 128, 128, [16; 3], [3; 3], [1; 3], [1; 3]).unwrap(),
            Conv3dGeometry::new(2, 2, 3, [40; 3], [3; 3], [1; 3], [1; 3]).unwrap(),
        ] {
            let k = g.batch * g.output_volume();
            for tile in [(GEMM_TILE, GEMM_TILE), NARROW_TILE] {
                let (chunks, run) = gemm_wgrad_partition(&g, tile);
                assert!(run % GEMM_BK == 0 && chunks * run >= k && (chunks - 1) * run < k, "{g:?}: {chunks} × {run}");
            }
        }
    }
}
