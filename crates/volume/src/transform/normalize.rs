//! Intensity normalisation: per-channel z-score over the non-zero voxels (MONAI
//! `NormalizeIntensity(nonzero=True, channel_wise=True)`), statistics accumulated in f64.

use rayon::prelude::*;

use super::checked_len;
use crate::volume::Image;

/// Voxels per parallel work item.
const CHUNK: usize = 1 << 16;

/// Mean and population standard deviation of one channel's non-zero voxels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChannelStats {
    /// Number of non-zero voxels.
    pub count: usize,
    /// Their mean (0 when `count` is 0).
    pub mean: f64,
    /// Their population standard deviation (ddof 0; 0 when `count` is 0).
    pub std: f64,
}

/// Statistics of the non-zero voxels of one channel: two passes (mean, then squared deviations) in
/// f64, parallel over chunks.
fn stats(ch: &[f32]) -> ChannelStats {
    let (count, sum) = ch
        .par_chunks(CHUNK)
        .map(|c| c.iter().filter(|&&v| v != 0.0).fold((0usize, 0.0f64), |(n, s), &v| (n + 1, s + f64::from(v))))
        .reduce(|| (0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    if count == 0 {
        return ChannelStats { count, mean: 0.0, std: 0.0 };
    }
    let mean = sum / count as f64;
    let ss: f64 = ch
        .par_chunks(CHUNK)
        .map(|c| {
            c.iter()
                .filter(|&&v| v != 0.0)
                .map(|&v| {
                    let d = f64::from(v) - mean;
                    d * d
                })
                .sum::<f64>()
        })
        .sum();
    ChannelStats { count, mean, std: (ss / count as f64).sqrt() }
}

/// Mean and population standard deviation of the non-zero voxels of each channel (NaN voxels count
/// as non-zero and make the statistics NaN). Channels beyond the data (an inconsistent volume) are
/// left out.
pub fn nonzero_stats(img: &Image) -> Vec<ChannelStats> {
    let Some(n) = checked_len(img.geometry.dims) else {
        return Vec::new();
    };
    if n == 0 {
        return vec![ChannelStats { count: 0, mean: 0.0, std: 0.0 }; img.channels];
    }
    img.data.chunks_exact(n).take(img.channels).map(stats).collect()
}

/// Z-score each channel over its non-zero voxels: `v ← (v − mean) / std` for non-zero voxels only,
/// with mean and population std (ddof 0) of that channel's non-zero voxels; zero voxels stay 0.
///
/// A channel without any non-zero voxel is left unchanged; when std is 0 only the mean is subtracted.
/// This is MONAI's `NormalizeIntensity(nonzero=True, channel_wise=True)`.
pub fn zscore_nonzero(img: &mut Image) {
    let all = nonzero_stats(img);
    let n = checked_len(img.geometry.dims).unwrap_or(0);
    if n == 0 {
        return;
    }
    for (ch, s) in img.data.chunks_exact_mut(n).zip(all) {
        if s.count == 0 {
            continue;
        }
        let scale = if s.std > 0.0 { 1.0 / s.std } else { 1.0 };
        let mean = s.mean;
        ch.par_chunks_mut(CHUNK).for_each(|c| {
            for v in c.iter_mut().filter(|v| **v != 0.0) {
                *v = ((f64::from(*v) - mean) * scale) as f32;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Geometry, Volume};

    #[test]
    fn matches_hand_computed_values() {
        // Channel 0: non-zero {1, 2, 3, 6} → mean 3, population std sqrt(3.5).
        // Channel 1: all zero → unchanged. Channel 2: constant 5 → minus mean only.
        let g = Geometry::from_spacing([3, 2, 1], [1.0; 3]);
        let data = vec![
            0.0, 1.0, 2.0, 0.0, 3.0, 6.0, //
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0, //
            5.0, 0.0, 5.0, 5.0, 0.0, 5.0,
        ];
        let mut img = Volume::new(data, g, 3).unwrap();
        zscore_nonzero(&mut img);
        let sd = 3.5f64.sqrt();
        let want =
            [0.0, -2.0 / sd, -1.0 / sd, 0.0, 0.0, 3.0 / sd, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        for (i, (&got, &w)) in img.data.iter().zip(want.iter()).enumerate() {
            assert!((f64::from(got) - w).abs() < 1e-6, "{i}: {got} vs {w}");
        }
    }
}
