//! The lighter 3-D U-Net backbone of the MAG-MS reference (RFNet-style): 4 levels with
//! `base × [1, 2, 4, 8]` channels, blocks of two 3×3×3 bias-free convolutions each followed by
//! an affine instance norm and LeakyReLU(0.2), 2×2×2 max pooling down, transposed 2×2×2
//! convolutions (with bias) up, and a 1×1×1 output convolution.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::layers::{max_pool2, AffineInstanceNorm, Conv3d, ConvTranspose3d};
use crate::{ModelError, Result};

/// Number of resolution levels.
pub const UNET_LEVELS: usize = 4;
/// The LeakyReLU slope of the U-Net blocks.
const SLOPE: f64 = 0.2;

/// Channels per level for `base` channels: `[base, 2·base, 4·base, 8·base]`.
pub fn unet_channels(base: usize) -> [usize; UNET_LEVELS] {
    [base, 2 * base, 4 * base, 8 * base]
}

/// Two `conv (3×3×3, no bias) → instance norm (affine) → LeakyReLU(0.2)` stages:
/// `conv1.weight`, `norm1.{weight,bias}`, `conv2.weight`, `norm2.{weight,bias}`.
#[derive(Debug, Clone)]
pub struct ConvBlock {
    conv1: Conv3d,
    norm1: AffineInstanceNorm,
    conv2: Conv3d,
    norm2: AffineInstanceNorm,
}

impl ConvBlock {
    /// Builds the block under `vb` for `cin → cout` channels.
    pub fn new(vb: VarBuilder, cin: usize, cout: usize) -> Result<Self> {
        Ok(Self {
            conv1: Conv3d::new(vb.pp("conv1"), cin, cout, 3, false)?,
            norm1: AffineInstanceNorm::new(vb.pp("norm1"), cout)?,
            conv2: Conv3d::new(vb.pp("conv2"), cout, cout, 3, false)?,
            norm2: AffineInstanceNorm::new(vb.pp("norm2"), cout)?,
        })
    }

    /// Applies the block.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.norm1.forward_leaky_relu(&self.conv1.forward(x)?, SLOPE)?;
        self.norm2.forward_leaky_relu(&self.conv2.forward(&x)?, SLOPE)
    }
}

/// The U-Net encoder for one input channel: `blocks.{0..3}`, max pooling between levels. Its
/// output is the four level features (full, ½, ¼, ⅛ resolution).
#[derive(Debug, Clone)]
pub struct UnetEncoder {
    blocks: Vec<ConvBlock>,
}

impl UnetEncoder {
    /// Builds the encoder under `vb` for `in_channels` and `base` channels.
    pub fn new(vb: VarBuilder, in_channels: usize, base: usize) -> Result<Self> {
        let ch = unet_channels(base);
        let blocks = (0..UNET_LEVELS)
            .map(|i| ConvBlock::new(vb.pp("blocks").pp(i), if i == 0 { in_channels } else { ch[i - 1] }, ch[i]))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { blocks })
    }

    /// Encodes `x (B, in_channels, D, H, W)` (sizes multiples of 8) into the four features.
    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut feats: Vec<Tensor> = Vec::with_capacity(UNET_LEVELS);
        for (i, blk) in self.blocks.iter().enumerate() {
            let input = match feats.last() {
                Some(prev) if i > 0 => max_pool2(prev)?,
                _ => x.clone(),
            };
            feats.push(blk.forward(&input)?);
        }
        Ok(feats)
    }
}

/// The U-Net decoder: `up.{0..2}` (transposed convolutions with bias, level i+1 → i),
/// `blocks.{0..2}` (on the concatenation `[up, skip]`) and `out` (1×1×1 with bias).
#[derive(Debug, Clone)]
pub struct UnetDecoder {
    up: Vec<ConvTranspose3d>,
    blocks: Vec<ConvBlock>,
    out: Conv3d,
}

impl UnetDecoder {
    /// Builds the decoder under `vb` for `base` channels and `out_channels` classes.
    pub fn new(vb: VarBuilder, base: usize, out_channels: usize) -> Result<Self> {
        let ch = unet_channels(base);
        let mut up = Vec::new();
        let mut blocks = Vec::new();
        for i in 0..UNET_LEVELS - 1 {
            up.push(ConvTranspose3d::new(vb.pp("up").pp(i), ch[i + 1], ch[i], 2, true)?);
            blocks.push(ConvBlock::new(vb.pp("blocks").pp(i), 2 * ch[i], ch[i])?);
        }
        let out = Conv3d::new(vb.pp("out"), ch[0], out_channels, 1, true)?;
        Ok(Self { up, blocks, out })
    }

    /// Decodes the four level features into logits at full resolution.
    pub fn forward(&self, feats: &[Tensor]) -> Result<Tensor> {
        if feats.len() != UNET_LEVELS {
            return Err(ModelError::Input(format!("the U-Net decoder needs 4 features, got {}", feats.len())));
        }
        let mut x = feats[UNET_LEVELS - 1].clone();
        for i in (0..UNET_LEVELS - 1).rev() {
            let up = self.up[i].forward(&x)?;
            x = self.blocks[i].forward(&Tensor::cat(&[&up, &feats[i]], 1)?)?;
        }
        self.out.forward(&x)
    }
}
