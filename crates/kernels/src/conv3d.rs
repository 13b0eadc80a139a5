//! `conv3d` and its three custom ops: forward, backward-data and backward-weight.

use candle_core::Tensor;

use crate::check::{check_channel_vec, dims5, same_dtype_device};
use crate::op::{conv_op, Pass};
use crate::{add_channel_bias, Conv3dGeometry, CudaConvPath, KernelsError};

/// Stride and zero padding of a 3-D convolution (dilation 1, groups 1), per axis (D, H, W).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv3dConfig {
    /// Step of the kernel per axis (≥ 1).
    pub stride: [usize; 3],
    /// Zeros added on both sides of each axis.
    pub padding: [usize; 3],
}

impl Default for Conv3dConfig {
    fn default() -> Self {
        Self { stride: [1; 3], padding: [0; 3] }
    }
}

/// 3-D convolution (cross-correlation, as PyTorch's `conv3d`): `x (N, Ci, D, H, W)`,
/// `w (Co, Ci, kD, kH, kW)`, optional `bias (Co,)`; returns `(N, Co, oD, oH, oW)` with
/// `o = (i + 2·padding − k) / stride + 1`. Differentiable in `x`, `w` and `bias`.
///
/// Bad shapes, dtypes (mixed, or neither f32 nor bf16) or configurations return an error wrapping
/// [`KernelsError`]. Supported: f32 and bf16 on the CPU (bf16 computed in f32, result rounded to
/// bf16), and on CUDA devices with the `cuda` feature (bf16 with f32 accumulation).
pub fn conv3d(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, cfg: Conv3dConfig) -> candle_core::Result<Tensor> {
    conv3d_with_path(x, w, bias, cfg, CudaConvPath::Auto)
}

/// [`conv3d()`] with an explicit CUDA implementation for the op and its gradients (tests,
/// benchmarks; the CPU ignores `path`).
pub fn conv3d_with_path(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    cfg: Conv3dConfig,
    path: CudaConvPath,
) -> candle_core::Result<Tensor> {
    let _span = tracing::debug_span!("conv3d", x = ?x.dims(), w = ?w.dims(), ?path).entered();
    let g = conv3d_geometry(x, w, bias, cfg)?;
    let y = x.contiguous()?.apply_op2(&w.contiguous()?, Conv3d { geometry: g, path })?;
    match bias {
        Some(b) => add_channel_bias(&y, b),
        None => Ok(y),
    }
}

/// Validates the arguments of [`conv3d()`] and returns the geometry.
fn conv3d_geometry(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    cfg: Conv3dConfig,
) -> Result<Conv3dGeometry, KernelsError> {
    let op = "conv3d";
    let [n, ci, d, h, wd] = dims5(op, "input", x)?;
    let [co, wci, kd, kh, kw] = dims5(op, "weight", w)?;
    same_dtype_device(op, x, w)?;
    if wci != ci {
        return Err(KernelsError::Shape {
            op,
            msg: format!("input has {ci} channels but the weight {:?} expects {wci}", w.dims()),
        });
    }
    if let Some(b) = bias {
        check_channel_vec(op, "bias", b, co, x, true)?;
    }
    Conv3dGeometry::new(n, ci, co, [d, h, wd], [kd, kh, kw], cfg.stride, cfg.padding)
}

conv_op! {
    /// The forward custom op of [`conv3d()`]: arguments (input, weight), result the output (no bias).
    /// Its gradient uses [`Conv3dBackwardData`] and [`Conv3dBackwardWeight`].
    Conv3d: "conv3d", Pass::Forward,
    grads(x, w, grad) { dx = Conv3dBackwardData(grad, w), dw = Conv3dBackwardWeight(x, grad) }
}

conv_op! {
    /// Backward-data of [`Conv3d`]: arguments (output gradient, weight), result the input gradient
    /// (a transposed convolution; also the forward pass of [`crate::conv_transpose3d()`]).
    Conv3dBackwardData: "conv3d-backward-data", Pass::BackwardData
}

conv_op! {
    /// Backward-weight of [`Conv3d`]: arguments (input, output gradient), result the weight gradient.
    Conv3dBackwardWeight: "conv3d-backward-weight", Pass::BackwardWeight
}
