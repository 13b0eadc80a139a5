//! Adam / AdamW as fused in-place passes over f32 tensors: a clamped sum of squares (for the global
//! gradient norm), the moment update, and the parameter update: three launches per parameter where
//! the same update composed from candle ops takes about twenty (each a kernel launch, an allocation
//! and a pass over the tensor).
//!
//! The arithmetic is that of PyTorch's `torch.optim.Adam` / `AdamW` (the single-tensor, foreach-free
//! form), in f32, one rounding per operation in a fixed order; the CUDA kernels (`src/cuda/optim.cu`)
//! use round-to-nearest intrinsics (no fused multiply-adds), so the moment and parameter updates are
//! the same bit for bit on the CPU and the GPU. Only the sums of squares differ in rounding order.
//!
//! These functions write into tensors in place: the caller must own them (candle `Var`s or tensors
//! no one else holds), and they need no gradient (these passes are not differentiable).

use candle_core::{CpuStorage, DType, InplaceOp2, InplaceOp3, Layout, Tensor};
use rayon::prelude::*;

use crate::KernelsError;

/// Values one partial sum of [`square_sums_into`] covers (`SQ_CHUNK` in optim.cu).
pub const SQUARE_SUM_CHUNK: usize = 8192;

/// Partial sums [`square_sums_into`] writes for a tensor of `len` elements.
pub fn square_sum_count(len: usize) -> usize {
    len.div_ceil(SQUARE_SUM_CHUNK)
}

/// Writes the sums of squares of `g`'s values, clamped to `[−clip, clip]` when `clip` is given, over
/// consecutive runs of [`SQUARE_SUM_CHUNK`] values, into `partials[offset..offset + square_sum_count(n)]`.
/// A NaN stays NaN (a clamp does not hide it). `g` and `partials` are f32, `partials` 1-d and
/// contiguous, `g` contiguous.
pub fn square_sums_into(partials: &Tensor, offset: usize, g: &Tensor, clip: Option<f32>) -> candle_core::Result<()> {
    let op = "square_sums";
    check_f32(op, &[("partials", partials), ("gradient", g)])?;
    if partials.rank() != 1 || offset + square_sum_count(g.elem_count()) > partials.elem_count() {
        return Err(KernelsError::Shape {
            op,
            msg: format!(
                "{} partial sums from offset {offset} do not fit in partials of shape {:?}",
                square_sum_count(g.elem_count()),
                partials.dims()
            ),
        }
        .into());
    }
    partials.inplace_op2(g, &SquareSums { clip: clip_arg(op, clip)?, offset })
}

/// One Adam step's settings for [`adam_moments`] and [`adam_apply`], as f32 constants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    /// Clamp every gradient value to `[−clip, clip]` first (`None`: no clamp).
    pub clip: Option<f32>,
    /// Multiply the (clamped) gradient by this (global-norm clipping; 1 when none).
    pub grad_scale: f32,
    /// Adam's L2 weight decay: `g ← g + l2 · p` (0 for AdamW).
    pub l2: f32,
    /// β₁, and `1 − β₁` as computed in f64 and rounded.
    pub b1: [f32; 2],
    /// β₂, and `1 − β₂` as computed in f64 and rounded.
    pub b2: [f32; 2],
    /// AdamW's decoupled decay factor `1 − lr · weight_decay` (1 for Adam).
    pub decay: f32,
    /// `1 / sqrt(1 − β₂ᵗ)`.
    pub inv_sqrt_bc2: f32,
    /// ε, added to the denominator.
    pub eps: f32,
    /// `lr / (1 − β₁ᵗ)`.
    pub step_size: f32,
}

/// Updates the moments in `state` (f32 `(k, n)`: rows m, v, and with `k = 3` AMSGrad's running
/// maximum of v) from the gradient `g` and (for Adam's L2 decay) the parameter `p`, both f32 with `n`
/// elements:
///
/// `g′ = clamp(g)·grad_scale + l2·p`, `m ← β₁m + (1−β₁)g′`, `v ← β₂v + (1−β₂)g′²`, `vmax ← max(vmax, v)`.
pub fn adam_moments(state: &Tensor, g: &Tensor, p: &Tensor, s: &AdamStep) -> candle_core::Result<()> {
    let op = "adam_moments";
    check_f32(op, &[("state", state), ("gradient", g), ("parameter", p)])?;
    check_state(op, state, g.elem_count())?;
    if p.elem_count() != g.elem_count() {
        return Err(KernelsError::Shape {
            op,
            msg: format!("gradient of shape {:?} for a parameter of shape {:?}", g.dims(), p.dims()),
        }
        .into());
    }
    clip_arg(op, s.clip)?;
    state.inplace_op3(g, p, &AdamMoments(*s))
}

/// Updates the parameter `p` (f32, `n` elements) from the moments in `state` (f32 `(k, n)`, after
/// [`adam_moments`]): `p ← p·decay − step_size · m / (sqrt(v̂)·inv_sqrt_bc2 + ε)`, with `v̂` the last
/// row of `state` (v, or AMSGrad's maximum).
pub fn adam_apply(p: &Tensor, state: &Tensor, s: &AdamStep) -> candle_core::Result<()> {
    let op = "adam_apply";
    check_f32(op, &[("parameter", p), ("state", state)])?;
    check_state(op, state, p.elem_count())?;
    p.inplace_op2(state, &AdamApply(*s))
}

/// Every tensor is f32 and on a device with kernels.
fn check_f32(op: &'static str, ts: &[(&'static str, &Tensor)]) -> Result<(), KernelsError> {
    for (_, t) in ts {
        if t.dtype() != DType::F32 {
            return Err(KernelsError::Dtype { op, dtype: t.dtype().as_str().to_string(), supported: "f32" });
        }
        crate::check::supported_device(op, t.device())?;
    }
    Ok(())
}

/// `state` is `(2 or 3, n)`.
fn check_state(op: &'static str, state: &Tensor, n: usize) -> Result<(), KernelsError> {
    match *state.dims() {
        [2 | 3, len] if len == n => Ok(()),
        _ => Err(KernelsError::Shape {
            op,
            msg: format!("optimiser state must have shape (2 or 3, {n}), got {:?}", state.dims()),
        }),
    }
}

/// The clamp bound as the kernels take it (`0`: none), or an error for a bound that is not positive.
fn clip_arg(op: &'static str, clip: Option<f32>) -> Result<f32, KernelsError> {
    match clip {
        None => Ok(0.0),
        Some(c) if c.is_finite() && c > 0.0 => Ok(c),
        Some(c) => Err(KernelsError::Config { op, msg: format!("the clamp bound must be positive, got {c}") }),
    }
}

/// `clamp(v, −clip, clip)` for `clip > 0` (NaN stays NaN), `v` for `clip == 0`.
#[inline]
fn clamp_grad(v: f32, clip: f32) -> f32 {
    if clip > 0.0 && !v.is_nan() {
        v.clamp(-clip, clip)
    } else {
        v
    }
}

/// The f32 values of a contiguous CPU storage, from its layout's offset.
fn cpu_slice<'a>(op: &'static str, s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32], KernelsError> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => Err(KernelsError::Layout { op, msg: "expected a contiguous f32 operand".into() }),
    }
}

/// The f32 values of a contiguous CPU storage, mutable.
fn cpu_slice_mut<'a>(op: &'static str, s: &'a mut CpuStorage, l: &Layout) -> Result<&'a mut [f32], KernelsError> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&mut v[a..b]),
        _ => Err(KernelsError::Layout { op, msg: "expected a contiguous f32 operand".into() }),
    }
}

/// Elements per rayon work item of the CPU passes.
const CPU_RUN: usize = 1 << 14;

/// [`square_sums_into`] as an in-place op on `partials`.
pub(crate) struct SquareSums {
    /// Clamp bound, 0 for none.
    pub(crate) clip: f32,
    /// First partial sum written.
    pub(crate) offset: usize,
}

impl InplaceOp2 for SquareSums {
    fn name(&self) -> &'static str {
        "square_sums"
    }

    fn cpu_fwd(&self, dst: &mut CpuStorage, dl: &Layout, g: &CpuStorage, gl: &Layout) -> candle_core::Result<()> {
        let g = cpu_slice(self.name(), g, gl)?;
        let out = &mut cpu_slice_mut(self.name(), dst, dl)?[self.offset..self.offset + square_sum_count(g.len())];
        let clip = self.clip;
        out.par_iter_mut().zip(g.par_chunks(SQUARE_SUM_CHUNK)).for_each(|(o, c)| {
            *o = c.iter().map(|&v| f64::from(clamp_grad(v, clip)).powi(2)).sum::<f64>() as f32;
        });
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        dst: &mut candle_core::CudaStorage,
        dl: &Layout,
        g: &candle_core::CudaStorage,
        gl: &Layout,
    ) -> candle_core::Result<()> {
        crate::cuda::optim::square_sums(self, (dst, dl), (g, gl))
    }
}

/// [`adam_moments`] as an in-place op on the state.
pub(crate) struct AdamMoments(pub(crate) AdamStep);

impl InplaceOp3 for AdamMoments {
    fn name(&self) -> &'static str {
        "adam_moments"
    }

    fn cpu_fwd(
        &self,
        st: &mut CpuStorage,
        stl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
        p: &CpuStorage,
        pl: &Layout,
    ) -> candle_core::Result<()> {
        let op = self.name();
        let (g, p) = (cpu_slice(op, g, gl)?, cpu_slice(op, p, pl)?);
        let n = g.len();
        let st = cpu_slice_mut(op, st, stl)?;
        let (m, rest) = st.split_at_mut(n);
        let (v, vmax) = rest.split_at_mut(n);
        let s = self.0;
        let clip = clip_arg(op, s.clip)?;
        let runs = m.par_chunks_mut(CPU_RUN).zip(v.par_chunks_mut(CPU_RUN)).zip(g.par_chunks(CPU_RUN));
        let runs = runs.zip(p.par_chunks(CPU_RUN));
        if vmax.is_empty() {
            runs.for_each(|(((m, v), g), p)| moments_run(&s, clip, [m, v], None, g, p));
        } else {
            runs.zip(vmax.par_chunks_mut(CPU_RUN))
                .for_each(|((((m, v), g), p), vm)| moments_run(&s, clip, [m, v], Some(vm), g, p));
        }
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        st: &mut candle_core::CudaStorage,
        stl: &Layout,
        g: &candle_core::CudaStorage,
        gl: &Layout,
        p: &candle_core::CudaStorage,
        pl: &Layout,
    ) -> candle_core::Result<()> {
        crate::cuda::optim::adam_moments(&self.0, clip_arg(self.name(), self.0.clip)?, (st, stl), (g, gl), (p, pl))
    }
}

/// The moment update of one run of values (see [`adam_moments`]; `clip` 0 for none).
fn moments_run(s: &AdamStep, clip: f32, [m, v]: [&mut [f32]; 2], mut vmax: Option<&mut [f32]>, g: &[f32], p: &[f32]) {
    for i in 0..m.len() {
        let mut gi = clamp_grad(g[i], clip) * s.grad_scale;
        if s.l2 != 0.0 {
            gi += p[i] * s.l2;
        }
        m[i] = m[i] * s.b1[0] + gi * s.b1[1];
        v[i] = v[i] * s.b2[0] + (gi * gi) * s.b2[1];
        if let Some(vm) = vmax.as_deref_mut() {
            vm[i] = if vm[i] < v[i] { v[i] } else { vm[i] };
        }
    }
}

/// [`adam_apply`] as an in-place op on the parameter.
pub(crate) struct AdamApply(pub(crate) AdamStep);

impl InplaceOp2 for AdamApply {
    fn name(&self) -> &'static str {
        "adam_apply"
    }

    fn cpu_fwd(&self, p: &mut CpuStorage, pl: &Layout, st: &CpuStorage, stl: &Layout) -> candle_core::Result<()> {
        let op = self.name();
        let p = cpu_slice_mut(op, p, pl)?;
        let st = cpu_slice(op, st, stl)?;
        let n = p.len();
        let (m, second) = (&st[..n], &st[st.len() - n..]);
        let s = self.0;
        p.par_chunks_mut(CPU_RUN).zip(m.par_chunks(CPU_RUN)).zip(second.par_chunks(CPU_RUN)).for_each(|((p, m), v)| {
            for i in 0..p.len() {
                let denom = v[i].sqrt() * s.inv_sqrt_bc2 + s.eps;
                p[i] = p[i] * s.decay - (m[i] * s.step_size) / denom;
            }
        });
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        p: &mut candle_core::CudaStorage,
        pl: &Layout,
        st: &candle_core::CudaStorage,
        stl: &Layout,
    ) -> candle_core::Result<()> {
        crate::cuda::optim::adam_apply(&self.0, (p, pl), (st, stl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn t(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    #[test]
    fn square_sums_clamp_and_keep_nan() {
        let n = SQUARE_SUM_CHUNK + 3;
        let g: Vec<f32> = (0..n).map(|i| if i % 2 == 0 { 3.0 } else { -0.5 }).collect();
        let partials = Var::zeros(4, DType::F32, &Device::Cpu).unwrap();
        square_sums_into(&partials, 1, &t(&g), Some(1.0)).unwrap();
        // Chunk 0: 4096 values clamped to 1 and 4096 of 0.25; chunk 1: 3 values (1, 0.25, 1).
        assert_eq!(partials.to_vec1::<f32>().unwrap(), vec![0.0, 4096.0 + 1024.0, 2.25, 0.0]);
        square_sums_into(&partials, 0, &t(&[f32::NAN, 1.0]), Some(1.0)).unwrap();
        assert!(partials.to_vec1::<f32>().unwrap()[0].is_nan());
        assert!(square_sums_into(&partials, 3, &t(&g), None).is_err(), "two partials past the end");
        assert!(square_sums_into(&partials, 0, &t(&g), Some(0.0)).is_err());
    }

    #[test]
    fn shapes_and_dtypes_are_checked() {
        let st = Var::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        let s = AdamStep {
            clip: None,
            grad_scale: 1.0,
            l2: 0.0,
            b1: [0.9, 0.1],
            b2: [0.999, 0.001],
            decay: 1.0,
            inv_sqrt_bc2: 1.0,
            eps: 1e-8,
            step_size: 0.1,
        };
        assert!(adam_moments(&st, &t(&[1.0, 2.0]), &t(&[1.0, 2.0]), &s).is_err());
        let f64s = Tensor::new(&[1f64, 2.0, 3.0], &Device::Cpu).unwrap();
        assert!(adam_moments(&st, &f64s, &f64s, &s).is_err());
        assert!(adam_apply(&t(&[1.0, 2.0]), &st, &s).is_err());
    }
}
