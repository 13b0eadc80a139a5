//! Parameterised layers (3-D convolutions, linear, layer norm, instance norm) built on a candle
//! `VarBuilder`, with PyTorch parameter shapes and names (`weight`, `bias`).
//!
//! Mixed precision follows the activations, as PyTorch's autocast does: parameters are stored in
//! f32 and cast to the input's dtype inside convolutions and linear layers (a no-op for f32), so a
//! bf16 input runs the layer in bf16 while the gradients reach the f32 parameters; biases are added
//! in f32 ([`magseg_kernels::add_bias`]) and the norms compute their statistics in f32, returning the
//! input's dtype.

use candle_core::{DType, Tensor};
use candle_nn::{Init, VarBuilder};
use magseg_kernels::{conv3d, conv_transpose3d, instance_norm, instance_norm_leaky_relu, Conv3dConfig};

use crate::Result;

/// `t` in `dtype` (itself when it already has it).
fn cast(t: &Tensor, dtype: DType) -> Result<Tensor> {
    Ok(t.to_dtype(dtype)?)
}

/// `t` (and an optional companion) cast to `x`'s dtype.
fn cast_params(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<(Tensor, Option<Tensor>)> {
    Ok((cast(w, x.dtype())?, b.map(|b| cast(b, x.dtype())).transpose()?))
}

/// Runs `f` on `x` in f32 (a bf16/f16 `x` is widened first) and returns the result in `x`'s dtype.
fn in_f32(x: &Tensor, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    if x.dtype() == DType::F32 {
        return f(x);
    }
    cast(&f(&cast(x, DType::F32)?)?, x.dtype())
}

/// PyTorch's default initialisation bound for weights and biases, `1/sqrt(fan_in)`.
fn uniform(fan_in: usize) -> Init {
    let b = 1.0 / (fan_in.max(1) as f64).sqrt();
    Init::Uniform { lo: -b, up: b }
}

/// A 3-D convolution with a cubic kernel: `weight (Co, Ci, k, k, k)`, optional `bias (Co,)`.
#[derive(Debug, Clone)]
pub struct Conv3d {
    weight: Tensor,
    bias: Option<Tensor>,
    cfg: Conv3dConfig,
}

impl Conv3d {
    /// Creates (or fetches) `weight` and, with `bias`, `bias` under `vb`; stride 1 and padding
    /// `k / 2` keep the spatial size for odd `k`.
    pub fn new(vb: VarBuilder, cin: usize, cout: usize, k: usize, bias: bool) -> Result<Self> {
        let fan_in = cin * k * k * k;
        let weight = vb.get_with_hints((cout, cin, k, k, k), "weight", uniform(fan_in))?;
        let bias = if bias { Some(vb.get_with_hints(cout, "bias", uniform(fan_in))?) } else { None };
        Ok(Self { weight, bias, cfg: Conv3dConfig { stride: [1; 3], padding: [k / 2; 3] } })
    }

    /// Applies the convolution to `x (N, Ci, D, H, W)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (w, b) = cast_params(x, &self.weight, self.bias.as_ref())?;
        Ok(conv3d(x, &w, b.as_ref(), self.cfg)?)
    }
}

/// A transposed 3-D convolution with kernel = stride = `k` (UNETR's up-sampling): `weight
/// (Ci, Co, k, k, k)`, optional `bias (Co,)`.
#[derive(Debug, Clone)]
pub struct ConvTranspose3d {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: [usize; 3],
}

impl ConvTranspose3d {
    /// Creates (or fetches) `weight` and, with `bias`, `bias` under `vb`.
    pub fn new(vb: VarBuilder, cin: usize, cout: usize, k: usize, bias: bool) -> Result<Self> {
        // PyTorch computes the fan-in of a transposed convolution's weight from dim 1 (Co).
        let fan_in = cout * k * k * k;
        let weight = vb.get_with_hints((cin, cout, k, k, k), "weight", uniform(fan_in))?;
        let bias = if bias { Some(vb.get_with_hints(cout, "bias", uniform(fan_in))?) } else { None };
        Ok(Self { weight, bias, stride: [k; 3] })
    }

    /// Applies the transposed convolution to `x (N, Ci, D, H, W)`: `(N, Co, k·D, k·H, k·W)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (w, b) = cast_params(x, &self.weight, self.bias.as_ref())?;
        Ok(conv_transpose3d(x, &w, b.as_ref(), self.stride)?)
    }
}

/// A linear layer `y = x Wᵀ + b` with `weight (out, in)`, initialised as MONAI's ViT does
/// (normal, std 0.02; bias 0).
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// Creates (or fetches) `weight` and, with `bias`, `bias` under `vb`.
    pub fn new(vb: VarBuilder, din: usize, dout: usize, bias: bool) -> Result<Self> {
        let weight = vb.get_with_hints((dout, din), "weight", Init::Randn { mean: 0.0, stdev: 0.02 })?;
        let bias = if bias { Some(vb.get_with_hints(dout, "bias", Init::Const(0.0))?) } else { None };
        Ok(Self { weight, bias })
    }

    /// Applies the layer over the last dimension of `x` ([`magseg_kernels::linear`]: one autograd
    /// node; the bias added in f32 for half-precision `x`).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(magseg_kernels::linear(x, &cast(&self.weight, x.dtype())?, self.bias.as_ref())?)
    }
}

/// PyTorch's `nn.LayerNorm(dim)` (eps 1e-5, affine), in f32: [`magseg_kernels::layer_norm`]
/// (custom ops with the gradient written out; candle's fast `LayerNorm` gives no gradients).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
}

impl LayerNorm {
    /// Creates (or fetches) `weight` (ones) and `bias` (zeros) under `vb`.
    pub fn new(vb: VarBuilder, dim: usize) -> Result<Self> {
        let weight = vb.get_with_hints(dim, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(dim, "bias", Init::Const(0.0))?;
        Ok(Self { weight, bias })
    }

    /// Normalises over the last dimension of `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        in_f32(x, |x| Ok(magseg_kernels::layer_norm(x, &self.weight, &self.bias, 1e-5)?))
    }
}

/// PyTorch's `InstanceNorm3d(c, eps=1e-5, affine=True)`: `weight` (ones) and `bias` (zeros).
#[derive(Debug, Clone)]
pub struct AffineInstanceNorm {
    weight: Tensor,
    bias: Tensor,
}

impl AffineInstanceNorm {
    /// Creates (or fetches) `weight` and `bias` of shape `(c,)` under `vb`.
    pub fn new(vb: VarBuilder, c: usize) -> Result<Self> {
        let weight = vb.get_with_hints(c, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(c, "bias", Init::Const(0.0))?;
        Ok(Self { weight, bias })
    }

    /// Normalises each (n, c) volume of `x (N, C, D, H, W)` and applies a leaky ReLU of `slope`, as
    /// one op ([`magseg_kernels::instance_norm_leaky_relu`]: the activation runs inside the norm's
    /// passes; the values of the norm followed by [`leaky_relu`]).
    pub fn forward_leaky_relu(&self, x: &Tensor, slope: f64) -> Result<Tensor> {
        norm_in_f32(x, |x| Ok(instance_norm_leaky_relu(x, Some(&self.weight), Some(&self.bias), 1e-5, slope)?))
    }
}

/// MONAI's `"instance"` norm: `InstanceNorm3d(affine=False)`, eps 1e-5, no parameters.
pub fn instance_norm_plain(x: &Tensor) -> Result<Tensor> {
    norm_in_f32(x, |x| Ok(instance_norm(x, None, None, 1e-5)?))
}

/// [`instance_norm_plain`] followed by a leaky ReLU of `slope`, as one op
/// ([`magseg_kernels::instance_norm_leaky_relu`]).
pub fn instance_norm_plain_leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    norm_in_f32(x, |x| Ok(instance_norm_leaky_relu(x, None, None, 1e-5, slope)?))
}

/// Runs the instance norm `f` with f32 statistics: f32 and bf16 `x` directly
/// ([`magseg_kernels::instance_norm`] reads bf16 as f32 and rounds its output once, the values of
/// [`in_f32`] without its two conversions), other dtypes through [`in_f32`].
fn norm_in_f32(x: &Tensor, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    match x.dtype() {
        DType::F32 | DType::BF16 => f(x),
        _ => in_f32(x, f),
    }
}

/// Leaky ReLU (PyTorch's `F.leaky_relu`): one custom op each way for f32 and bf16
/// ([`magseg_kernels::leaky_relu`]).
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    Ok(magseg_kernels::leaky_relu(x, slope)?)
}

/// 2×2×2 max pooling with stride 2 of `x (N, C, D, H, W)`; every spatial size must be even. The
/// gradient goes to each window's first maximum, as in PyTorch ([`magseg_kernels::max_pool2`]: one
/// custom op each way).
pub fn max_pool2(x: &Tensor) -> Result<Tensor> {
    Ok(magseg_kernels::max_pool2(x)?)
}
