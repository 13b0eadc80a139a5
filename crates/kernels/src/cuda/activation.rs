//! The activations of [`crate::activation`] and the max pooling of [`crate::pool`] (`activation.cu`) on
//! the GPU, launched on candle's stream: one thread per element (per output value for the pooling).

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, DeviceRepr, PushKernelArg, ValidAsZeroBits};
use candle_core::cuda_backend::{CudaDevice, CudaStorageSlice, WrapErr};
use candle_core::{CudaStorage, Layout, Shape};

use super::{contiguous_range, elementwise_config};
use crate::activation::Act;
use crate::KernelsError;

/// PTX of `activation.cu`, compiled by build.rs with nvcc.
const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/activation.ptx"));
/// Name under which candle caches the loaded module.
const MODULE: &str = "magseg_kernels_activation";

/// Launches `func` over the `n` elements of the operands `srcs` (contiguous ranges of slices of `T`)
/// into a fresh output of `n` elements, passing `n` and the activation's parameter after the pointers.
fn launch<T: DeviceRepr + ValidAsZeroBits>(
    op: &'static str,
    dev: &CudaDevice,
    func: &str,
    srcs: &[(&CudaSlice<T>, &Layout)],
    param: f32,
) -> candle_core::Result<CudaSlice<T>> {
    let n = srcs[0].1.shape().elem_count();
    let mut views = Vec::with_capacity(srcs.len());
    for (s, l) in srcs {
        let (a, b) = contiguous_range(op, l, s.len())?;
        if b - a != n {
            return Err(KernelsError::Layout { op, msg: format!("operands of {} and {n} elements", b - a) }.into());
        }
        views.push(s.slice(a..b));
    }
    // SAFETY (allocation): every element is written by the kernel below before any read.
    let out = unsafe { dev.alloc::<T>(n) }?;
    if n == 0 {
        return Ok(out);
    }
    let f = dev.get_or_load_custom_func(func, MODULE, PTX)?;
    let n_arg = n as i64;
    let mut b = f.builder();
    for v in &views {
        b.arg(v);
    }
    b.arg(&out).arg(&n_arg).arg(&param);
    // SAFETY: {leaky_relu,gelu_erf}_{fwd,bwd}_{f32,bf16}(const T* srcs..., T* out, long long n, float p): thread
    // i < n reads element i of each source view (n elements each) and writes out[i] (n elements).
    unsafe { b.launch(elementwise_config(op, n)?) }.w()?;
    Ok(out)
}

/// `y = f(x)`.
pub(crate) fn forward(act: Act, (s, l): (&CudaStorage, &Layout)) -> candle_core::Result<(CudaStorage, Shape)> {
    let (stem, param) = act.kernel();
    let dev = s.device.clone();
    let out = match &s.slice {
        CudaStorageSlice::F32(x) => {
            CudaStorageSlice::F32(launch(stem, &dev, &format!("{stem}_fwd_f32"), &[(x, l)], param)?)
        }
        CudaStorageSlice::BF16(x) => {
            CudaStorageSlice::BF16(launch(stem, &dev, &format!("{stem}_fwd_bf16"), &[(x, l)], param)?)
        }
        _ => {
            return Err(
                KernelsError::Dtype { op: stem, dtype: s.dtype().as_str().into(), supported: "f32, bf16" }.into()
            )
        }
    };
    Ok((CudaStorage { slice: out, device: dev }, l.shape().clone()))
}

/// `dx = f′(x) · dy` of `(x, dy)`.
pub(crate) fn backward(
    act: Act,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    let (stem, param) = act.kernel();
    let dev = s1.device.clone();
    let func = |dt: &str| format!("{stem}_bwd_{dt}");
    let out = match (&s1.slice, &s2.slice) {
        (CudaStorageSlice::F32(x), CudaStorageSlice::F32(dy)) => {
            CudaStorageSlice::F32(launch(stem, &dev, &func("f32"), &[(x, l1), (dy, l2)], param)?)
        }
        (CudaStorageSlice::BF16(x), CudaStorageSlice::BF16(dy)) => {
            CudaStorageSlice::BF16(launch(stem, &dev, &func("bf16"), &[(x, l1), (dy, l2)], param)?)
        }
        _ => {
            return Err(KernelsError::DtypeMismatch {
                op: stem,
                lhs: s1.dtype().as_str().into(),
                rhs: s2.dtype().as_str().into(),
            }
            .into())
        }
    };
    Ok((CudaStorage { slice: out, device: dev }, l1.shape().clone()))
}

/// 2×2×2 max pooling of `x`, output sizes `[planes, d2, h2, w2]`: forward (`dy` None: the pooled
/// values) or backward (`dy` Some: the input gradient).
pub(crate) fn max_pool2(
    dy: Option<(&CudaStorage, &Layout)>,
    (s, l): (&CudaStorage, &Layout),
    [planes, d2, h2, w2]: [usize; 4],
) -> candle_core::Result<(CudaStorage, Shape)> {
    let op = "max_pool2";
    let dev = s.device.clone();
    let n = planes * d2 * h2 * w2;
    let dims = l.dims();
    let out_shape = match dy {
        None => Shape::from((dims[0], dims[1], d2, h2, w2)),
        Some(_) => l.shape().clone(),
    };
    let int = |v: usize| i32::try_from(v).map_err(|_| KernelsError::Shape { op, msg: format!("size {v} too large") });
    let sizes = (int(d2)?, int(h2)?, int(w2)?);
    fn run<T: DeviceRepr + ValidAsZeroBits>(
        dev: &CudaDevice,
        func: &str,
        x: (&CudaSlice<T>, &Layout),
        dy: Option<(&CudaSlice<T>, &Layout)>,
        (n, out_len): (usize, usize),
        (d2, h2, w2): (i32, i32, i32),
    ) -> candle_core::Result<CudaSlice<T>> {
        let op = "max_pool2";
        let (a, b) = contiguous_range(op, x.1, x.0.len())?;
        let xv = x.0.slice(a..b);
        // SAFETY (allocation): the forward kernel writes each of its n outputs; the backward kernel
        // writes all 8 elements of each of the n windows, which tile the input (out_len = 8n).
        let out = unsafe { dev.alloc::<T>(out_len) }?;
        if n == 0 {
            return Ok(out);
        }
        let f = dev.get_or_load_custom_func(func, MODULE, PTX)?;
        let n_arg = n as i64;
        let mut builder = f.builder();
        builder.arg(&xv);
        let dyv = match dy {
            Some((s, l)) => {
                let (a, b) = contiguous_range(op, l, s.len())?;
                if b - a != n {
                    return Err(KernelsError::Layout { op, msg: format!("{} gradients for {n} outputs", b - a) }.into());
                }
                Some(s.slice(a..b))
            }
            None => None,
        };
        if let Some(v) = &dyv {
            builder.arg(v);
        }
        builder.arg(&out).arg(&n_arg).arg(&d2).arg(&h2).arg(&w2);
        // SAFETY: max_pool2_{fwd,bwd}_{f32,bf16}(const T* x, [const T* dy,] T* out, long long n, int d2,
        // int h2, int w2): thread i < n reads the 8 elements of window i of x (8n elements) [and dy[i]]
        // and writes out[i] (forward, n elements) or the window's 8 elements of out (backward, 8n).
        unsafe { builder.launch(elementwise_config(op, n)?) }.w()?;
        Ok(out)
    }
    let len = l.shape().elem_count();
    if len != 8 * n {
        return Err(KernelsError::Layout { op, msg: format!("{len} inputs for {n} outputs") }.into());
    }
    let out_len = if dy.is_some() { len } else { n };
    let slice = match (&s.slice, dy.map(|(d, dl)| (&d.slice, dl))) {
        (CudaStorageSlice::F32(x), None) => {
            CudaStorageSlice::F32(run(&dev, "max_pool2_fwd_f32", (x, l), None, (n, out_len), sizes)?)
        }
        (CudaStorageSlice::BF16(x), None) => {
            CudaStorageSlice::BF16(run(&dev, "max_pool2_fwd_bf16", (x, l), None, (n, out_len), sizes)?)
        }
        (CudaStorageSlice::F32(x), Some((CudaStorageSlice::F32(g), gl))) => {
            CudaStorageSlice::F32(run(&dev, "max_pool2_bwd_f32", (x, l), Some((g, gl)), (n, out_len), sizes)?)
        }
        (CudaStorageSlice::BF16(x), Some((CudaStorageSlice::BF16(g), gl))) => {
            CudaStorageSlice::BF16(run(&dev, "max_pool2_bwd_bf16", (x, l), Some((g, gl)), (n, out_len), sizes)?)
        }
        _ => {
            return Err(KernelsError::Dtype {
                op,
                dtype: s.dtype().as_str().into(),
                supported: "f32, bf16 (both operands)",
            }
            .into())
        }
    };
    Ok((CudaStorage { slice, device: dev }, out_shape))
}
