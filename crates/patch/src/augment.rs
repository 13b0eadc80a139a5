//! Patch augmentations: axis flips, rot90 in an axis plane, per-channel intensity scale and shift.
//! Spatial transforms move image and label voxels together, so they always stay aligned.

use serde::{Deserialize, Serialize};

use crate::{PatchError, Result, Rng};

/// Which augmentations run, and how often. The defaults follow the MAG-MS reference: flips on each
/// axis with p 0.5, rot90 with p 0.1, intensity scale and shift of ±0.1 each with p 0.5.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Probability of flipping along each of the three axes (drawn independently per axis).
    pub flip_p: f32,
    /// Probability of a rot90 (k ∈ {1, 2, 3} quarter turns) in a random axis plane whose two patch
    /// sizes are equal; skipped when no plane qualifies.
    pub rot90_p: f32,
    /// Probability, per channel, of multiplying intensities by `1 + u·scale` (u uniform in [-1, 1)).
    pub scale_p: f32,
    /// Maximum relative scale change.
    pub scale: f32,
    /// Probability, per channel, of adding `u·shift` (u uniform in [-1, 1)).
    pub shift_p: f32,
    /// Maximum shift (in z-score units after normalisation).
    pub shift: f32,
    /// When true (default), intensity changes touch only non-zero voxels, so the zero background
    /// outside the brain stays zero (MONAI's transforms change every voxel; set false for that).
    pub nonzero_only: bool,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self { flip_p: 0.5, rot90_p: 0.1, scale_p: 0.5, scale: 0.1, shift_p: 0.5, shift: 0.1, nonzero_only: true }
    }
}

impl AugmentConfig {
    /// No augmentation at all.
    pub fn none() -> Self {
        Self { flip_p: 0.0, rot90_p: 0.0, scale_p: 0.0, scale: 0.0, shift_p: 0.0, shift: 0.0, nonzero_only: true }
    }

    /// Error unless probabilities are in [0, 1] and magnitudes finite and non-negative.
    pub fn validate(&self) -> Result<()> {
        for (name, p) in
            [("flip_p", self.flip_p), ("rot90_p", self.rot90_p), ("scale_p", self.scale_p), ("shift_p", self.shift_p)]
        {
            if !(0.0..=1.0).contains(&p) {
                return Err(PatchError::Config(format!("{name} = {p} is not a probability")));
            }
        }
        for (name, m) in [("scale", self.scale), ("shift", self.shift)] {
            if !m.is_finite() || m < 0.0 {
                return Err(PatchError::Config(format!("{name} = {m} must be finite and ≥ 0")));
            }
        }
        Ok(())
    }

    /// Apply the configured augmentations in place to a patch of `size` with `channels` image channels
    /// (`image.len() == channels * prod(size)`, `labels.len() == prod(size)`). The random draws are
    /// always made in the same order, so the result depends only on the generator state.
    pub fn apply(&self, rng: &mut Rng, size: [usize; 3], channels: usize, image: &mut Vec<f32>, labels: &mut Vec<u8>) {
        for axis in 0..3 {
            if rng.chance(self.flip_p) {
                remap(size, channels, image, labels, |mut c| {
                    c[axis] = size[axis] - 1 - c[axis];
                    c
                });
            }
        }
        if rng.chance(self.rot90_p) {
            let planes: Vec<(usize, usize)> =
                [(0, 1), (0, 2), (1, 2)].into_iter().filter(|&(a, b)| size[a] == size[b]).collect();
            let plane = rng.below(planes.len());
            let turns = 1 + rng.below(3);
            if let Some(&(a, b)) = planes.get(plane) {
                for _ in 0..turns {
                    rot90(size, channels, image, labels, a, b);
                }
            }
        }
        let n: usize = size.iter().product();
        for c in 0..channels {
            let scale = if rng.chance(self.scale_p) { 1.0 + rng.symmetric() * self.scale } else { 1.0 };
            let shift = if rng.chance(self.shift_p) { rng.symmetric() * self.shift } else { 0.0 };
            if scale == 1.0 && shift == 0.0 {
                continue;
            }
            for v in &mut image[c * n..(c + 1) * n] {
                if !self.nonzero_only || *v != 0.0 {
                    *v = *v * scale + shift;
                }
            }
        }
    }
}

/// One quarter turn in plane (a, b) (equal sizes): destination (.., x_a, .., x_b) takes source
/// (.., n−1−x_b, .., x_a).
pub fn rot90(size: [usize; 3], channels: usize, image: &mut Vec<f32>, labels: &mut Vec<u8>, a: usize, b: usize) {
    remap(size, channels, image, labels, |d| {
        let mut s = d;
        s[a] = size[b] - 1 - d[b];
        s[b] = d[a];
        s
    });
}

/// Rebuild image and labels so that destination voxel `d` holds source voxel `source(d)` (a
/// permutation of the grid).
fn remap(
    size: [usize; 3],
    channels: usize,
    image: &mut Vec<f32>,
    labels: &mut Vec<u8>,
    source: impl Fn([usize; 3]) -> [usize; 3],
) {
    let n: usize = size.iter().product();
    let mut table = Vec::with_capacity(n);
    for k in 0..size[2] {
        for j in 0..size[1] {
            for i in 0..size[0] {
                let s = source([i, j, k]);
                table.push(s[0] + size[0] * (s[1] + size[1] * s[2]));
            }
        }
    }
    let new_labels: Vec<u8> = table.iter().map(|&s| labels[s]).collect();
    let mut new_image = Vec::with_capacity(image.len());
    for c in 0..channels {
        let ch = &image[c * n..(c + 1) * n];
        new_image.extend(table.iter().map(|&s| ch[s]));
    }
    *image = new_image;
    *labels = new_labels;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_quarter_turns_are_identity() {
        let size = [3, 3, 2];
        let mut img: Vec<f32> = (0..18).map(|v| v as f32).collect();
        let mut lab: Vec<u8> = (0..18).collect();
        let (i0, l0) = (img.clone(), lab.clone());
        rot90(size, 1, &mut img, &mut lab, 0, 1);
        assert_ne!(img, i0);
        for _ in 0..3 {
            rot90(size, 1, &mut img, &mut lab, 0, 1);
        }
        assert_eq!((img, lab), (i0, l0));
    }

    #[test]
    fn bad_probability_rejected() {
        let cfg = AugmentConfig { flip_p: 1.5, ..AugmentConfig::default() };
        assert!(cfg.validate().is_err());
    }
}
