//! The ViT's dense layers as single autograd nodes: [`linear`] (`x Wᵀ + b`) and [`self_attention`]
//! (multi-head attention from a packed `qkv` tensor).
//!
//! Composed from candle ops, a linear layer is 7 graph nodes (reshapes, a transpose, the matmul, the
//! bias's reshape and broadcast, the add) and the attention 19 (a permute, three slices and copies,
//! a transposed copy, two matmuls, the scale, the softmax, a transpose and a reshape). Candle's
//! backward pass allocates a zero tensor and adds into it for every input of every node, so on a GPU
//! each node costs launches however small its tensors are (the ViT's are 216 tokens of 768 at 96³).
//! Here each is one custom op: its forward pass runs candle's own storage kernels (the same cuBLAS
//! or `gemm` matmuls as `Tensor::matmul`, the same binary add and copies) and this crate's softmax;
//! its backward pass computes the gradients from detached tensors with the same matmuls.

use candle_core::backend::{BackendDevice, BackendStorage};
use candle_core::op::Add;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor, D};

use crate::check::{matching_dtype_device, supported_device};
use crate::KernelsError;

/// `(rows, width)` of a contiguous layout: the last dimension and the product of the others.
fn rows_width(l: &Layout) -> (usize, usize) {
    let w = l.dims().last().copied().unwrap_or(1);
    (l.shape().elem_count() / w.max(1), w)
}

/// Whether the custom ops take `t` (f32 or bf16, on the CPU or a CUDA device with the `cuda` feature).
fn custom(op: &'static str, t: &Tensor) -> bool {
    matches!(t.dtype(), DType::F32 | DType::BF16) && supported_device(op, t.device()).is_ok()
}

/// PyTorch's `F.linear(x, w, b)`: `x (…, k)` times `w (n, k)` transposed, plus `b (n,)`, over the last
/// dimension of `x`; the result is `(…, n)` in `x`'s dtype. `w` must have `x`'s dtype; `b` may be f32
/// or `x`'s dtype, and for bf16/f16 `x` the bias is added in f32 and the sum rounded once (as
/// [`crate::add_bias`]), so that its gradient accumulates in f32. Differentiable in all three.
///
/// f32 and bf16 on the CPU and CUDA run as one custom op (forward: one matmul and one add; backward:
/// two matmuls and a sum); other dtypes as candle ops.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> candle_core::Result<Tensor> {
    let op = "linear";
    let _span = tracing::trace_span!("linear", x = ?x.dims(), w = ?w.dims()).entered();
    let k = x.dim(D::Minus1)?;
    let n = match *w.dims() {
        [n, wk] if wk == k => n,
        _ => {
            return Err(KernelsError::Shape {
                op,
                msg: format!("weight {:?} does not fit an input of shape {:?} (expected (n, {k}))", w.dims(), x.dims()),
            }
            .into())
        }
    };
    matching_dtype_device(op, x, w)?;
    if let Some(b) = b {
        if b.dims() != [n] {
            return Err(
                KernelsError::Shape { op, msg: format!("bias {:?} for a weight {:?}", b.dims(), w.dims()) }.into()
            );
        }
        if !b.device().same_device(x.device()) {
            return Err(KernelsError::Shape { op, msg: "the bias lives on another device".into() }.into());
        }
    }
    if !custom(op, x) || b.is_some_and(|b| !matches!(b.dtype(), DType::F32 | DType::BF16)) {
        let y = x.broadcast_matmul(&w.t()?)?;
        return match b {
            Some(b) => crate::add_bias(&y, b, y.rank() - 1),
            None => Ok(y),
        };
    }
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    match b {
        Some(b) => x.apply_op3(&w, &b.contiguous()?, Linear),
        None => x.apply_op2(&w, Linear),
    }
}

/// The custom op of [`linear`]: `(x, w)` or `(x, w, b)`.
struct Linear;

/// `x (m, k)` times `w (n, k)` transposed, plus `b` broadcast over the rows: the same storage calls
/// as `x.matmul(&w.t())` and `add_bias`.
fn linear_fwd<S: BackendStorage>(
    (x, lx): (&S, &Layout),
    (w, lw): (&S, &Layout),
    b: Option<(&S, &Layout)>,
) -> candle_core::Result<(S, Shape)> {
    let (m, k) = rows_width(lx);
    let n = lw.dims()[0];
    let mut dims = lx.dims().to_vec();
    *dims.last_mut().expect("rank ≥ 1") = n;
    let lhs = Layout::contiguous_with_offset((1, m, k), lx.start_offset());
    let rhs = Layout::contiguous_with_offset((1, n, k), lw.start_offset()).transpose(1, 2)?;
    let y = x.matmul(w, (1, m, n, k), &lhs, &rhs)?;
    let Some((b, lb)) = b else {
        return Ok((y, Shape::from(dims)));
    };
    // The sum runs in f32 for half-precision `y` (rounded once), else in `y`'s dtype.
    let dtype = y.dtype();
    let acc = if matches!(dtype, DType::BF16 | DType::F16) { DType::F32 } else { dtype };
    let ly = Layout::contiguous((m, n));
    let widened = (acc != dtype).then(|| y.to_dtype(&ly, acc)).transpose()?;
    let converted = (b.dtype() != acc).then(|| b.to_dtype(lb, acc)).transpose()?;
    // The bias broadcast over the rows (stride 0).
    let (b, offset) = match &converted {
        Some(c) => (c, 0),
        None => (b, lb.start_offset()),
    };
    let sum = widened.as_ref().unwrap_or(&y).binary_impl::<Add>(
        b,
        &ly,
        &Layout::new(Shape::from((m, n)), vec![0, 1], offset),
    )?;
    let y = if acc == dtype { sum } else { sum.to_dtype(&ly, dtype)? };
    Ok((y, Shape::from(dims)))
}

/// The gradients of [`linear`] from detached tensors: `dx = g w`, `dw = gᵀ x`, `db = Σ_rows g` (in f32).
fn linear_bwd(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    grad: &Tensor,
) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let k = x.dim(D::Minus1)?;
    let n = w.dim(0)?;
    let g = grad.detach().contiguous()?.reshape(((), n))?;
    let dx = x.track_op().then(|| g.matmul(&w.detach())?.reshape(x.shape())).transpose()?;
    let dw = w.track_op().then(|| g.t()?.matmul(&x.detach().reshape(((), k))?)).transpose()?;
    let db = match b {
        Some(b) if b.track_op() => Some(g.to_dtype(DType::F32)?.sum(0)?.to_dtype(b.dtype())?),
        _ => None,
    };
    Ok((dx, dw, db))
}

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        linear_fwd((s1, l1), (s2, l2), None)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        linear_fwd((s1, l1), (s2, l2), None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = linear_bwd(x, w, None, grad)?;
        Ok((dx, dw))
    }
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "linear"
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
        linear_fwd((s1, l1), (s2, l2), Some((s3, l3)))
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
        linear_fwd((s1, l1), (s2, l2), Some((s3, l3)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        linear_bwd(x, w, Some(b), grad)
    }
}

/// MONAI's `SABlock` attention core: `qkv (B, n, 3·h)` holds, per token, the queries, keys and values
/// of `heads` heads (`"b n (qkv l d)"`, `d = h / heads`); returns `softmax(q kᵀ / sqrt(d)) v` per head,
/// heads concatenated, `(B, n, h)` (`"b l n d -> b n (l d)"`), in `qkv`'s dtype. The scores are
/// computed and scaled in that dtype and the softmax runs in f32 (as autocast does). Differentiable.
///
/// f32 and bf16 on the CPU and CUDA run as one custom op (forward: one copy, two matmuls, the
/// scale, the softmax, one copy; the backward pass recomputes the probabilities); other dtypes as
/// candle ops.
pub fn self_attention(qkv: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let op = "self_attention";
    let _span = tracing::trace_span!("self_attention", qkv = ?qkv.dims(), heads).entered();
    let (b, n, h3) = qkv.dims3()?;
    if heads == 0 || h3 % (3 * heads) != 0 || b * n == 0 {
        return Err(KernelsError::Shape {
            op,
            msg: format!("qkv {:?} must be non-empty (B, n, 3·h) with h a multiple of {heads} heads", qkv.dims()),
        }
        .into());
    }
    let a = Attention { heads, dims: (b, n, h3 / 3 / heads) };
    if !custom(op, qkv) {
        let (q, k, v) = a.split(qkv)?;
        let p = a.probabilities(&q, &k, crate::softmax_last)?;
        return a.merge(&p.matmul(&v)?);
    }
    qkv.contiguous()?.apply_op1(a)
}

/// The custom op of [`self_attention`].
#[derive(Debug, Clone, Copy)]
struct Attention {
    heads: usize,
    /// Batch, tokens, head width.
    dims: (usize, usize, usize),
}

impl Attention {
    /// `1 / sqrt(d)`.
    fn scale(&self) -> f64 {
        (self.dims.2 as f64).powf(-0.5)
    }

    /// `(q, k, v)`, each `(B, heads, n, d)` and contiguous, from `qkv (B, n, 3·h)` (one copy).
    fn split(&self, qkv: &Tensor) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let (b, n, d) = self.dims;
        let parts = qkv.reshape((b, n, 3, self.heads, d))?.permute((2, 0, 3, 1, 4))?.contiguous()?;
        Ok((parts.get(0)?, parts.get(1)?, parts.get(2)?))
    }

    /// `softmax(q kᵀ · scale)` in `q`'s dtype, the softmax (`softmax`) in f32.
    fn probabilities(
        &self,
        q: &Tensor,
        k: &Tensor,
        softmax: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<Tensor> {
        let s = (q.matmul(&k.t()?)? * self.scale())?;
        softmax(&s.to_dtype(DType::F32)?)?.to_dtype(q.dtype())
    }

    /// `(B, heads, n, d)` → `(B, n, heads·d)`.
    fn merge(&self, o: &Tensor) -> candle_core::Result<Tensor> {
        let (b, n, d) = self.dims;
        o.transpose(1, 2)?.reshape((b, n, self.heads * d))
    }

    /// The forward pass on storages: the same kernels, in the same order, as [`Self::split`],
    /// [`Self::probabilities`] and [`Self::merge`] on tensors.
    #[allow(unsafe_code)]
    fn forward<S, Dev>(
        &self,
        (s, l): (&S, &Layout),
        softmax: impl Fn(&S, &Layout) -> candle_core::Result<(S, Shape)>,
    ) -> candle_core::Result<(S, Shape)>
    where
        S: BackendStorage<Device = Dev>,
        Dev: BackendDevice<Storage = S>,
    {
        let (b, n, d) = self.dims;
        let (heads, bl) = (self.heads, b * self.heads);
        let dtype = s.dtype();
        let dev = s.device();
        let part = bl * n * d;
        // SAFETY: `copy_strided_src` writes every element of the fresh storage before it is read.
        let mut parts = unsafe { dev.alloc_uninit(&Shape::from(3 * part), dtype)? };
        let src = Layout::contiguous_with_offset((b, n, 3, heads, d), l.start_offset()).permute(&[2, 0, 3, 1, 4])?;
        s.copy_strided_src(&mut parts, 0, &src)?;
        let at = |i: usize| Layout::contiguous_with_offset((bl, n, d), i * part);
        let lnn = Layout::contiguous((bl, n, n));
        let scores = parts.matmul(&parts, (bl, n, n, d), &at(0), &at(1).transpose(1, 2)?)?;
        let scores = scores.affine(&lnn, self.scale(), 0.0)?;
        let p = if dtype == DType::F32 {
            softmax(&scores, &lnn)?.0
        } else {
            softmax(&scores.to_dtype(&lnn, DType::F32)?, &lnn)?.0.to_dtype(&lnn, dtype)?
        };
        let o = p.matmul(&parts, (bl, n, d, n), &lnn, &at(2))?;
        // SAFETY: as above.
        let mut y = unsafe { dev.alloc_uninit(&Shape::from(part), dtype)? };
        o.copy_strided_src(&mut y, 0, &Layout::contiguous((b, heads, n, d)).permute(&[0, 2, 1, 3])?)?;
        Ok((y, Shape::from((b, n, heads * d))))
    }
}

impl CustomOp1 for Attention {
    fn name(&self) -> &'static str {
        "self_attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.forward((s, l), |s, l| crate::rows::Softmax.cpu_fwd(s, l))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        self.forward((s, l), |s, l| crate::cuda::rows::softmax((s, l)))
    }

    /// With `s = q kᵀ·c` and `p = softmax(s)` recomputed: `dv = pᵀ g`, `dp = g vᵀ`,
    /// `ds = p·(dp − Σ dp·p)` (in f32), `dq = ds k·c`, `dk = dsᵀ q·c`, packed back as `qkv`.
    fn bwd(&self, qkv: &Tensor, _: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (b, n, d) = self.dims;
        let (q, k, v) = self.split(&qkv.detach())?;
        let dtype = q.dtype();
        let p32 = self.probabilities(&q, &k, |s| s.apply_op1_no_bwd(&crate::rows::Softmax))?.to_dtype(DType::F32)?;
        let p = p32.to_dtype(dtype)?;
        let g = grad.detach().reshape((b, n, self.heads, d))?.transpose(1, 2)?.contiguous()?;
        let dv = p.t()?.matmul(&g)?;
        let dp = g.matmul(&v.t()?)?.to_dtype(DType::F32)?;
        let ds = p32.apply_op2_no_bwd(&dp, &crate::rows::SoftmaxGrad)?.to_dtype(dtype)?;
        let ds = (ds * self.scale())?;
        let dq = ds.matmul(&k)?;
        let dk = ds.t()?.matmul(&q)?;
        let packed = Tensor::stack(&[dq, dk, dv], 0)?.permute((1, 3, 0, 2, 4))?.contiguous()?;
        Ok(Some(packed.reshape((b, n, 3 * self.heads * d))?))
    }
}
