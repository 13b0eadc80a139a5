//! Row-wise ops over the last dimension with their gradients written out:
//!
//! - `layer_norm`: per-row statistics in one pass, the normalisation in another, and two passes
//!   backward (input gradient; γ and β gradients), where the same composed from candle ops
//!   (`layer_norm_slow`) takes ~11 launches forward and ~40 in autograd's backward;
//! - `softmax_last`: one pass each way, where candle_nn's composed softmax takes 5 forward and ~15
//!   backward.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor, D};
use rayon::prelude::*;

#[cfg(feature = "cuda")]
use crate::check::with_cuda_storages;
use crate::check::{f32_values, matching_dtype_device, supported_device, with_cpu_values};
use crate::KernelsError;

/// PyTorch's `F.layer_norm(x, (H,), gamma, beta, eps)`: each row of the last dimension (`H` values)
/// is normalised with its mean and biased variance, `(x − mean) / sqrt(var + eps)`, then scaled by
/// `gamma (H,)` and shifted by `beta (H,)`. Differentiable in all three. f32 tensors run as custom
/// ops (CPU, CUDA); other dtypes as candle ops (the statistics in f32 for f16/bf16).
pub fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    let op = "layer_norm";
    let _span = tracing::trace_span!("layer_norm", x = ?x.dims()).entered();
    let h = x.dim(D::Minus1)?;
    for (what, t) in [("gamma", gamma), ("beta", beta)] {
        if t.dims() != [h] {
            return Err(KernelsError::Shape {
                op,
                msg: format!("{what} must have shape [{h}] for an input of shape {:?}, got {:?}", x.dims(), t.dims()),
            }
            .into());
        }
        matching_dtype_device(op, x, t)?;
    }
    if !(eps.is_finite() && eps >= 0.0) || h == 0 {
        return Err(KernelsError::Config {
            op,
            msg: format!("eps must be finite and ≥ 0 (got {eps}), rows non-empty"),
        }
        .into());
    }
    if x.dtype() != DType::F32 || supported_device(op, x.device()).is_err() {
        return composed(x, gamma, beta, eps);
    }
    let x = x.contiguous()?;
    let stats = x.detach().apply_op1_no_bwd(&RowStats { eps: eps as f32 })?;
    x.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, LayerNorm { stats })
}

/// `layer_norm` from candle ops (candle_nn's `layer_norm_slow`), for dtypes without custom ops.
fn composed(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    let dtype = x.dtype();
    let inner = if matches!(dtype, DType::F16 | DType::BF16) { DType::F32 } else { dtype };
    let h = x.dim(D::Minus1)? as f64;
    let x = x.to_dtype(inner)?;
    let xc = x.broadcast_sub(&(x.sum_keepdim(D::Minus1)? / h)?)?;
    let var = (xc.sqr()?.sum_keepdim(D::Minus1)? / h)?;
    let xhat = xc.broadcast_div(&(var + eps)?.sqrt()?)?;
    xhat.to_dtype(dtype)?.broadcast_mul(gamma)?.broadcast_add(beta)
}

/// Softmax over the last dimension, `exp(x − max) / Σ exp(x − max)` per row, differentiable
/// (`dx = y · (dy − Σ dy·y)`). f32 tensors run as one custom op each way (CPU, CUDA); other dtypes
/// as candle ops.
pub fn softmax_last(x: &Tensor) -> candle_core::Result<Tensor> {
    let _span = tracing::trace_span!("softmax_last", x = ?x.dims()).entered();
    if x.rank() == 0 {
        return Err(
            KernelsError::Rank { op: "softmax_last", what: "input", expected: "at least 1", shape: vec![] }.into()
        );
    }
    if x.dtype() != DType::F32 || supported_device("softmax_last", x.device()).is_err() {
        let e = x.broadcast_sub(&x.max_keepdim(D::Minus1)?)?.exp()?;
        return e.broadcast_div(&e.sum_keepdim(D::Minus1)?);
    }
    x.contiguous()?.apply_op1(Softmax)
}

/// An output of `n` values written row by row (`h` values each) by `f(row, out_row)`, rows in
/// parallel (in runs of at least 2¹⁴ values).
fn per_row(n: usize, h: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) -> Vec<f32> {
    let mut out = vec![0f32; n];
    out.par_chunks_mut(h).enumerate().with_min_len((1 << 14) / h.max(1) + 1).for_each(|(r, o)| f(r, o));
    out
}

/// The rows (count, length) of a contiguous layout.
fn rows_of(l: &Layout) -> (usize, usize) {
    let h = l.dims().last().copied().unwrap_or(1).max(1);
    (l.shape().elem_count() / h, h)
}

/// Mean and `1 / sqrt(var + eps)` of each row: `(R, H)` → `(R, 2)`.
struct RowStats {
    eps: f32,
}

impl CustomOp1 for RowStats {
    fn name(&self) -> &'static str {
        "layer_norm_stats"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_values(self.name(), s, l)?;
        let (r, h) = rows_of(l);
        let mut out = vec![0f32; 2 * r];
        out.par_chunks_mut(2).zip(x.par_chunks(h)).for_each(|(o, row)| {
            let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / h as f64;
            let var = row.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / h as f64;
            o[0] = mean as f32;
            o[1] = (1.0 / (var + f64::from(self.eps)).sqrt()) as f32;
        });
        Ok((CpuStorage::F32(out), Shape::from((r, 2))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        crate::cuda::rows::stats(self.eps, (s, l))
    }
}

/// `y = (x − mean)·rstd·γ + β` of `(x, γ, β)`, with the statistics computed beforehand.
struct LayerNorm {
    stats: Tensor,
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "layer_norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = self.name();
        let (x, g, b) = (f32_values(op, s1, l1)?, f32_values(op, s2, l2)?, f32_values(op, s3, l3)?);
        let (_, h) = rows_of(l1);
        with_cpu_values(op, &self.stats, |st| {
            let y = per_row(x.len(), h, |r, y| {
                let x = &x[r * h..(r + 1) * h];
                for j in 0..h {
                    y[j] = (x[j] - st[2 * r]) * st[2 * r + 1] * g[j] + b[j];
                }
            });
            Ok((CpuStorage::F32(y), l1.shape().clone()))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        with_cuda_storages(self.name(), [&self.stats], |[(st, stl)]| {
            crate::cuda::rows::forward((s1, l1), (st, stl), (s2, l2), (s3, l3))
        })
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = grad.contiguous()?;
        let dx = x.apply_op3_no_bwd(gamma, &dy, &InputGrad { stats: self.stats.clone() })?;
        let p = x.apply_op2_no_bwd(&dy, &ParamGrads { stats: self.stats.clone() })?;
        Ok((Some(dx), Some(p.get(0)?), Some(p.get(1)?)))
    }
}

/// `dx = rstd·(dy·γ − mean(dy·γ) − x̂·mean(dy·γ·x̂))` per row, of `(x, γ, dy)`.
struct InputGrad {
    stats: Tensor,
}

impl CustomOp3 for InputGrad {
    fn name(&self) -> &'static str {
        "layer_norm_grad_input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = self.name();
        let (x, g, dy) = (f32_values(op, s1, l1)?, f32_values(op, s2, l2)?, f32_values(op, s3, l3)?);
        let (_, h) = rows_of(l1);
        with_cpu_values(op, &self.stats, |st| {
            // Per row: mean(dy·γ) and mean(dy·γ·x̂).
            let means: Vec<[f32; 2]> = (x.par_chunks(h).zip(dy.par_chunks(h)).zip(st.par_chunks(2)))
                .map(|((x, dy), st)| {
                    let (mut a, mut b) = (0f64, 0f64);
                    for j in 0..h {
                        let dyg = f64::from(dy[j] * g[j]);
                        a += dyg;
                        b += dyg * f64::from((x[j] - st[0]) * st[1]);
                    }
                    [(a / h as f64) as f32, (b / h as f64) as f32]
                })
                .collect();
            let dx = per_row(x.len(), h, |r, dx| {
                let (x, dy) = (&x[r * h..(r + 1) * h], &dy[r * h..(r + 1) * h]);
                let (mean, rstd, [a, b]) = (st[2 * r], st[2 * r + 1], means[r]);
                for j in 0..h {
                    let xhat = (x[j] - mean) * rstd;
                    dx[j] = rstd * (dy[j] * g[j] - a - xhat * b);
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
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        with_cuda_storages(self.name(), [&self.stats], |[(st, stl)]| {
            crate::cuda::rows::input_grad((s1, l1), (st, stl), (s2, l2), (s3, l3))
        })
    }
}

/// `(Σ_rows dy·x̂, Σ_rows dy)` of `(x, dy)`: the gradients of γ and β, as `(2, H)`.
struct ParamGrads {
    stats: Tensor,
}

impl CustomOp2 for ParamGrads {
    fn name(&self) -> &'static str {
        "layer_norm_grad_params"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = self.name();
        let (x, dy) = (f32_values(op, s1, l1)?, f32_values(op, s2, l2)?);
        let (r, h) = rows_of(l1);
        with_cpu_values(op, &self.stats, |st| {
            let mut out = vec![0f32; 2 * h];
            let (dg, db) = out.split_at_mut(h);
            dg.par_iter_mut().zip(db.par_iter_mut()).enumerate().for_each(|(j, (dg, db))| {
                let (mut a, mut b) = (0f64, 0f64);
                for i in 0..r {
                    let (xv, d) = (x[i * h + j], dy[i * h + j]);
                    a += f64::from(d * ((xv - st[2 * i]) * st[2 * i + 1]));
                    b += f64::from(d);
                }
                (*dg, *db) = (a as f32, b as f32);
            });
            Ok((CpuStorage::F32(out), Shape::from((2, h))))
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
        with_cuda_storages(self.name(), [&self.stats], |[(st, stl)]| {
            crate::cuda::rows::param_grads((s1, l1), (st, stl), (s2, l2))
        })
    }
}

/// Softmax over each row.
pub(crate) struct Softmax;

/// `dx = y · (dy − Σ dy·y)` of `(y, dy)`.
pub(crate) struct SoftmaxGrad;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "softmax_last"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_values(self.name(), s, l)?;
        let (_, h) = rows_of(l);
        let y = per_row(x.len(), h, |r, y| {
            let x = &x[r * h..(r + 1) * h];
            let m = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let mut total = 0f64;
            for (y, &x) in y.iter_mut().zip(x) {
                *y = (x - m).exp();
                total += f64::from(*y);
            }
            let inv = (1.0 / total) as f32;
            y.iter_mut().for_each(|y| *y *= inv);
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        crate::cuda::rows::softmax((s, l))
    }

    fn bwd(&self, _: &Tensor, y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(y.apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxGrad)?))
    }
}

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "softmax_last_grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = self.name();
        let (y, dy) = (f32_values(op, s1, l1)?, f32_values(op, s2, l2)?);
        let (_, h) = rows_of(l1);
        let dots: Vec<f32> = (y.par_chunks(h).zip(dy.par_chunks(h)))
            .map(|(y, dy)| y.iter().zip(dy).map(|(&y, &d)| f64::from(y * d)).sum::<f64>() as f32)
            .collect();
        let dx = per_row(y.len(), h, |r, dx| {
            let (y, dy) = (&y[r * h..(r + 1) * h], &dy[r * h..(r + 1) * h]);
            for j in 0..h {
                dx[j] = y[j] * (dy[j] - dots[r]);
            }
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        crate::cuda::rows::softmax_grad((s1, l1), (s2, l2))
    }
}
