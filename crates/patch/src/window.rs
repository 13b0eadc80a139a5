//! Sliding-window inference helpers: MONAI-style window grid, Gaussian importance map, and an
//! accumulator that blends window predictions into a full-volume result.

use rayon::prelude::*;

use crate::{PatchError, Result};

/// Window start positions covering a volume of `dims`, with MONAI's `dense_patch_slices` semantics:
/// per axis the step is `floor(window·(1−overlap))` (at least 1; the window size itself when window
/// equals the volume), starts are `0, step, 2·step, ...` until a window reaches the end, and the last
/// start is moved back so that window ends flush with the volume. Starts are listed like MONAI's, the
/// first axis (i) varying slowest. `overlap` must be in [0, 1). A window larger than the volume on
/// any axis is [`PatchError::TooLarge`] (no padding: pad the volume first).
pub fn window_grid(dims: [usize; 3], window: [usize; 3], overlap: f32) -> Result<Vec<[usize; 3]>> {
    if !(0.0..1.0).contains(&overlap) {
        return Err(PatchError::Config(format!("overlap {overlap} must be in [0, 1)")));
    }
    if window.contains(&0) {
        return Err(PatchError::Config(format!("window {window:?} has a zero axis")));
    }
    if (0..3).any(|a| window[a] > dims[a]) {
        return Err(PatchError::TooLarge { patch: window, dims });
    }
    let axis = |a: usize| -> Vec<usize> {
        let (n, w) = (dims[a], window[a]);
        let step = if w == n { w } else { ((w as f64 * (1.0 - overlap as f64)) as usize).max(1) };
        let mut starts = Vec::new();
        let mut s = 0;
        loop {
            starts.push(s.min(n - w));
            if s + w >= n {
                break;
            }
            s += step;
        }
        starts
    };
    let (si, sj, sk) = (axis(0), axis(1), axis(2));
    let mut out = Vec::with_capacity(si.len() * sj.len() * sk.len());
    for &i in &si {
        for &j in &sj {
            for &k in &sk {
                out.push([i, j, k]);
            }
        }
    }
    Ok(out)
}

/// MONAI's Gaussian importance map for a window: per axis σ = `sigma_scale`·window, centred at
/// `window/2` (integer division, as MONAI), the product over axes normalised to a maximum of 1, and
/// every value clamped up to the smallest non-zero value so no weight is 0. Values use the sampled
/// Gaussian `exp(−d²/2σ²)` (MONAI integrates each voxel with erf; the two differ by < 1 % at
/// σ ≥ 4 voxels). Layout: i fastest.
pub fn gaussian_importance(window: [usize; 3], sigma_scale: f32) -> Vec<f32> {
    let axis = |a: usize| -> Vec<f64> {
        let sigma = (sigma_scale as f64 * window[a] as f64).max(f64::MIN_POSITIVE);
        let c = (window[a] / 2) as f64;
        (0..window[a]).map(|x| (-(x as f64 - c).powi(2) / (2.0 * sigma * sigma)).exp()).collect()
    };
    let (gi, gj, gk) = (axis(0), axis(1), axis(2));
    let mut map = Vec::with_capacity(window.iter().product());
    for &wk in &gk {
        for &wj in &gj {
            for &wi in &gi {
                map.push((wi * wj * wk) as f32);
            }
        }
    }
    let max = map.iter().copied().fold(0.0f32, f32::max);
    if max > 0.0 {
        map.iter_mut().for_each(|v| *v /= max);
    }
    let min_nonzero = map.iter().copied().filter(|v| *v > 0.0).fold(1.0f32, f32::min);
    map.iter_mut().for_each(|v| *v = v.max(min_nonzero));
    map
}

/// Blends `(C, window)` window predictions into a `(C, volume)` result with per-voxel weights.
#[derive(Debug, Clone)]
pub struct Accumulator {
    channels: usize,
    dims: [usize; 3],
    window: [usize; 3],
    importance: Vec<f32>,
    sum: Vec<f32>,
    weight: Vec<f32>,
}

impl Accumulator {
    /// An empty accumulator; `importance` has one weight per window voxel (e.g. from
    /// [`gaussian_importance`], or all ones for plain averaging).
    pub fn new(channels: usize, dims: [usize; 3], window: [usize; 3], importance: Vec<f32>) -> Result<Self> {
        let (n, w): (usize, usize) = (dims.iter().product(), window.iter().product());
        if channels == 0 || w == 0 || importance.len() != w {
            return Err(PatchError::Shape(format!(
                "{channels} channel(s), window {window:?} and {} importance values",
                importance.len()
            )));
        }
        if (0..3).any(|a| window[a] > dims[a]) {
            return Err(PatchError::TooLarge { patch: window, dims });
        }
        Ok(Self { channels, dims, window, importance, sum: vec![0.0; n * channels], weight: vec![0.0; n] })
    }

    /// Add the prediction `pred` (`channels * prod(window)` values, i fastest) of the window at `start`.
    pub fn add(&mut self, start: [usize; 3], pred: &[f32]) -> Result<()> {
        let (d, w) = (self.dims, self.window);
        let wn: usize = w.iter().product();
        if pred.len() != wn * self.channels {
            return Err(PatchError::Shape(format!(
                "window prediction has {} values, expected {}",
                pred.len(),
                wn * self.channels
            )));
        }
        if (0..3).any(|a| start[a] + w[a] > d[a]) {
            return Err(PatchError::Shape(format!("window at {start:?} of size {w:?} leaves the volume {d:?}")));
        }
        let n: usize = d.iter().product();
        let imp = &self.importance;
        // Weights once per window; then the channels of the sum in parallel (one task per channel).
        let weight = &mut self.weight;
        for k in 0..w[2] {
            for j in 0..w[1] {
                let (src, dst) = (w[0] * (j + w[1] * k), start[0] + d[0] * (start[1] + j + d[1] * (start[2] + k)));
                for i in 0..w[0] {
                    weight[dst + i] += imp[src + i];
                }
            }
        }
        self.sum.par_chunks_mut(n).zip(pred.par_chunks(wn)).for_each(|(out, p)| {
            for k in 0..w[2] {
                for j in 0..w[1] {
                    let (src, dst) = (w[0] * (j + w[1] * k), start[0] + d[0] * (start[1] + j + d[1] * (start[2] + k)));
                    for i in 0..w[0] {
                        out[dst + i] += p[src + i] * imp[src + i];
                    }
                }
            }
        });
        Ok(())
    }

    /// The blended `(C, volume)` result, sum / weight. A voxel no window covered is a
    /// [`PatchError::Shape`] error.
    pub fn finish(self) -> Result<Vec<f32>> {
        let n = self.weight.len();
        if let Some(v) = self.weight.iter().position(|w| *w <= 0.0) {
            return Err(PatchError::Shape(format!("voxel {v} of {:?} is covered by no window", self.dims)));
        }
        let mut out = self.sum;
        out.par_chunks_mut(n).for_each(|ch| ch.iter_mut().zip(&self.weight).for_each(|(s, w)| *s /= w));
        Ok(out)
    }
}
