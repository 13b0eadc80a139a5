//! `instance_norm`, composed from candle ops so that candle's autograd gives its gradients.

use candle_core::Tensor;

use crate::check::check_channel_vec;
use crate::KernelsError;

/// Instance normalisation: each (n, c) slice of `x (N, C, …)` (rank ≥ 3, e.g. `(N, C, D, H, W)`)
/// is normalised over its spatial elements with the biased variance,
/// `(x − mean) / sqrt(var + eps)`, then scaled by `gamma (C,)` and shifted by `beta (C,)` when
/// given (PyTorch's `InstanceNorm3d`, `affine` when gamma/beta are present, no running stats).
///
/// Built from candle ops (mean, sqr, sqrt, broadcast ops), so it is differentiable in `x`, `gamma`
/// and `beta`, on any device and float dtype candle supports; the per-channel scale is folded into one broadcast multiply to save a pass.
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
    let xs = x.reshape((n, c, spatial))?;
    let mean = xs.mean_keepdim(2)?;
    let xc = xs.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(2)?;
    let mut scale = (var + eps)?.sqrt()?.recip()?;
    if let Some(g) = gamma {
        scale = scale.broadcast_mul(&g.reshape((1, c, 1))?)?;
    }
    let mut y = xc.broadcast_mul(&scale)?;
    if let Some(b) = beta {
        y = y.broadcast_add(&b.reshape((1, c, 1))?)?;
    }
    y.reshape(dims)
}
