//! The MAG-MS network's configuration ([`MagMsConfig`], [`ModelKind`]), stored as
//! `config.json` next to the weights.

use serde::{Deserialize, Serialize};

use crate::unet::{unet_channels, UNET_LEVELS};

/// The U-Net's spatial sizes must divide by this: each of its `UNET_LEVELS - 1` poolings halves them.
const UNET_SIZE_STEP: usize = 1 << (UNET_LEVELS - 1);
use crate::{ModelError, Result, UnetrConfig};

/// Which backbone each modality encoder and the shared decoder use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// UNETR (ViT encoder + convolutional skips), as in the MAG-MS paper; 5 fused features.
    #[default]
    Unetr,
    /// The lighter RFNet-style 3-D U-Net; 4 fused features.
    Unet,
}

/// Everything needed to rebuild a MAG-MS network (and to feed it): backbone and sizes, modality
/// names in input order, label preset, patch size and intensity normalisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MagMsConfig {
    /// The backbone.
    pub kind: ModelKind,
    /// Modality names in input order (one encoder each), e.g. `["flair", "t1", "t1ce", "t2"]`.
    pub modalities: Vec<String>,
    /// Output channels (classes, background included).
    pub out_channels: usize,
    /// The network's input size (D, H, W): the training patch and the sliding-window size.
    /// UNETR needs multiples of `vit_patch_size` (16), the U-Net multiples of 8.
    pub patch_size: [usize; 3],
    /// UNETR: channels of the first convolutional level.
    pub feature_size: usize,
    /// UNETR: ViT token width.
    pub hidden_size: usize,
    /// UNETR: ViT MLP width.
    pub mlp_dim: usize,
    /// UNETR: attention heads.
    pub num_heads: usize,
    /// UNETR: transformer blocks (see [`UnetrConfig::num_layers`] for the skip taps).
    pub num_layers: usize,
    /// UNETR: ViT patch side (16).
    pub vit_patch_size: usize,
    /// U-Net: channels of the first level (levels have ×1, ×2, ×4, ×8).
    pub unet_base_channels: usize,
    /// The label preset the classes follow (a magseg-volume preset name), if any.
    pub label_preset: Option<String>,
    /// The intensity normalisation the inputs must have had, e.g. `"zscore_nonzero"`.
    pub normalisation: String,
}

impl Default for MagMsConfig {
    /// The paper's network: UNETR with MONAI's default sizes, the four BraTS modalities, 96³.
    fn default() -> Self {
        let u = UnetrConfig::default();
        Self {
            kind: ModelKind::Unetr,
            modalities: ["flair", "t1", "t1ce", "t2"].map(String::from).to_vec(),
            out_channels: 4,
            patch_size: u.img_size,
            feature_size: u.feature_size,
            hidden_size: u.hidden_size,
            mlp_dim: u.mlp_dim,
            num_heads: u.num_heads,
            num_layers: u.num_layers,
            vit_patch_size: u.patch_size,
            unet_base_channels: 16,
            label_preset: None,
            normalisation: "zscore_nonzero".to_string(),
        }
    }
}

impl MagMsConfig {
    /// The single-channel UNETR configuration of one modality encoder (and of the decoder).
    pub fn unetr_config(&self) -> UnetrConfig {
        UnetrConfig {
            in_channels: 1,
            out_channels: self.out_channels,
            img_size: self.patch_size,
            patch_size: self.vit_patch_size,
            feature_size: self.feature_size,
            hidden_size: self.hidden_size,
            mlp_dim: self.mlp_dim,
            num_heads: self.num_heads,
            num_layers: self.num_layers,
        }
    }

    /// Channels of the fused feature maps, from finest to coarsest (5 for UNETR, 4 for U-Net).
    pub fn feature_channels(&self) -> Vec<usize> {
        match self.kind {
            ModelKind::Unetr => self.unetr_config().feature_channels().to_vec(),
            ModelKind::Unet => unet_channels(self.unet_base_channels).to_vec(),
        }
    }

    /// The spatial sizes (D, H, W) the network accepts: the patch for UNETR (its position
    /// embeddings fix the token grid), any positive multiple of 8 per axis for the fully
    /// convolutional U-Net.
    pub fn accepts_size(&self, size: [usize; 3]) -> bool {
        match self.kind {
            ModelKind::Unetr => size == self.patch_size,
            ModelKind::Unet => size.iter().all(|&s| s > 0 && s % UNET_SIZE_STEP == 0),
        }
    }

    /// The input size (D, H, W) for running a whole volume of `dims` (D, H, W) through the network
    /// at once: each axis rounded up to the U-Net's multiple of 8. UNETR cannot (its input is fixed
    /// to the patch), which is an error.
    pub fn whole_volume_size(&self, dims: [usize; 3]) -> Result<[usize; 3]> {
        match self.kind {
            ModelKind::Unetr => Err(ModelError::Config(
                "whole-volume inference needs the U-Net backbone (UNETR's input is fixed to its patch); \
                 use sliding windows"
                    .into(),
            )),
            ModelKind::Unet => Ok(dims.map(|d| d.max(1).div_ceil(UNET_SIZE_STEP) * UNET_SIZE_STEP)),
        }
    }

    /// Checks that the configuration describes a working network.
    pub fn validate(&self) -> Result<()> {
        if self.modalities.is_empty() {
            return Err(ModelError::Config("at least one modality is needed".into()));
        }
        for (i, m) in self.modalities.iter().enumerate() {
            if m.is_empty() || self.modalities[..i].contains(m) {
                return Err(ModelError::Config(format!(
                    "modality names must be non-empty and unique: {:?}",
                    self.modalities
                )));
            }
        }
        if self.out_channels == 0 {
            return Err(ModelError::Config("out_channels must be positive".into()));
        }
        match self.kind {
            ModelKind::Unetr => self.unetr_config().validate(),
            ModelKind::Unet => {
                if !self.accepts_size(self.patch_size) {
                    return Err(ModelError::Config(format!(
                        "U-Net patch_size {:?} must be positive multiples of {UNET_SIZE_STEP}",
                        self.patch_size
                    )));
                }
                if self.unet_base_channels == 0 {
                    return Err(ModelError::Config("unet_base_channels must be positive".into()));
                }
                Ok(())
            }
        }
    }
}
