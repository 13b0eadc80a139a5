//! `max_pool2`: 2×2×2 max pooling with stride 2 as one custom op each way, with PyTorch's
//! `max_pool3d` semantics — the first maximum of a window in (d, h, w) order takes the gradient, a
//! NaN counts as the maximum. Composed from candle ops it is 3 pairwise maxima of strided halves
//! (~11 graph nodes; autograd splits the gradient of tied values, which zero backgrounds make
//! common). No arithmetic: outputs are copies of inputs, gradients copies of output gradients, so
//! the CPU and the GPU agree bit for bit, in f32 and bf16.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::check::{cpu_f32_or_bf16, f32_values, is_supported, supported_device};
use crate::KernelsError;

/// 2×2×2 max pooling, stride 2, of `x (N, C, D, H, W)` with even `D`, `H`, `W`: `(N, C, D/2, H/2, W/2)`.
/// Each output is the largest value of its window (a NaN if the window has one); the gradient goes
/// to the first largest value in (d, h, w) order, as in PyTorch. f32 and bf16 on the CPU and CUDA
/// run as custom ops; other dtypes as pairwise maxima of candle ops (whose gradient ties split).
pub fn max_pool2(x: &Tensor) -> candle_core::Result<Tensor> {
    let op = "max_pool2";
    let _span = tracing::trace_span!("max_pool2", x = ?x.dims()).entered();
    let (n, c, d, h, w) = x.dims5()?;
    if d % 2 != 0 || h % 2 != 0 || w % 2 != 0 {
        return Err(KernelsError::Shape { op, msg: format!("max pooling needs even sizes, got {d}×{h}×{w}") }.into());
    }
    // Refused alike on every device (the CPU backward pass has no window to split an empty plane into).
    if n * c * d * h * w == 0 {
        return Err(KernelsError::Shape { op, msg: format!("max pooling of an empty tensor {:?}", x.dims()) }.into());
    }
    if !is_supported(x.dtype()) || supported_device(op, x.device()).is_err() {
        let mut x = x.reshape(vec![n * c * d / 2, 2, h / 2, 2, w / 2, 2])?;
        for axis in [5, 3, 1] {
            x = x.narrow(axis, 0, 1)?.maximum(&x.narrow(axis, 1, 1)?)?;
        }
        return x.reshape((n, c, d / 2, h / 2, w / 2));
    }
    x.contiguous()?.apply_op1(MaxPool2)
}

/// The forward custom op.
struct MaxPool2;

/// `(x, dy)` → `dx`.
struct MaxPool2Grad;

/// Output sizes `(planes, d2, h2, w2)` of a contiguous `(N, C, D, H, W)` layout.
fn out_dims(op: &'static str, l: &Layout) -> Result<[usize; 4], KernelsError> {
    match *l.dims() {
        [n, c, d, h, w] if l.is_contiguous() && d % 2 == 0 && h % 2 == 0 && w % 2 == 0 => {
            Ok([n * c, d / 2, h / 2, w / 2])
        }
        _ => Err(KernelsError::Layout {
            op,
            msg: format!("expected a contiguous (N, C, 2d, 2h, 2w) input, got {:?}", l.dims()),
        }),
    }
}

/// The input index of the chosen element of output `i`'s window: the first maximum in (d, h, w)
/// order, or the last NaN (PyTorch's `val > max || isnan(val)` scan from the window's first value).
fn argmax(x: &[f32], [_, d2, h2, w2]: [usize; 4], i: usize) -> usize {
    let (ow, t) = (i % w2, i / w2);
    let (oh, t) = (t % h2, t / h2);
    let (od, p) = (t % d2, t / d2);
    let (hh, ww) = (2 * h2, 2 * w2);
    let base = ((p * 2 * d2 + 2 * od) * hh + 2 * oh) * ww + 2 * ow;
    let mut best = base;
    for k in 1..8 {
        let j = base + (k >> 2) * hh * ww + ((k >> 1) & 1) * ww + (k & 1);
        if x[j] > x[best] || x[j].is_nan() {
            best = j;
        }
    }
    best
}

/// Elements per rayon work item.
const CPU_RUN: usize = 1 << 14;

impl CustomOp1 for MaxPool2 {
    fn name(&self) -> &'static str {
        "max_pool2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = self.name();
        let od = out_dims(op, l)?;
        let dims = l.dims();
        let shape = Shape::from((dims[0], dims[1], od[1], od[2], od[3]));
        let run = |x: &[f32]| -> Vec<f32> {
            (0..shape.elem_count()).into_par_iter().with_min_len(CPU_RUN).map(|i| x[argmax(x, od, i)]).collect()
        };
        match s.dtype() {
            DType::F32 => Ok((CpuStorage::F32(run(f32_values(op, s, l)?)), shape)),
            DType::BF16 => {
                // Widening to f32 and back is exact, and the output copies input values.
                let x = s.to_dtype(l, DType::F32)?;
                let y = CpuStorage::F32(run(f32_values(op, &x, &Layout::contiguous(l.shape().clone()))?));
                Ok((y.to_dtype(&Layout::contiguous(shape.clone()), DType::BF16)?, shape))
            }
            other => Err(KernelsError::Dtype { op, dtype: other.as_str().into(), supported: "f32, bf16" }.into()),
        }
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        let od = out_dims(self.name(), l)?;
        crate::cuda::activation::max_pool2(None, (s, l), od)
    }

    fn bwd(&self, x: &Tensor, _: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&grad.contiguous()?, &MaxPool2Grad)?))
    }
}

impl CustomOp2 for MaxPool2Grad {
    fn name(&self) -> &'static str {
        "max_pool2_grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = self.name();
        let od = out_dims(op, l1)?;
        cpu_f32_or_bf16(op, (s1, l1), (s2, l2), |s1, l1, s2, l2| {
            let (x, dy) = (f32_values(op, s1, l1)?, f32_values(op, s2, l2)?);
            if dy.len() * 8 != x.len() {
                return Err(
                    KernelsError::Layout { op, msg: format!("{} inputs and {} gradients", x.len(), dy.len()) }.into()
                );
            }
            let mut dx = vec![0f32; x.len()];
            // Every window lies inside one (n, c) plane: planes in parallel, each writing its own.
            let per = od[1] * od[2] * od[3];
            dx.par_chunks_mut(8 * per).enumerate().for_each(|(p, plane)| {
                for i in p * per..(p + 1) * per {
                    plane[argmax(x, od, i) - 8 * p * per] = dy[i];
                }
            });
            Ok((CpuStorage::F32(dx), l1.shape().clone()))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        let od = out_dims(self.name(), l1)?;
        crate::cuda::activation::max_pool2(Some((s2, l2)), (s1, l1), od)
    }
}
