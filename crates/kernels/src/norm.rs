//! `instance_norm`: for f32 and bf16 tensors custom ops end to end (statistics, the normalisation with the
//! affine part, and the backward pass's sums and input gradient: 2 + 1 launches forward, 3 + ~4 small
//! ones backward on a GPU); other dtypes compose the statistics from candle ops and write out only the
//! normalisation's backward.

use std::borrow::Cow;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Shape, Storage, Tensor};
use rayon::prelude::*;

use crate::activation::Act;
#[cfg(feature = "cuda")]
use crate::check::with_cuda_storages;
use crate::check::{check_channel_vec, f32_values, with_cpu_values};
use crate::KernelsError;

/// Instance normalisation: each (n, c) slice of `x (N, C, …)` (rank ≥ 3, e.g. `(N, C, D, H, W)`)
/// is normalised over its spatial elements with the biased variance,
/// `(x − mean) / sqrt(var + eps)`, then scaled by `gamma (C,)` and shifted by `beta (C,)` when
/// given (PyTorch's `InstanceNorm3d`, `affine` when gamma/beta are present, no running stats).
///
/// f32 and bf16 tensors (with f32 or no gamma/beta; a bf16 `x` may also take bf16 ones) on the CPU
/// or a CUDA device run as custom ops: per-(n, c) mean and `1/sqrt(var + eps)` (two-pass within runs
/// of values, runs combined in f64), the normalisation with gamma and beta in one pass, and backward
/// the sums `Σ dy`, `Σ dy·x̂` per (n, c) and the input gradient `γ·rstd·(dy − mean dy −
/// x̂·mean(dy·x̂))` in one pass. A bf16 `x` is read as f32 (exactly), everything is computed in f32
/// and the output and input gradient are rounded to bf16 once: the values and gradients of widening
/// `x` to f32, normalising and rounding the result, without the two conversions' passes and graph
/// nodes; `gamma` and `beta` keep their f32 gradients. Other dtypes build the statistics from candle
/// ops with the normalisation's gradient written out in [`Normalized`]'s backward pass.
/// Differentiable in `x`, `gamma` and `beta`.
pub fn instance_norm(
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    eps: f64,
) -> candle_core::Result<Tensor> {
    normalize(x, gamma, beta, eps, None)
}

/// [`instance_norm`] followed by [`crate::leaky_relu`] with `slope`, as one op: where the instance
/// norm runs as custom ops (f32 and bf16), the activation is applied in the normalisation's pass
/// and its derivative in the backward pass's (the normalised value recomputed from `x`), so the
/// pair costs what the norm alone does. The values and gradients are those of the two ops in f32
/// (bit for bit on the CPU); in bf16 the output is rounded once, after the activation, as if the
/// pair ran in f32 on the widened input.
pub fn instance_norm_leaky_relu(
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    eps: f64,
    slope: f64,
) -> candle_core::Result<Tensor> {
    if !slope.is_finite() {
        return Err(KernelsError::Config {
            op: "instance_norm",
            msg: format!("the slope must be finite, got {slope}"),
        }
        .into());
    }
    normalize(x, gamma, beta, eps, Some(slope))
}

/// The instance norm, followed by a leaky ReLU of `slope` when given.
fn normalize(
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    eps: f64,
    slope: Option<f64>,
) -> candle_core::Result<Tensor> {
    let op = "instance_norm";
    let _span = tracing::debug_span!("instance_norm", x = ?x.dims(), eps, ?slope).entered();
    let dims = x.dims();
    if dims.len() < 3 {
        return Err(KernelsError::Rank {
            op,
            what: "input",
            expected: "at least 3 (N, C, spatial…)",
            shape: dims.to_vec(),
        }
        .into());
    }
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(KernelsError::Config { op, msg: format!("eps must be finite and non-negative, got {eps}") }.into());
    }
    if !x.dtype().is_float() {
        return Err(KernelsError::Dtype {
            op,
            dtype: x.dtype().as_str().to_string(),
            supported: "f32, f64, bf16, f16",
        }
        .into());
    }
    let (n, c) = (dims[0], dims[1]);
    let spatial: usize = dims[2..].iter().product();
    if spatial == 0 {
        return Err(
            KernelsError::Shape { op, msg: format!("no spatial elements to normalise over in {dims:?}") }.into()
        );
    }
    // An empty batch or channel axis is refused on every device alike (the CUDA launch needs a slice).
    if n * c == 0 {
        return Err(
            KernelsError::Shape { op, msg: format!("no (sample, channel) slices to normalise in {dims:?}") }.into()
        );
    }
    // A bf16 input takes f32 gamma and beta (the model's parameters), as its statistics are f32.
    let mixed = |v: &Tensor| x.dtype() == DType::BF16 && v.dtype() == DType::F32;
    for (what, v) in [("gamma", gamma), ("beta", beta)] {
        if let Some(v) = v {
            check_channel_vec(op, what, v, c, if mixed(v) { v } else { x }, false)?;
            if !v.device().same_device(x.device()) {
                return Err(KernelsError::Shape { op, msg: format!("{what} lives on another device") }.into());
            }
        }
    }
    let custom = matches!(x.dtype(), DType::F32 | DType::BF16)
        && [gamma, beta].into_iter().flatten().all(|t| t.dtype() == DType::F32);
    if custom && crate::check::supported_device(op, x.device()).is_ok() {
        // The ops read `x` as contiguous `(n, c, spatial)` whatever its rank: no reshape nodes, whose
        // gradients autograd would accumulate (a zero tensor and an add each) at the input's size.
        let xs = x.contiguous()?;
        let stats = xs.detach().apply_op1_no_bwd(&InstanceStats { eps: eps as f32 })?;
        let gamma = match gamma {
            Some(g) => g.contiguous()?,
            None => Tensor::ones(c, DType::F32, x.device())?,
        };
        let beta = match beta {
            Some(b) => b.contiguous()?,
            None => Tensor::zeros(c, DType::F32, x.device())?,
        };
        let slope = slope.map_or(1.0, |s| s as f32);
        return xs.apply_op3(&gamma, &beta, InstanceNorm { stats, slope });
    }
    // The statistics are sums over `spatial` values per (n, c): split into (rows, cols) and summed
    // in two stages, and broadcast back in two stages, so that candle's CUDA reductions (one thread
    // block per output value) get n·c·rows blocks — in autograd's backward of the broadcasts too,
    // which sums the gradient over the broadcast dimensions (crate::reduce).
    let rows = crate::reduce::split_rows(spatial);
    let shape = [n, c, rows, spatial / rows];
    let xs = x.reshape(shape.as_slice())?;
    let xd = xs.detach();
    let mean = stat(&xd)?;
    let xc = (&xd - spread(&mean, shape)?)?;
    let scale = (stat(&xc.sqr()?)? + eps)?.sqrt()?.recip()?;
    let xhat = (xc * spread(&scale, shape)?)?;
    let mut y = xs.apply_op1(Normalized { xhat, scale })?;
    if let Some(g) = gamma {
        y = (y * spread(&g.reshape((1, c, 1, 1))?, shape)?)?;
    }
    if let Some(b) = beta {
        y = (y + spread(&b.reshape((1, c, 1, 1))?, shape)?)?;
    }
    let y = y.reshape(dims)?;
    match slope {
        Some(slope) => crate::leaky_relu(&y, slope),
        None => Ok(y),
    }
}

/// The mean over dimensions 2 and 3 of `t (n, c, rows, cols)`, kept: `(n, c, 1, 1)`.
fn stat(t: &Tensor) -> candle_core::Result<Tensor> {
    let (_, _, rows, cols) = t.dims4()?;
    t.sum_keepdim(3)?.sum_keepdim(2)?.affine(1.0 / (rows * cols) as f64, 0.0)
}

/// `t` (`(n, c, 1, 1)` or `(1, c, 1, 1)`) broadcast to `shape` through `(n, c, rows, 1)`.
fn spread(t: &Tensor, shape: [usize; 4]) -> candle_core::Result<Tensor> {
    let [n, c, rows, _] = shape;
    t.broadcast_as((n, c, rows, 1))?.broadcast_as(shape.as_slice())
}

/// `x ↦ x̂ = (x − mean)·scale` per (n, c) of `x (n, c, rows, cols)`, with `x̂` and `scale` computed
/// beforehand (detached); the forward pass hands out a copy of `x̂`, the backward pass is
/// `dx = scale · (g − mean g − x̂ · mean(g·x̂))`.
struct Normalized {
    xhat: Tensor,
    scale: Tensor,
}

impl Normalized {
    /// A copy of `x̂`'s storage (a fresh tensor: its storage is exactly its elements).
    fn copy<S>(&self, pick: impl Fn(&Storage) -> Option<&S>) -> candle_core::Result<(S, Shape)>
    where
        S: BackendStorage,
    {
        let (storage, layout) = self.xhat.storage_and_layout();
        match pick(&storage) {
            Some(s) => Ok((s.try_clone(layout)?, self.xhat.shape().clone())),
            None => candle_core::bail!("instance_norm: x̂ is not on the input's device"),
        }
    }
}

impl CustomOp1 for Normalized {
    fn name(&self) -> &'static str {
        "instance_norm"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.copy(|s| match s {
            Storage::Cpu(s) => Some(s),
            _ => None,
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        self.copy(|s| match s {
            Storage::Cuda(s) => Some(s),
            _ => None,
        })
    }

    fn bwd(&self, _: &Tensor, _: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let shape: [usize; 4] = self.xhat.dims4()?.into();
        let g = grad.detach();
        let mean_g = stat(&g)?;
        let mean_gx = stat(&(&g * &self.xhat)?)?;
        let centred = ((g - spread(&mean_g, shape)?)? - (&self.xhat * spread(&mean_gx, shape)?)?)?;
        Ok(Some((centred * spread(&self.scale, shape)?)?))
    }
}

/// Elements per rayon work item of the CPU passes.
const CPU_RUN: usize = 1 << 14;

/// An output of `n` values in slices of `s`, written in runs of at most [`CPU_RUN`] values in
/// parallel by `f(slice, offset in the slice, out_run)`.
fn per_slice(n: usize, s: usize, f: impl Fn(usize, usize, &mut [f32]) + Sync + Send) -> Vec<f32> {
    let mut out = vec![0f32; n];
    out.par_chunks_mut(s).enumerate().for_each(|(i, o)| {
        o.par_chunks_mut(CPU_RUN).enumerate().for_each(|(k, run)| f(i, k * CPU_RUN, run));
    });
    out
}

/// Σ f(v) over `v`: f32 sums in 8 lanes over runs of 1024 values (vectorised), the runs added in
/// f64.
fn lane_sum(v: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    v.chunks(1024)
        .map(|run| {
            let mut acc = [0f32; 8];
            let mut it = run.chunks_exact(8);
            for c in &mut it {
                for k in 0..8 {
                    acc[k] += f(c[k]);
                }
            }
            let tail: f32 = it.remainder().iter().map(|&v| f(v)).sum();
            f64::from(acc.iter().sum::<f32>() + tail)
        })
        .sum()
}

/// The f32 values of a contiguous f32 or bf16 CPU operand (bf16 widened, exactly, into a copy).
fn widened<'a>(op: &'static str, st: &'a CpuStorage, l: &Layout) -> candle_core::Result<Cow<'a, [f32]>> {
    if st.dtype() != DType::BF16 {
        return Ok(Cow::Borrowed(f32_values(op, st, l)?));
    }
    match st.to_dtype(l, DType::F32)? {
        CpuStorage::F32(v) => Ok(Cow::Owned(v)),
        other => Err(KernelsError::Dtype { op, dtype: other.dtype().as_str().into(), supported: "f32" }.into()),
    }
}

/// `v` as a CPU storage of `dtype`: f32 as is, bf16 rounded to nearest even.
fn rounded(v: Vec<f32>, dtype: DType) -> candle_core::Result<CpuStorage> {
    let n = v.len();
    let st = CpuStorage::F32(v);
    if dtype == DType::F32 {
        return Ok(st);
    }
    st.to_dtype(&Layout::contiguous(n), dtype)
}

/// `x` and `dy` have one dtype.
fn same_activation_dtype(op: &'static str, x: &CpuStorage, dy: &CpuStorage) -> Result<(), KernelsError> {
    if x.dtype() == dy.dtype() {
        return Ok(());
    }
    Err(KernelsError::DtypeMismatch { op, lhs: x.dtype().as_str().into(), rhs: dy.dtype().as_str().into() })
}

/// `(Σ dz, Σ dz·x̂)` over pairs of `x` and `dy`, `dz = dz(x, dy)`, each summed as [`lane_sum`] does
/// (8 f32 lanes over runs of 1024 values, the runs added in f64), both in one pass with no `dz` buffer.
fn lane_sums_dz(x: &[f32], dy: &[f32], dz: impl Fn(f32, f32) -> f32, xhat: impl Fn(f32) -> f32) -> (f64, f64) {
    let runs: Vec<(f64, f64)> = x
        .chunks(1024)
        .zip(dy.chunks(1024))
        .map(|(rx, rd)| {
            let (mut a, mut b) = ([0f32; 8], [0f32; 8]);
            let (mut ix, mut id) = (rx.chunks_exact(8), rd.chunks_exact(8));
            for (cx, cd) in (&mut ix).zip(&mut id) {
                for k in 0..8 {
                    let d = dz(cx[k], cd[k]);
                    a[k] += d;
                    b[k] += d * xhat(cx[k]);
                }
            }
            let tail = || ix.remainder().iter().zip(id.remainder()).map(|(&x, &d)| (x, dz(x, d)));
            let ta: f32 = tail().map(|(_, d)| d).sum();
            let tb: f32 = tail().map(|(x, d)| d * xhat(x)).sum();
            (f64::from(a.iter().sum::<f32>() + ta), f64::from(b.iter().sum::<f32>() + tb))
        })
        .collect();
    (runs.iter().map(|r| r.0).sum(), runs.iter().map(|r| r.1).sum())
}

/// The `(n, c, s)` sizes of a contiguous `(n, c, spatial…)` layout (rank ≥ 3), `s` the product of
/// the spatial sizes.
fn ncs(op: &'static str, l: &Layout) -> Result<(usize, usize, usize), KernelsError> {
    match *l.dims() {
        [n, c, ref spatial @ ..] if !spatial.is_empty() && l.is_contiguous() => Ok((n, c, spatial.iter().product())),
        _ => Err(KernelsError::Layout {
            op,
            msg: format!("expected a contiguous (n, c, spatial…) operand, got {:?}", l.dims()),
        }),
    }
}

/// `(n, c, s)` → `(n·c, 2)`: mean and `1/sqrt(var + eps)` of each (n, c) slice.
struct InstanceStats {
    eps: f32,
}

impl CustomOp1 for InstanceStats {
    fn name(&self) -> &'static str {
        "instance_norm_stats"
    }

    fn cpu_fwd(&self, st: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = self.name();
        let (n, c, s) = ncs(op, l)?;
        let x = widened(op, st, l)?;
        let mut out = vec![0f32; 2 * n * c];
        out.par_chunks_mut(2).zip(x.par_chunks(s)).for_each(|(o, v)| {
            let mean = lane_sum(v, |v| v) / s as f64;
            let m = mean as f32;
            let var = lane_sum(v, |v| (v - m) * (v - m)) / s as f64;
            o[0] = mean as f32;
            o[1] = (1.0 / (var + f64::from(self.eps)).sqrt()) as f32;
        });
        Ok((CpuStorage::F32(out), Shape::from((n * c, 2))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        st: &candle_core::CudaStorage,
        l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        let (n, c, s) = ncs(self.name(), l)?;
        crate::cuda::norm::stats(self.eps, (st, l), n * c, s)
    }
}

/// `y = act((x − mean)·rstd·γ + β)` of `(x (n, c, s), γ (c,), β (c,))`, `act(z) = z > 0 ? z : z·slope`
/// (the identity for slope 1: `z·1 = z` exactly).
struct InstanceNorm {
    stats: Tensor,
    slope: f32,
}

impl CustomOp3 for InstanceNorm {
    fn name(&self) -> &'static str {
        "instance_norm"
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
        let (_, c, s) = ncs(op, l1)?;
        let (x, g, b) = (widened(op, s1, l1)?, f32_values(op, s2, l2)?, f32_values(op, s3, l3)?);
        with_cpu_values(op, &self.stats, |st| {
            let act = Act::Leaky(self.slope);
            let y = per_slice(x.len(), s, |i, j0, y| {
                let (mean, rstd, g, b) = (st[2 * i], st[2 * i + 1], g[i % c], b[i % c]);
                for (y, &x) in y.iter_mut().zip(&x[i * s + j0..]) {
                    *y = act.value((x - mean) * rstd * g + b);
                }
            });
            Ok((rounded(y, s1.dtype())?, l1.shape().clone()))
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
        let (n, c, s) = ncs(self.name(), l1)?;
        with_cuda_storages(self.name(), [&self.stats], |[st]| {
            crate::cuda::norm::forward((s1, l1), st, (s2, l2), (s3, l3), (n, c, s), self.slope)
        })
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, c) = (x.dim(0)?, x.dim(1)?);
        let dy = grad.contiguous()?;
        // The activation's derivative needs z = x̂·γ + β; the kernels recompute it from x.
        let affine = Tensor::stack(&[gamma.detach(), beta.detach()], 0)?;
        let act = Recompute { stats: self.stats.clone(), affine, slope: self.slope };
        let sums = x.apply_op2_no_bwd(&dy, &GradSums { act: act.clone() })?;
        let dx = x.apply_op2_no_bwd(&dy, &GradInput { act, sums: sums.clone() })?;
        let per_channel = |col: usize| sums.narrow(1, col, 1)?.reshape((n, c))?.sum(0);
        Ok((Some(dx), Some(per_channel(1)?), Some(per_channel(0)?)))
    }
}

/// What the backward passes need to recompute the activation's derivative: the statistics, `γ` and `β`
/// stacked as `(2, c)` (f32) and the slope (1: none).
#[derive(Clone)]
struct Recompute {
    stats: Tensor,
    affine: Tensor,
    slope: f32,
}

/// `(x, dy)` → `(n·c, 2)`: `Σ dz` and `Σ dz·x̂` of each (n, c) slice, `dz = z > 0 ? dy : dy·slope`
/// the gradient before the activation.
struct GradSums {
    act: Recompute,
}

impl CustomOp2 for GradSums {
    fn name(&self) -> &'static str {
        "instance_norm_grad_sums"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = self.name();
        let (n, c, s) = ncs(op, l1)?;
        same_activation_dtype(op, s1, s2)?;
        let (x, dy) = (widened(op, s1, l1)?, widened(op, s2, l2)?);
        let slope = self.act.slope;
        with_cpu_values(op, &self.act.stats, |st| {
            with_cpu_values(op, &self.act.affine, |gb| {
                let mut out = vec![0f32; 2 * n * c];
                out.par_chunks_mut(2).zip(x.par_chunks(s).zip(dy.par_chunks(s))).enumerate().for_each(
                    |(i, (o, (x, dy)))| {
                        let (mean, rstd, g, b) = (st[2 * i], st[2 * i + 1], gb[i % c], gb[c + i % c]);
                        let xhat = |x: f32| (x - mean) * rstd;
                        // Slope 1 (a plain norm) needs no recomputed z: dz = dy.
                        let (a, b) = if slope == 1.0 {
                            lane_sums_dz(x, dy, |_, d| d, xhat)
                        } else {
                            lane_sums_dz(x, dy, |x, d| Act::Leaky(slope).grad(xhat(x) * g + b, d), xhat)
                        };
                        (o[0], o[1]) = (a as f32, b as f32);
                    },
                );
                Ok((CpuStorage::F32(out), Shape::from((n * c, 2))))
            })
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
        let (n, c, s) = ncs(self.name(), l1)?;
        with_cuda_storages(self.name(), [&self.act.stats, &self.act.affine], |[st, gb]| {
            crate::cuda::norm::grad_sums((s1, l1), (s2, l2), st, gb, (n, c, s), self.act.slope)
        })
    }
}

/// `(x, dy)` → `dx = γ·rstd·(dz − Σdz/s − x̂·Σ(dz·x̂)/s)` per (n, c) slice, `dz` as in [`GradSums`]
/// (γ from the stacked affine parameters).
struct GradInput {
    act: Recompute,
    sums: Tensor,
}

impl CustomOp2 for GradInput {
    fn name(&self) -> &'static str {
        "instance_norm_grad_input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = self.name();
        let (_, c, s) = ncs(op, l1)?;
        same_activation_dtype(op, s1, s2)?;
        let (x, dy) = (widened(op, s1, l1)?, widened(op, s2, l2)?);
        let act = Act::Leaky(self.act.slope);
        with_cpu_values(op, &self.act.stats, |st| {
            with_cpu_values(op, &self.act.affine, |gb| {
                with_cpu_values(op, &self.sums, |sums| {
                    let dx = per_slice(x.len(), s, |i, j0, dx| {
                        let (mean, rstd) = (st[2 * i], st[2 * i + 1]);
                        let (ma, mb) = (sums[2 * i] / s as f32, sums[2 * i + 1] / s as f32);
                        let (ga, ba) = (gb[i % c], gb[c + i % c]);
                        let k = ga * rstd;
                        let (x, dy) = (&x[i * s + j0..], &dy[i * s + j0..]);
                        for j in 0..dx.len() {
                            // z = x̂·γ + β as in the forward pass; slope 1 leaves dy as it is (d·1 = d).
                            let xhat = (x[j] - mean) * rstd;
                            let dz = act.grad(xhat * ga + ba, dy[j]);
                            dx[j] = k * (dz - ma - xhat * mb);
                        }
                    });
                    Ok((rounded(dx, s1.dtype())?, l1.shape().clone()))
                })
            })
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
        let (n, c, s) = ncs(self.name(), l1)?;
        with_cuda_storages(self.name(), [&self.act.stats, &self.act.affine, &self.sums], |[st, gb, sums]| {
            crate::cuda::norm::grad_input((s1, l1), (s2, l2), st, gb, sums, (n, c, s), self.act.slope)
        })
    }
}
