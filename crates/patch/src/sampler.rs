//! Positive/negative-biased random crops (MONAI `RandCropByPosNegLabel` semantics) plus augmentation.

use serde::{Deserialize, Serialize};

use crate::{AugmentConfig, CaseData, PatchError, Result, Rng};

/// Training patch sampling settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplerConfig {
    /// Patch size along (i, j, k).
    pub patch: [usize; 3],
    /// Relative weight of crops centred on a foreground voxel.
    pub pos: f32,
    /// Relative weight of crops centred on a background voxel inside the brain.
    pub neg: f32,
    /// Augmentations applied after cropping.
    pub augment: AugmentConfig,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self { patch: [96, 96, 96], pos: 1.0, neg: 1.0, augment: AugmentConfig::default() }
    }
}

/// One training patch, channels first `(C, nk, nj, ni)` in NIfTI order (i fastest).
#[derive(Debug, Clone, PartialEq)]
pub struct Patch {
    /// Intensities, `channels * prod(size)` values.
    pub image: Vec<f32>,
    /// Class indices, `prod(size)` values.
    pub labels: Vec<u8>,
    /// Number of image channels.
    pub channels: usize,
    /// Patch size (i, j, k).
    pub size: [usize; 3],
    /// Index of the source case in its [`crate::CaseCache`] (0 when sampled directly).
    pub case: usize,
    /// Corner (i, j, k) of the crop in the case grid, before augmentation.
    pub origin: [usize; 3],
}

/// Draws augmented patches from cached cases.
#[derive(Debug, Clone)]
pub struct PatchSampler {
    config: SamplerConfig,
}

impl PatchSampler {
    /// Check and keep `config`: patch sizes ≥ 1, `pos`, `neg` finite, ≥ 0 and not both 0.
    pub fn new(config: SamplerConfig) -> Result<Self> {
        if config.patch.contains(&0) {
            return Err(PatchError::Config(format!("patch size {:?} has a zero axis", config.patch)));
        }
        let ok = |w: f32| w.is_finite() && w >= 0.0;
        if !ok(config.pos) || !ok(config.neg) || config.pos + config.neg <= 0.0 {
            return Err(PatchError::Config(format!(
                "pos/neg weights {} / {} must be finite, ≥ 0 and not both 0",
                config.pos, config.neg
            )));
        }
        config.augment.validate()?;
        Ok(Self { config })
    }

    /// The configuration.
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Crop one patch from `case` and augment it. With probability pos/(pos+neg) the centre is a random
    /// foreground voxel, otherwise a random background voxel inside the brain (some channel non-zero);
    /// when the wanted kind is absent the other kind is used, and with neither any voxel. The crop is
    /// shifted to lie inside the volume. A patch larger than the volume on any axis is
    /// [`PatchError::TooLarge`] (no padding: pad during preprocessing).
    pub fn sample(&self, case: &CaseData, rng: &mut Rng) -> Result<Patch> {
        let (p, dims) = (self.config.patch, case.dims);
        if (0..3).any(|a| p[a] > dims[a]) {
            return Err(PatchError::TooLarge { patch: p, dims });
        }
        let positive = rng.chance(self.config.pos / (self.config.pos + self.config.neg));
        let (first, second) =
            if positive { (&case.foreground, &case.background) } else { (&case.background, &case.foreground) };
        let list = if first.is_empty() { second } else { first };
        let pick = rng.below(if list.is_empty() { case.voxels() } else { list.len() });
        let centre = if list.is_empty() { pick } else { list[pick] as usize };
        let c = [centre % dims[0], (centre / dims[0]) % dims[1], centre / (dims[0] * dims[1])];
        let origin: [usize; 3] = std::array::from_fn(|a| c[a].saturating_sub(p[a] / 2).min(dims[a] - p[a]));
        let (mut image, mut labels) = crop(case, origin, p);
        self.config.augment.apply(rng, p, case.channels, &mut image, &mut labels);
        Ok(Patch { image, labels, channels: case.channels, size: p, case: 0, origin })
    }
}

/// Copy the `size` block at `origin` (which must fit) of every channel and of the labels.
fn crop(case: &CaseData, origin: [usize; 3], size: [usize; 3]) -> (Vec<f32>, Vec<u8>) {
    let d = case.dims;
    let n = case.voxels();
    let mut image = Vec::with_capacity(case.channels * size.iter().product::<usize>());
    let mut labels = Vec::with_capacity(size.iter().product());
    for c in 0..=case.channels {
        for k in origin[2]..origin[2] + size[2] {
            for j in origin[1]..origin[1] + size[1] {
                let start = origin[0] + d[0] * (j + d[1] * k);
                if c < case.channels {
                    image.extend_from_slice(&case.image[c * n + start..c * n + start + size[0]]);
                } else {
                    labels.extend_from_slice(&case.labels[start..start + size[0]]);
                }
            }
        }
    }
    (image, labels)
}
