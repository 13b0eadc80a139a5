//! Instance norm (`norm.cu`) on the GPU, launched on candle's stream: activations (`x`, `dy`, and the
//! outputs `y`, `dx`) in f32 or bf16, statistics, sums, `γ` and `β` in f32.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, CudaView, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use candle_core::cuda_backend::{CudaDType, CudaStorageSlice, WrapErr};
use candle_core::{CudaStorage, Layout, Shape};

use super::{elementwise_config, f32_view, typed_view, wrap_f32};
use crate::KernelsError;

/// Runs `$body` with `$x` bound to the f32 or bf16 slice of the activation storage `$st`, `$sfx` to the
/// kernels' suffix (`"f32"`, `"bf16"`) and `$y` (when given) to the same-dtype slice of `$st2`; other
/// dtypes or a mixed pair are an error.
macro_rules! with_activation {
    ($op:expr, $st:expr, |$x:ident, $sfx:ident| $body:expr) => {
        match &$st.slice {
            CudaStorageSlice::F32($x) => {
                let $sfx = "f32";
                $body
            }
            CudaStorageSlice::BF16($x) => {
                let $sfx = "bf16";
                $body
            }
            _ => {
                Err(KernelsError::Dtype { op: $op, dtype: $st.dtype().as_str().into(), supported: "f32, bf16" }.into())
            }
        }
    };
    ($op:expr, $st:expr, $st2:expr, |$x:ident, $y:ident, $sfx:ident| $body:expr) => {
        match (&$st.slice, &$st2.slice) {
            (CudaStorageSlice::F32($x), CudaStorageSlice::F32($y)) => {
                let $sfx = "f32";
                $body
            }
            (CudaStorageSlice::BF16($x), CudaStorageSlice::BF16($y)) => {
                let $sfx = "bf16";
                $body
            }
            _ => Err(KernelsError::DtypeMismatch {
                op: $op,
                lhs: $st.dtype().as_str().into(),
                rhs: $st2.dtype().as_str().into(),
            }
            .into()),
        }
    };
}

/// A fresh output slice of `len` elements of the activations' dtype.
fn alloc_like<T: DeviceRepr + ValidAsZeroBits>(
    dev: &candle_core::cuda_backend::CudaDevice,
    _like: &CudaSlice<T>,
    len: usize,
) -> candle_core::Result<CudaSlice<T>> {
    // SAFETY (allocation): the callers' kernels write every value.
    unsafe { dev.alloc::<T>(len) }
}

/// `out` as a storage of `shape`.
fn wrap<T: CudaDType>(
    out: CudaSlice<T>,
    dev: &candle_core::cuda_backend::CudaDevice,
    shape: Shape,
) -> (CudaStorage, Shape) {
    (CudaStorage::wrap_cuda_slice(out, dev.clone()), shape)
}

/// PTX of `norm.cu`, compiled by build.rs with nvcc.
const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/norm.ptx"));
/// Name under which candle caches the loaded module.
const MODULE: &str = "magseg_kernels_norm";
/// Threads per block of the partial kernels (`IN_THREADS`).
const IN_THREADS: u32 = 256;
/// Values per chunk of a slice (`IN_CHUNK`).
const IN_CHUNK: usize = 16384;
/// Threads per block of the per-slice final kernels.
const FINAL_THREADS: u32 = 128;

/// The grid of the partial kernels: one block per (slice, chunk), and the chunk count.
fn partial_grid(op: &'static str, slices: usize, s: usize) -> Result<(LaunchConfig, usize), KernelsError> {
    let chunks = s.div_ceil(IN_CHUNK).max(1);
    let (gx, gy) = (u32::try_from(slices), u32::try_from(chunks));
    match (gx, gy) {
        // CUDA's limits: grid x at most 2³¹ − 1, y at most 65535.
        (Ok(gx), Ok(gy)) if (1..=i32::MAX as u32).contains(&gx) && gy <= 65535 => {
            Ok((LaunchConfig { grid_dim: (gx, gy, 1), block_dim: (IN_THREADS, 1, 1), shared_mem_bytes: 0 }, chunks))
        }
        _ => Err(KernelsError::Shape { op, msg: format!("{slices} slices of {s} values are too many for one launch") }),
    }
}

/// One thread per slice.
fn per_slice(slices: usize) -> LaunchConfig {
    let blocks = slices.div_ceil(FINAL_THREADS as usize).max(1) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (FINAL_THREADS, 1, 1), shared_mem_bytes: 0 }
}

/// `(slices, s)` → `(slices, 2)`: mean and `1/sqrt(var + eps)` of each slice.
pub(crate) fn stats(
    eps: f32,
    (st, l): (&CudaStorage, &Layout),
    slices: usize,
    s: usize,
) -> candle_core::Result<(CudaStorage, Shape)> {
    let op = "instance_norm_stats";
    with_activation!(op, st, |x, sfx| stats_typed(eps, (st, typed_view(op, x, l, slices * s)?), sfx, slices, s))
}

/// [`stats`] on a typed view; `sfx` names its dtype.
fn stats_typed<T>(
    eps: f32,
    (st, x): (&CudaStorage, CudaView<'_, T>),
    sfx: &str,
    slices: usize,
    s: usize,
) -> candle_core::Result<(CudaStorage, Shape)> {
    let op = "instance_norm_stats";
    let dev = &st.device;
    let (cfg, chunks) = partial_grid(op, slices, s)?;
    // SAFETY (allocations): the kernels below write every value.
    let partial = unsafe { dev.alloc::<f32>(slices * chunks * 3) }?;
    let out = unsafe { dev.alloc::<f32>(2 * slices) }?;
    let s_arg = s as i64;
    let f = dev.get_or_load_custom_func(&format!("in_stats_partial_{sfx}"), MODULE, PTX)?;
    let mut b = f.builder();
    b.arg(&x).arg(&partial).arg(&s_arg);
    // SAFETY: in_stats_partial_{f32,bf16}(const T* x, float* partial, long long s) on a (slices, chunks)
    // grid: block (i, k) reads x[i·s + k·IN_CHUNK .. min(.., (i+1)·s)) and writes partial[(i·chunks + k)·3
    // .. +3]; x holds slices·s values, partial slices·chunks·3; static shared memory.
    unsafe { b.launch(cfg) }.w()?;
    let (slices_arg, chunks_arg) = (slices as i32, chunks as i32);
    let f = dev.get_or_load_custom_func("in_stats_final_f32", MODULE, PTX)?;
    let mut b = f.builder();
    b.arg(&partial).arg(&out).arg(&slices_arg).arg(&chunks_arg).arg(&eps);
    // SAFETY: in_stats_final_f32(const float* partial, float* stats, int slices, int chunks, float eps):
    // thread i < slices reads partial[(i·chunks + k)·3 + 0..3] for k < chunks, writes stats[2i], stats[2i+1].
    unsafe { b.launch(per_slice(slices)) }.w()?;
    Ok(wrap_f32(out, dev, Shape::from((slices, 2))))
}

/// `y = act((x − mean)·rstd·γ + β)`, `act(z) = z > 0 ? z : z·slope` (slope 1: none).
pub(crate) fn forward(
    (xs, xl): (&CudaStorage, &Layout),
    (st, stl): (&CudaStorage, &Layout),
    (g, gl): (&CudaStorage, &Layout),
    (bt, btl): (&CudaStorage, &Layout),
    (n, c, s): (usize, usize, usize),
    slope: f32,
) -> candle_core::Result<(CudaStorage, Shape)> {
    let op = "instance_norm";
    let dev = &xs.device;
    let total = n * c * s;
    let stats = f32_view(op, st, stl, 2 * n * c)?;
    let (gamma, beta) = (f32_view(op, g, gl, c)?, f32_view(op, bt, btl, c)?);
    let (t_arg, s_arg, c_arg) = (total as i64, s as i64, c as i32);
    with_activation!(op, xs, |xslice, sfx| {
        let x = typed_view(op, xslice, xl, total)?;
        let out = alloc_like(dev, xslice, total)?;
        let f = dev.get_or_load_custom_func(&format!("in_fwd_{sfx}"), MODULE, PTX)?;
        let mut b = f.builder();
        b.arg(&x).arg(&stats).arg(&gamma).arg(&beta).arg(&out).arg(&t_arg).arg(&s_arg).arg(&c_arg).arg(&slope);
        // SAFETY: in_fwd_{f32,bf16}(const T* x, stats, gamma, beta, T* y, long long total, long long s,
        // int channels, float slope): thread i < total reads x[i], stats[2(i/s)..+2],
        // gamma/beta[(i/s) % channels] and writes y[i] (sizes above).
        unsafe { b.launch(elementwise_config(op, total)?) }.w()?;
        Ok(wrap(out, dev, xl.shape().clone()))
    })
}

/// `(x, dy)` → `(n·c, 2)`: `Σ dz` and `Σ dz·x̂` of each slice, `dz = z > 0 ? dy : dy·slope` with
/// `z = x̂·γ + β` recomputed (`gb` = γ and β as `(2, c)`; slope 1: `dz = dy`).
pub(crate) fn grad_sums(
    (xs, xl): (&CudaStorage, &Layout),
    (ds, dl): (&CudaStorage, &Layout),
    (st, stl): (&CudaStorage, &Layout),
    (gbs, gbl): (&CudaStorage, &Layout),
    (n, c, s): (usize, usize, usize),
    slope: f32,
) -> candle_core::Result<(CudaStorage, Shape)> {
    let op = "instance_norm_grad_sums";
    let slices = n * c;
    let (stats, gb) = (f32_view(op, st, stl, 2 * slices)?, f32_view(op, gbs, gbl, 2 * c)?);
    with_activation!(op, xs, ds, |x, dy, sfx| {
        let (x, dy) = (typed_view(op, x, xl, slices * s)?, typed_view(op, dy, dl, slices * s)?);
        grad_sums_typed(&xs.device, (x, dy), (stats, gb), sfx, (n, c, s), slope)
    })
}

/// [`grad_sums`] on typed views; `sfx` names the activations' dtype.
fn grad_sums_typed<T>(
    dev: &candle_core::cuda_backend::CudaDevice,
    (x, dy): (CudaView<'_, T>, CudaView<'_, T>),
    (stats, gb): (CudaView<'_, f32>, CudaView<'_, f32>),
    sfx: &str,
    (n, c, s): (usize, usize, usize),
    slope: f32,
) -> candle_core::Result<(CudaStorage, Shape)> {
    let op = "instance_norm_grad_sums";
    let slices = n * c;
    let c_arg = c as i32;
    let (cfg, chunks) = partial_grid(op, slices, s)?;
    // SAFETY (allocations): the kernels below write every value.
    let partial = unsafe { dev.alloc::<f32>(slices * chunks * 2) }?;
    let out = unsafe { dev.alloc::<f32>(2 * slices) }?;
    let s_arg = s as i64;
    let f = dev.get_or_load_custom_func(&format!("in_grad_partial_{sfx}"), MODULE, PTX)?;
    let mut b = f.builder();
    b.arg(&x).arg(&dy).arg(&stats).arg(&gb).arg(&partial).arg(&s_arg).arg(&c_arg).arg(&slope);
    // SAFETY: in_grad_partial_{f32,bf16}(x, dy, stats, gb, partial, long long s, int channels, float slope)
    // on a (slices, chunks) grid: block (i, k) reads chunk k of slice i of x and dy, stats[2i..2i+2] and
    // gb[i % channels], gb[channels + i % channels] (2·channels values), writes partial[(i·chunks + k)·2
    // .. +2] (slices·chunks·2 values); static shared memory.
    unsafe { b.launch(cfg) }.w()?;
    let (slices_arg, chunks_arg) = (slices as i32, chunks as i32);
    let f = dev.get_or_load_custom_func("in_grad_final_f32", MODULE, PTX)?;
    let mut b = f.builder();
    b.arg(&partial).arg(&out).arg(&slices_arg).arg(&chunks_arg);
    // SAFETY: in_grad_final_f32(const float* partial, float* sums, int slices, int chunks): thread
    // i < slices reads partial[(i·chunks + k)·2 + 0..2] for k < chunks, writes sums[2i], sums[2i+1].
    unsafe { b.launch(per_slice(slices)) }.w()?;
    Ok(wrap_f32(out, dev, Shape::from((slices, 2))))
}

/// `dx = γ·rstd·(dz − Σdz/s − x̂·Σ(dz·x̂)/s)`, `dz` as in [`grad_sums`].
pub(crate) fn grad_input(
    (xs, xl): (&CudaStorage, &Layout),
    (ds, dl): (&CudaStorage, &Layout),
    (st, stl): (&CudaStorage, &Layout),
    (gbs, gbl): (&CudaStorage, &Layout),
    (ss, ssl): (&CudaStorage, &Layout),
    (n, c, s): (usize, usize, usize),
    slope: f32,
) -> candle_core::Result<(CudaStorage, Shape)> {
    let op = "instance_norm_grad_input";
    let dev = &xs.device;
    let total = n * c * s;
    let gb = f32_view(op, gbs, gbl, 2 * c)?;
    let (stats, sums) = (f32_view(op, st, stl, 2 * n * c)?, f32_view(op, ss, ssl, 2 * n * c)?);
    let (t_arg, s_arg, c_arg) = (total as i64, s as i64, c as i32);
    with_activation!(op, xs, ds, |xslice, dyslice, sfx| {
        let (x, dy) = (typed_view(op, xslice, xl, total)?, typed_view(op, dyslice, dl, total)?);
        let out = alloc_like(dev, xslice, total)?;
        let f = dev.get_or_load_custom_func(&format!("in_grad_input_{sfx}"), MODULE, PTX)?;
        let mut b = f.builder();
        b.arg(&x).arg(&dy).arg(&gb).arg(&stats).arg(&sums).arg(&out);
        b.arg(&t_arg).arg(&s_arg).arg(&c_arg).arg(&slope);
        // SAFETY: in_grad_input_{f32,bf16}(const T* x, const T* dy, gb, stats, sums, T* dx, long long
        // total, long long s, int channels, float slope): thread i < total reads x[i], dy[i],
        // gb[(i/s) % channels] and gb[channels + (i/s) % channels] (2·channels values), stats and sums
        // [2(i/s)..+2] and writes dx[i] (sizes checked above).
        unsafe { b.launch(elementwise_config(op, total)?) }.w()?;
        Ok(wrap(out, dev, xl.shape().clone()))
    })
}
