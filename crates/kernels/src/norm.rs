//! `instance_norm`: statistics from candle ops, its backward pass written out (a custom op).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Storage, Tensor};

use crate::check::check_channel_vec;
use crate::KernelsError;

/// Instance normalisation: each (n, c) slice of `x (N, C, …)` (rank ≥ 3, e.g. `(N, C, D, H, W)`)
/// is normalised over its spatial elements with the biased variance,
/// `(x − mean) / sqrt(var + eps)`, then scaled by `gamma (C,)` and shifted by `beta (C,)` when
/// given (PyTorch's `InstanceNorm3d`, `affine` when gamma/beta are present, no running stats).
///
/// The forward pass is built from candle ops (sums, sqr, sqrt, broadcasts) on any device and float
/// dtype; the normalisation's gradient is written out in [`Normalized`]'s backward pass (about 7
/// passes over the activation, where candle's autograd through the composed ops takes ~25); the
/// affine part stays with autograd. Differentiable in `x`, `gamma` and `beta`.
pub fn instance_norm(
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    eps: f64,
) -> candle_core::Result<Tensor> {
    let op = "instance_norm";
    let _span = tracing::debug_span!("instance_norm", x = ?x.dims(), eps).entered();
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
    for (what, v) in [("gamma", gamma), ("beta", beta)] {
        if let Some(v) = v {
            check_channel_vec(op, what, v, c, x, false)?;
        }
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
    y.reshape(dims)
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
