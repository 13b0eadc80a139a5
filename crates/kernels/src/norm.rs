//! `instance_norm`, composed from candle ops so that candle's autograd gives its gradients.

use candle_core::Tensor;

use crate::check::check_channel_vec;
use crate::KernelsError;

/// Instance normalisation: each (n, c) slice of `x (N, C, …)` (rank ≥ 3, e.g. `(N, C, D, H, W)`)
/// is normalised over its spatial elements with the biased variance,
/// `(x − mean) / sqrt(var + eps)`, then scaled by `gamma (C,)` and shifted by `beta (C,)` when
/// given (PyTorch's `InstanceNorm3d`, `affine` when gamma/beta are present, no running stats).
///
/// Built from candle ops (sums, sqr, sqrt, broadcasts), so it is differentiable in `x`, `gamma`
/// and `beta`, on any device and float dtype candle supports; the per-channel scale is folded into
/// one broadcast multiply to save a pass.
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
    let cols = spatial / rows;
    let xs = x.reshape((n, c, rows, cols))?;
    let inv = 1.0 / spatial as f64;
    let stat = |t: &Tensor| t.sum_keepdim(3)?.sum_keepdim(2)?.affine(inv, 0.0);
    let spread = |t: &Tensor| t.broadcast_as((n, c, rows, 1))?.broadcast_as((n, c, rows, cols));
    let mean = stat(&xs)?;
    let xc = (&xs - spread(&mean)?)?;
    let var = stat(&xc.sqr()?)?;
    let mut scale = (var + eps)?.sqrt()?.recip()?;
    if let Some(g) = gamma {
        scale = scale.broadcast_mul(&g.reshape((1, c, 1, 1))?)?;
    }
    let mut y = (xc * spread(&scale)?)?;
    if let Some(b) = beta {
        y = (y + spread(&b.reshape((1, c, 1, 1))?)?)?;
    }
    y.reshape(dims)
}
