//! UNETR as MONAI 1.6.1 builds it (`proj_type="perceptron"`, `norm_name="instance"`,
//! `res_block=True`, `dropout_rate=0`, `qkv_bias=False`), split into an encoder (ViT +
//! `encoder1..4`) and a decoder (`decoder5..2` + `out`) so MAG-MS can reuse both halves.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::blocks::{UnetOutBlock, UnetrBasicBlock, UnetrPrUpBlock, UnetrUpBlock};
use crate::vit::{Vit, VitSizes};
use crate::{check_input, ModelError, Result};

/// The sizes of a UNETR. [`Default`] is MONAI's default network for 4 input channels, 4 classes
/// and 96³ patches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnetrConfig {
    /// Input channels (1 for each MAG-MS encoder).
    pub in_channels: usize,
    /// Output channels (classes).
    pub out_channels: usize,
    /// Input size (D, H, W); each must be a multiple of `patch_size`.
    pub img_size: [usize; 3],
    /// ViT patch side. MONAI fixes it to 16, and the decoder's four ×2 up-sampling stages
    /// only meet the skips at 16, so [`UnetrConfig::validate`] requires 16.
    pub patch_size: usize,
    /// Channels of the first convolutional level (`encoder1`, `decoder2`).
    pub feature_size: usize,
    /// ViT token width.
    pub hidden_size: usize,
    /// ViT MLP width.
    pub mlp_dim: usize,
    /// Attention heads (must divide `hidden_size`).
    pub num_heads: usize,
    /// Transformer blocks (12 in MONAI). The skips tap blocks `num_layers/4 · {1, 2, 3}`
    /// (0-based: 3, 6, 9 for 12 layers; for fewer than 4 layers all three tap block 0).
    pub num_layers: usize,
}

impl Default for UnetrConfig {
    fn default() -> Self {
        Self {
            in_channels: 4,
            out_channels: 4,
            img_size: [96; 3],
            patch_size: 16,
            feature_size: 16,
            hidden_size: 768,
            mlp_dim: 3072,
            num_heads: 12,
            num_layers: 12,
        }
    }
}

impl UnetrConfig {
    /// Checks that the sizes describe a working network.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::Config(m));
        if self.patch_size != 16 {
            return bad(format!("UNETR patch_size must be 16 (its decoder up-samples 4 × 2), got {}", self.patch_size));
        }
        if self.img_size.iter().any(|&s| s == 0 || s % self.patch_size != 0) {
            return bad(format!("img_size {:?} must be positive multiples of {}", self.img_size, self.patch_size));
        }
        let sizes = [self.in_channels, self.out_channels, self.feature_size, self.hidden_size, self.mlp_dim];
        if sizes.contains(&0) || self.num_heads == 0 || self.num_layers == 0 {
            return bad(format!("UNETR sizes must be positive: {self:?}"));
        }
        if self.hidden_size % self.num_heads != 0 {
            return bad(format!("hidden_size {} is not divisible by num_heads {}", self.hidden_size, self.num_heads));
        }
        Ok(())
    }

    /// Patches per axis.
    pub fn grid(&self) -> [usize; 3] {
        self.img_size.map(|s| s / self.patch_size)
    }

    /// The 0-based transformer blocks whose outputs feed `encoder2`, `encoder3`, `encoder4`.
    pub fn tap_layers(&self) -> [usize; 3] {
        let q = self.num_layers / 4;
        [q, 2 * q, 3 * q]
    }

    /// Channels of the five encoder features `[enc1, enc2, enc3, enc4, dec4]`.
    pub fn feature_channels(&self) -> [usize; 5] {
        let f = self.feature_size;
        [f, 2 * f, 4 * f, 8 * f, self.hidden_size]
    }
}

/// The UNETR encoder: `vit`, `encoder1..4`. Its output is the five features `[enc1, enc2, enc3,
/// enc4, dec4]` (dec4 = the projected, normalised last hidden state).
#[derive(Debug, Clone)]
pub struct UnetrEncoder {
    cfg: UnetrConfig,
    vit: Vit,
    encoder1: UnetrBasicBlock,
    encoder2: UnetrPrUpBlock,
    encoder3: UnetrPrUpBlock,
    encoder4: UnetrPrUpBlock,
}

impl UnetrEncoder {
    /// Builds the encoder under `vb` (validating `cfg`).
    pub fn new(vb: VarBuilder, cfg: UnetrConfig) -> Result<Self> {
        cfg.validate()?;
        let (h, f) = (cfg.hidden_size, cfg.feature_size);
        let sizes = VitSizes {
            in_channels: cfg.in_channels,
            patch: cfg.patch_size,
            grid: cfg.grid(),
            hidden: h,
            mlp_dim: cfg.mlp_dim,
            num_heads: cfg.num_heads,
            num_layers: cfg.num_layers,
        };
        Ok(Self {
            cfg,
            vit: Vit::new(vb.pp("vit"), sizes)?,
            encoder1: UnetrBasicBlock::new(vb.pp("encoder1"), cfg.in_channels, f)?,
            encoder2: UnetrPrUpBlock::new(vb.pp("encoder2"), h, 2 * f, 2)?,
            encoder3: UnetrPrUpBlock::new(vb.pp("encoder3"), h, 4 * f, 1)?,
            encoder4: UnetrPrUpBlock::new(vb.pp("encoder4"), h, 8 * f, 0)?,
        })
    }

    /// MONAI's `proj_feat`: `(B, n, hidden) → (B, hidden, g0, g1, g2)`.
    fn proj_feat(&self, x: &Tensor) -> Result<Tensor> {
        let b = x.dim(0)?;
        let [g0, g1, g2] = self.cfg.grid();
        Ok(x.reshape((b, g0, g1, g2, self.cfg.hidden_size))?.permute((0, 4, 1, 2, 3))?.contiguous()?)
    }

    /// Encodes `x (B, in_channels, img_size)` into `[enc1, enc2, enc3, enc4, dec4]`.
    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        check_input(x, self.cfg.in_channels, self.cfg.img_size)?;
        let vit = self.vit.forward(x)?;
        let [t2, t3, t4] = self.cfg.tap_layers();
        let enc1 = self.encoder1.forward(x)?;
        let enc2 = self.encoder2.forward(&self.proj_feat(&vit.hidden_states[t2])?)?;
        let enc3 = self.encoder3.forward(&self.proj_feat(&vit.hidden_states[t3])?)?;
        let enc4 = self.encoder4.forward(&self.proj_feat(&vit.hidden_states[t4])?)?;
        let dec4 = self.proj_feat(&vit.last)?;
        Ok(vec![enc1, enc2, enc3, enc4, dec4])
    }
}

/// The UNETR decoder: `decoder5..2` and `out`.
#[derive(Debug, Clone)]
pub struct UnetrDecoder {
    decoder5: UnetrUpBlock,
    decoder4: UnetrUpBlock,
    decoder3: UnetrUpBlock,
    decoder2: UnetrUpBlock,
    out: UnetOutBlock,
}

impl UnetrDecoder {
    /// Builds the decoder under `vb` (validating `cfg`).
    pub fn new(vb: VarBuilder, cfg: UnetrConfig) -> Result<Self> {
        cfg.validate()?;
        let (h, f) = (cfg.hidden_size, cfg.feature_size);
        Ok(Self {
            decoder5: UnetrUpBlock::new(vb.pp("decoder5"), h, 8 * f)?,
            decoder4: UnetrUpBlock::new(vb.pp("decoder4"), 8 * f, 4 * f)?,
            decoder3: UnetrUpBlock::new(vb.pp("decoder3"), 4 * f, 2 * f)?,
            decoder2: UnetrUpBlock::new(vb.pp("decoder2"), 2 * f, f)?,
            out: UnetOutBlock::new(vb.pp("out"), f, cfg.out_channels)?,
        })
    }

    /// Decodes the five features `[enc1, enc2, enc3, enc4, dec4]` into logits.
    pub fn forward(&self, feats: &[Tensor]) -> Result<Tensor> {
        let [enc1, enc2, enc3, enc4, dec4] = feats else {
            return Err(ModelError::Input(format!("the UNETR decoder needs 5 features, got {}", feats.len())));
        };
        let dec3 = self.decoder5.forward(dec4, enc4)?;
        let dec2 = self.decoder4.forward(&dec3, enc3)?;
        let dec1 = self.decoder3.forward(&dec2, enc2)?;
        self.out.forward(&self.decoder2.forward(&dec1, enc1)?)
    }
}

/// A complete UNETR whose parameters carry MONAI's state-dict names (`vit.…`, `encoder1.…`,
/// `decoder5.…`, `out.…`), held in its own [`VarMap`] (f32).
#[derive(Clone)]
pub struct Unetr {
    config: UnetrConfig,
    varmap: VarMap,
    encoder: UnetrEncoder,
    decoder: UnetrDecoder,
}

impl std::fmt::Debug for Unetr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unetr").field("config", &self.config).field("parameters", &self.num_parameters()).finish()
    }
}

impl Unetr {
    /// Builds a freshly initialised UNETR on `device`.
    pub fn new(config: UnetrConfig, device: &Device) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let encoder = UnetrEncoder::new(vb.clone(), config)?;
        let decoder = UnetrDecoder::new(vb, config)?;
        Ok(Self { config, varmap, encoder, decoder })
    }

    /// The configuration.
    pub fn config(&self) -> &UnetrConfig {
        &self.config
    }

    /// The parameters, by MONAI name.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// Logits `(B, out_channels, img_size)` for `x (B, in_channels, img_size)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.decoder.forward(&self.encoder.forward(x)?)
    }
}

impl Unetr {
    /// Number of scalar parameters (all of them, as PyTorch's `parameters()` counts).
    pub fn num_parameters(&self) -> usize {
        crate::magms::count_parameters(&self.varmap)
    }

    /// Every parameter with its (MONAI) name, sorted by name.
    pub fn named_vars(&self) -> Vec<(String, candle_core::Var)> {
        crate::magms::named_vars(&self.varmap)
    }

    /// The parameters an optimiser should update, sorted by name: all but MONAI's unused
    /// `norm_cross_attn` LayerNorms (see [`crate::is_unused_parameter`]).
    pub fn trainable_vars(&self) -> Vec<(String, candle_core::Var)> {
        self.named_vars().into_iter().filter(|(n, _)| !crate::is_unused_parameter(n)).collect()
    }
}
