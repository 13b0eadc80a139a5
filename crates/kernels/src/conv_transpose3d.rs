//! `conv_transpose3d` (padding 0, any kernel and stride) as a custom op reusing the conv3d passes.

use candle_core::Tensor;

use crate::check::{check_channel_vec, dims5, same_dtype_device};
use crate::op::{conv_op, Pass};
use crate::{Conv3d, Conv3dBackwardWeight, Conv3dGeometry, CudaConvPath, KernelsError};

/// Transposed 3-D convolution as PyTorch's `conv_transpose3d` with padding 0, output padding 0,
/// dilation 1, groups 1: `x (N, Ci, D, H, W)`, `w (Ci, Co, kD, kH, kW)`, optional `bias (Co,)`;
/// returns `(N, Co, (D−1)·sD + kD, (H−1)·sH + kH, (W−1)·sW + kW)`. Differentiable in `x`, `w` and
/// `bias`. Kernel 2 stride 2 is UNETR's up-sampling; any kernel and stride work.
///
/// Bad shapes, dtypes (mixed, or neither f32 nor bf16) or strides return an error wrapping
/// [`KernelsError`]. Supported: f32 and bf16 on the CPU (bf16 computed in f32), and on CUDA devices
/// with the `cuda` feature.
pub fn conv_transpose3d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: [usize; 3],
) -> candle_core::Result<Tensor> {
    conv_transpose3d_with_path(x, w, bias, stride, CudaConvPath::Auto)
}

/// [`conv_transpose3d()`] with an explicit CUDA implementation for the op and its gradients (tests,
/// benchmarks; the CPU ignores `path`).
pub fn conv_transpose3d_with_path(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: [usize; 3],
    path: CudaConvPath,
) -> candle_core::Result<Tensor> {
    let _span = tracing::debug_span!("conv_transpose3d", x = ?x.dims(), w = ?w.dims(), ?stride, ?path).entered();
    let g = transpose_geometry(x, w, bias, stride)?;
    let y = x.contiguous()?.apply_op2(&w.contiguous()?, ConvTranspose3d { geometry: g, path })?;
    match bias {
        Some(b) => crate::add_channel_bias(&y, b),
        None => Ok(y),
    }
}

/// The geometry of the convolution whose backward-data pass is this transposed convolution.
fn transpose_geometry(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: [usize; 3],
) -> Result<Conv3dGeometry, KernelsError> {
    let op = "conv_transpose3d";
    let [n, ci, d, h, wd] = dims5(op, "input", x)?;
    let [wci, co, kd, kh, kw] = dims5(op, "weight", w)?;
    same_dtype_device(op, x, w)?;
    if wci != ci {
        return Err(KernelsError::Shape {
            op,
            msg: format!("input has {ci} channels but the weight {:?} (Ci, Co, kD, kH, kW) expects {wci}", w.dims()),
        });
    }
    if let Some(b) = bias {
        check_channel_vec(op, "bias", b, co, x, true)?;
    }
    if stride.contains(&0) {
        return Err(KernelsError::Config {
            op,
            msg: format!("stride must be at least 1 on every axis, got {stride:?}"),
        });
    }
    let k = [kd, kh, kw];
    let i = [d, h, wd];
    if i.contains(&0) || k.contains(&0) {
        return Err(KernelsError::Shape {
            op,
            msg: format!("input size {i:?} and kernel size {k:?} must be positive"),
        });
    }
    let out = [0, 1, 2].map(|a| (i[a] - 1) * stride[a] + k[a]);
    Conv3dGeometry::new(n, co, ci, out, k, stride, [0; 3])
}

conv_op! {
    /// The custom op of [`conv_transpose3d()`]: arguments (input, weight), result the output (no bias).
    ///
    /// `geometry` describes the *forward convolution* that maps this op's output back to its input:
    /// its input is this op's output (`in_channels` = Co), its output this op's input
    /// (`out_channels` = Ci), and its weight has this op's weight layout `(Ci, Co, k…)`. So the forward
    /// pass is conv3d's backward-data (errors name that pass), the input gradient is a conv3d of the
    /// output gradient, and the weight gradient is conv3d's backward-weight with the output gradient in
    /// the input's role.
    ConvTranspose3d: "conv-transpose3d", Pass::BackwardData,
    spans("conv_transpose3d_cpu_fwd", "conv_transpose3d_cuda_fwd"),
    grads(x, w, grad) { dx = Conv3d(grad, w), dw = Conv3dBackwardWeight(grad, x) }
}
