//! `add_bias`: a per-channel bias added along one dimension, accumulating its gradient in f32 for
//! half-precision activations.

use candle_core::{DType, Tensor};

use crate::KernelsError;

/// `y + b`, the vector `b` (length `y.dim(dim)`) broadcast along dimension `dim` of `y`; the result has
/// `y`'s dtype. For a bf16/f16 `y` the sum runs in f32 and is rounded once, so that the bias gradient,
/// a sum over every other position, accumulates in f32 as in PyTorch (candle sums half-precision
/// tensors in their own precision: over a 16³ volume that is off by several per cent). `b` may be f32
/// or `y`'s dtype. Differentiable in `y` and `b`.
pub fn add_bias(y: &Tensor, b: &Tensor, dim: usize) -> candle_core::Result<Tensor> {
    let dims = y.dims();
    if dim >= dims.len() || b.dims() != [dims[dim]] {
        return Err(KernelsError::Shape {
            op: "add_bias",
            msg: format!("bias of shape {:?} for dimension {dim} of {dims:?}", b.dims()),
        }
        .into());
    }
    let mut shape = vec![1; dims.len()];
    shape[dim] = dims[dim];
    let b = b.reshape(shape)?;
    match y.dtype() {
        DType::BF16 | DType::F16 => {
            y.to_dtype(DType::F32)?.broadcast_add(&b.to_dtype(DType::F32)?)?.to_dtype(y.dtype())
        }
        _ => y.broadcast_add(&b.to_dtype(y.dtype())?),
    }
}

/// [`add_bias`] along dimension 1 (channels of `(N, C, …)`), as the convolutions use it.
pub(crate) fn add_channel_bias(y: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    add_bias(y, b, 1)
}
