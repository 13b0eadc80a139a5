//! Argument checks shared by the public entry points and the custom ops: ranks, dtypes, devices,
//! and typed access to CPU storages (dispatch on dtype).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Device, Layout, Shape, Tensor};

use crate::KernelsError;

/// Dtypes with an implementation (CPU and CUDA). On the CPU, bf16 operands are converted to f32,
/// computed in f32 and the result rounded back to bf16 (round to nearest even).
pub(crate) const SUPPORTED: &str = "f32, bf16";

/// Whether the conv custom ops implement `dtype`.
pub(crate) fn is_supported(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::BF16)
}

/// The five dimensions of a rank-5 tensor, or a rank error.
pub(crate) fn dims5(op: &'static str, what: &'static str, t: &Tensor) -> Result<[usize; 5], KernelsError> {
    match *t.dims() {
        [a, b, c, d, e] => Ok([a, b, c, d, e]),
        _ => Err(KernelsError::Rank { op, what, expected: "5", shape: t.dims().to_vec() }),
    }
}

/// Both tensors share one dtype, which is supported, and one device, which is supported.
pub(crate) fn same_dtype_device(op: &'static str, a: &Tensor, b: &Tensor) -> Result<(), KernelsError> {
    matching_dtype_device(op, a, b)?;
    if !is_supported(a.dtype()) {
        return Err(KernelsError::Dtype { op, dtype: a.dtype().as_str().to_string(), supported: SUPPORTED });
    }
    supported_device(op, a.device())
}

/// `a` and `b` share dtype and device (any dtype, any device: for ops composed from candle ops).
pub(crate) fn matching_dtype_device(op: &'static str, a: &Tensor, b: &Tensor) -> Result<(), KernelsError> {
    if a.dtype() != b.dtype() {
        return Err(KernelsError::DtypeMismatch {
            op,
            lhs: a.dtype().as_str().to_string(),
            rhs: b.dtype().as_str().to_string(),
        });
    }
    if !a.device().same_device(b.device()) {
        return Err(KernelsError::Shape {
            op,
            msg: format!(
                "tensors live on different devices ({:?} and {:?})",
                a.device().location(),
                b.device().location()
            ),
        });
    }
    Ok(())
}

/// The CPU always has kernels; CUDA devices have them with the `cuda` feature (Metal has none).
pub(crate) fn supported_device(op: &'static str, d: &Device) -> Result<(), KernelsError> {
    if d.is_cpu() || (cfg!(feature = "cuda") && d.is_cuda()) {
        Ok(())
    } else {
        Err(KernelsError::Device { op, device: format!("{:?}", d.location()) })
    }
}

/// A per-channel vector (bias, gamma, beta) of shape `(c,)` with the dtype and device of `like`; with
/// `f32_only`, also a dtype ([`SUPPORTED`]) and device the custom kernels support.
pub(crate) fn check_channel_vec(
    op: &'static str,
    what: &'static str,
    v: &Tensor,
    c: usize,
    like: &Tensor,
    f32_only: bool,
) -> Result<(), KernelsError> {
    if v.dims() != [c] {
        return Err(KernelsError::Shape { op, msg: format!("{what} must have shape [{c}], got {:?}", v.dims()) });
    }
    if f32_only {
        same_dtype_device(op, like, v)
    } else {
        matching_dtype_device(op, like, v)
    }
}

/// Runs the f32 CPU pass `f` on two operands of one supported dtype: f32 directly; bf16 converted to
/// f32 (exactly) with the result rounded back to bf16. Mixed or unsupported dtypes are an error.
pub(crate) fn cpu_f32_or_bf16(
    op: &'static str,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
    f: impl FnOnce(&CpuStorage, &Layout, &CpuStorage, &Layout) -> candle_core::Result<(CpuStorage, Shape)>,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (d1, d2) = (s1.dtype(), s2.dtype());
    if d1 != d2 {
        return Err(
            KernelsError::DtypeMismatch { op, lhs: d1.as_str().to_string(), rhs: d2.as_str().to_string() }.into()
        );
    }
    match d1 {
        DType::F32 => f(s1, l1, s2, l2),
        DType::BF16 => {
            let a = s1.to_dtype(l1, DType::F32)?;
            let b = s2.to_dtype(l2, DType::F32)?;
            let (out, shape) =
                f(&a, &Layout::contiguous(l1.shape().clone()), &b, &Layout::contiguous(l2.shape().clone()))?;
            let out = out.to_dtype(&Layout::contiguous(shape.clone()), DType::BF16)?;
            Ok((out, shape))
        }
        other => Err(KernelsError::Dtype { op, dtype: other.as_str().to_string(), supported: SUPPORTED }.into()),
    }
}

/// The f32 data of a contiguous CPU storage, or a dtype/layout error.
pub(crate) fn f32_data<'a>(
    op: &'static str,
    s: &'a CpuStorage,
    l: &Layout,
    dims: &[usize],
) -> Result<&'a [f32], KernelsError> {
    let v = match s {
        CpuStorage::F32(v) => v,
        other => {
            return Err(KernelsError::Dtype { op, dtype: other.dtype().as_str().to_string(), supported: SUPPORTED })
        }
    };
    if l.dims() != dims {
        return Err(KernelsError::Shape {
            op,
            msg: format!("expected an operand of shape {dims:?}, got {:?}", l.dims()),
        });
    }
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| KernelsError::Layout { op, msg: "operand is not contiguous".to_string() })?;
    v.get(start..end).ok_or_else(|| KernelsError::Layout {
        op,
        msg: format!("layout {start}..{end} outside a storage of {}", v.len()),
    })
}

/// The f32 values of a contiguous CPU storage of any shape.
pub(crate) fn f32_values<'a>(op: &'static str, s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32], KernelsError> {
    f32_data(op, s, l, l.dims())
}

/// The f32 CPU values of a tensor a custom op computed beforehand and holds (statistics, sums), run
/// through `f`.
pub(crate) fn with_cpu_values<R>(
    op: &'static str,
    t: &Tensor,
    f: impl FnOnce(&[f32]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let (s, l) = t.storage_and_layout();
    match &*s {
        candle_core::Storage::Cpu(s) => f(f32_values(op, s, l)?),
        _ => Err(KernelsError::Layout { op, msg: "a precomputed operand is not on the input's device".into() }.into()),
    }
}

/// The CUDA storages and layouts of tensors a custom op computed beforehand and holds, run through `f`.
#[cfg(feature = "cuda")]
pub(crate) fn with_cuda_storages<const N: usize, R>(
    op: &'static str,
    ts: [&Tensor; N],
    f: impl FnOnce([(&candle_core::CudaStorage, &Layout); N]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let guards = ts.map(|t| t.storage_and_layout());
    let mut found = Vec::with_capacity(N);
    for (s, l) in &guards {
        match &**s {
            candle_core::Storage::Cuda(s) => found.push((s, *l)),
            _ => {
                return Err(KernelsError::Layout {
                    op,
                    msg: "a precomputed operand is not on the input's device".into(),
                }
                .into())
            }
        }
    }
    match found.try_into() {
        Ok(all) => f(all),
        Err(_) => Err(KernelsError::Layout { op, msg: "precomputed operands missing".into() }.into()),
    }
}
