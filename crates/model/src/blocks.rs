//! MONAI's convolutional UNETR blocks (`UnetResBlock`, `UnetrBasicBlock`, `UnetrPrUpBlock`,
//! `UnetrUpBlock`, `UnetOutBlock`) with `norm_name="instance"` and `res_block=True`, under
//! MONAI's parameter names.
//!
//! MONAI's `"instance"` norm is `InstanceNorm3d(affine=False)` (no parameters, eps 1e-5), its
//! activation `LeakyReLU(0.01)`; every convolution here is bias-free except the output block's.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::layers::{instance_norm_plain, instance_norm_plain_leaky_relu, leaky_relu, Conv3d, ConvTranspose3d};
use crate::Result;

/// MONAI's LeakyReLU slope in the dynunet blocks.
const SLOPE: f64 = 0.01;

/// `UnetResBlock` (kernel 3, stride 1): `conv1 → norm → lrelu → conv2 → norm`, plus the
/// residual (through a 1×1×1 `conv3` and a norm when the channel count changes), then lrelu.
/// Parameters: `conv1.conv.weight`, `conv2.conv.weight`, `conv3.conv.weight`.
#[derive(Debug, Clone)]
pub struct UnetResBlock {
    conv1: Conv3d,
    conv2: Conv3d,
    conv3: Option<Conv3d>,
}

impl UnetResBlock {
    /// Builds the block under `vb` for `cin → cout` channels.
    pub fn new(vb: VarBuilder, cin: usize, cout: usize) -> Result<Self> {
        let conv1 = Conv3d::new(vb.pp("conv1").pp("conv"), cin, cout, 3, false)?;
        let conv2 = Conv3d::new(vb.pp("conv2").pp("conv"), cout, cout, 3, false)?;
        let conv3 = if cin != cout { Some(Conv3d::new(vb.pp("conv3").pp("conv"), cin, cout, 1, false)?) } else { None };
        Ok(Self { conv1, conv2, conv3 })
    }

    /// Applies the block to `x (N, cin, D, H, W)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let out = instance_norm_plain_leaky_relu(&self.conv1.forward(x)?, SLOPE)?;
        let out = instance_norm_plain(&self.conv2.forward(&out)?)?;
        let residual = match &self.conv3 {
            Some(c) => instance_norm_plain(&c.forward(x)?)?,
            None => x.clone(),
        };
        leaky_relu(&(out + residual)?, SLOPE)
    }
}

/// `UnetrBasicBlock` with `res_block=True`: a [`UnetResBlock`] named `layer`.
#[derive(Debug, Clone)]
pub struct UnetrBasicBlock {
    layer: UnetResBlock,
}

impl UnetrBasicBlock {
    /// Builds the block under `vb` for `cin → cout` channels.
    pub fn new(vb: VarBuilder, cin: usize, cout: usize) -> Result<Self> {
        Ok(Self { layer: UnetResBlock::new(vb.pp("layer"), cin, cout)? })
    }

    /// Applies the block.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.layer.forward(x)
    }
}

/// `UnetrPrUpBlock` with `conv_block=True, res_block=True`: `transp_conv_init` (2×2×2, stride 2)
/// then `num_layer` × (`blocks.i.0` transposed conv, `blocks.i.1` [`UnetResBlock`]); each
/// stage doubles the spatial size.
#[derive(Debug, Clone)]
pub struct UnetrPrUpBlock {
    transp_conv_init: ConvTranspose3d,
    blocks: Vec<(ConvTranspose3d, UnetResBlock)>,
}

impl UnetrPrUpBlock {
    /// Builds the block under `vb` for `cin → cout` channels with `num_layer` extra stages.
    pub fn new(vb: VarBuilder, cin: usize, cout: usize, num_layer: usize) -> Result<Self> {
        let transp_conv_init = ConvTranspose3d::new(vb.pp("transp_conv_init").pp("conv"), cin, cout, 2, false)?;
        let mut blocks = Vec::with_capacity(num_layer);
        for i in 0..num_layer {
            let b = vb.pp("blocks").pp(i);
            let up = ConvTranspose3d::new(b.pp("0").pp("conv"), cout, cout, 2, false)?;
            blocks.push((up, UnetResBlock::new(b.pp("1"), cout, cout)?));
        }
        Ok(Self { transp_conv_init, blocks })
    }

    /// Applies the block.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = self.transp_conv_init.forward(x)?;
        for (up, res) in &self.blocks {
            x = res.forward(&up.forward(&x)?)?;
        }
        Ok(x)
    }
}

/// `UnetrUpBlock` with `res_block=True`: `transp_conv` (2×2×2, stride 2), concatenation with the
/// skip along channels (up-sampled first), then `conv_block` ([`UnetResBlock`] `2·cout → cout`).
#[derive(Debug, Clone)]
pub struct UnetrUpBlock {
    transp_conv: ConvTranspose3d,
    conv_block: UnetResBlock,
}

impl UnetrUpBlock {
    /// Builds the block under `vb`: input `cin` channels, skip and output `cout` channels.
    pub fn new(vb: VarBuilder, cin: usize, cout: usize) -> Result<Self> {
        let transp_conv = ConvTranspose3d::new(vb.pp("transp_conv").pp("conv"), cin, cout, 2, false)?;
        let conv_block = UnetResBlock::new(vb.pp("conv_block"), 2 * cout, cout)?;
        Ok(Self { transp_conv, conv_block })
    }

    /// Applies the block to `x` and the skip connection `skip`.
    pub fn forward(&self, x: &Tensor, skip: &Tensor) -> Result<Tensor> {
        let up = self.transp_conv.forward(x)?;
        self.conv_block.forward(&Tensor::cat(&[&up, skip], 1)?)
    }
}

/// `UnetOutBlock`: a 1×1×1 convolution with bias, `conv.conv.weight` and `conv.conv.bias`.
#[derive(Debug, Clone)]
pub struct UnetOutBlock {
    conv: Conv3d,
}

impl UnetOutBlock {
    /// Builds the block under `vb` for `cin → cout` channels.
    pub fn new(vb: VarBuilder, cin: usize, cout: usize) -> Result<Self> {
        Ok(Self { conv: Conv3d::new(vb.pp("conv").pp("conv"), cin, cout, 1, true)? })
    }

    /// Applies the block.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.conv.forward(x)
    }
}
