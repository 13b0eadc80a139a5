//! Sliding-window inference of a whole preprocessed volume for any modality subset: zero padding up
//! to the window, the window grid and Gaussian blending of magseg-patch, softmax probabilities
//! averaged over windows, and the arg-max class map. `magseg predict` and validation share it.

use candle_core::{DType, Device, Tensor};
use magseg_model::MagMs;
use magseg_patch::{gaussian_importance, window_grid, Accumulator};
use serde::{Deserialize, Serialize};

use crate::{Result, TrainError};

/// Sliding-window settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowConfig {
    /// Fraction of the window shared by neighbouring windows, in [0, 1) (MONAI's default 0.25;
    /// the reference uses 0.5).
    pub overlap: f32,
    /// σ of the Gaussian importance map as a fraction of the window (MONAI's 0.125).
    pub sigma_scale: f32,
    /// Windows run through the network at once.
    pub windows_per_batch: usize,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self { overlap: 0.5, sigma_scale: 0.125, windows_per_batch: 1 }
    }
}

impl WindowConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.overlap) {
            return Err(TrainError::Config(format!("overlap {} must be in [0, 1)", self.overlap)));
        }
        if !(self.sigma_scale.is_finite() && self.sigma_scale > 0.0) {
            return Err(TrainError::Config(format!("sigma_scale {} must be > 0", self.sigma_scale)));
        }
        if self.windows_per_batch == 0 {
            return Err(TrainError::Config("windows_per_batch must be ≥ 1".into()));
        }
        Ok(())
    }
}

/// The images of one case for inference: `channels` modalities of `dims` (i, j, k) voxels each,
/// channel after channel in NIfTI order, where `present[m]` says whether model input `m` is given
/// and `slots[m]` which channel holds it.
#[derive(Debug, Clone, Copy)]
pub struct InferInput<'a> {
    /// Grid size (i, j, k).
    pub dims: [usize; 3],
    /// The stacked images.
    pub image: &'a [f32],
    /// For each model modality, the channel of `image` holding it, or `None` when absent.
    pub slots: &'a [Option<usize>],
}

/// Per-class probabilities `(classes, k, j, i)` of `input` for the present modalities.
pub fn sliding_window_probs(model: &MagMs, input: InferInput, cfg: &WindowConfig) -> Result<Vec<f32>> {
    cfg.validate()?;
    let mc = model.config();
    let n_mod = mc.modalities.len();
    if input.slots.len() != n_mod {
        return Err(TrainError::Config(format!("{} modality slots for a {n_mod}-modality model", input.slots.len())));
    }
    if input.slots.iter().all(Option::is_none) {
        return Err(magseg_model::ModelError::NoModality { expected: n_mod }.into());
    }
    let dims = input.dims;
    let n: usize = dims.iter().product();
    let channels = input.image.len() / n.max(1);
    if n == 0 || input.image.len() != channels * n || input.slots.iter().flatten().any(|&c| c >= channels) {
        return Err(TrainError::Data(format!("image of {} values does not fit dims {dims:?}", input.image.len())));
    }
    // Model patch (D, H, W) = (k, j, i).
    let window = [mc.patch_size[2], mc.patch_size[1], mc.patch_size[0]];
    let padded = [0, 1, 2].map(|a| dims[a].max(window[a]));
    let np: usize = padded.iter().product();
    let _span = tracing::debug_span!("sliding_window", ?dims, ?window).entered();
    // Zero-pad (at the end of each axis) every present channel.
    let mut chans: Vec<Option<Vec<f32>>> = Vec::with_capacity(n_mod);
    for slot in input.slots {
        chans.push(slot.map(|c| pad(&input.image[c * n..(c + 1) * n], dims, padded)));
    }
    let classes = mc.out_channels;
    let mut acc = Accumulator::new(classes, padded, window, gaussian_importance(window, cfg.sigma_scale))?;
    let starts = window_grid(padded, window, cfg.overlap)?;
    let wn: usize = window.iter().product();
    let device = model.device().clone();
    for group in starts.chunks(cfg.windows_per_batch) {
        let mut inputs: Vec<Option<Tensor>> = Vec::with_capacity(n_mod);
        for ch in &chans {
            inputs.push(match ch {
                None => None,
                Some(vol) => {
                    let mut buf = Vec::with_capacity(group.len() * wn);
                    for s in group {
                        extract(vol, padded, *s, window, &mut buf);
                    }
                    let shape = (group.len(), 1, window[2], window[1], window[0]);
                    Some(Tensor::from_vec(buf, shape, &Device::Cpu)?.to_device(&device)?)
                }
            });
        }
        let logits = model.predict(&inputs)?;
        let probs = candle_nn::ops::softmax(&logits, 1)?.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
        let probs = probs.flatten_all()?.to_vec1::<f32>()?;
        for (b, s) in group.iter().enumerate() {
            acc.add(*s, &probs[b * classes * wn..(b + 1) * classes * wn])?;
        }
    }
    let full = acc.finish()?;
    if padded == dims {
        return Ok(full);
    }
    let mut out = Vec::with_capacity(classes * n);
    for c in 0..classes {
        extract(&full[c * np..(c + 1) * np], padded, [0; 3], dims, &mut out);
    }
    Ok(out)
}

/// The arg-max class of each voxel of `(classes, voxels)` probabilities (ties: the lower class).
pub fn argmax_classes(probs: &[f32], classes: usize) -> Vec<u8> {
    let n = probs.len() / classes.max(1);
    (0..n)
        .map(|v| {
            let mut best = 0;
            for c in 1..classes {
                if probs[c * n + v] > probs[best * n + v] {
                    best = c;
                }
            }
            best as u8
        })
        .collect()
}

/// Copies a `size` box starting at `start` out of a volume of `dims` (i fastest) onto `out`.
fn extract(vol: &[f32], dims: [usize; 3], start: [usize; 3], size: [usize; 3], out: &mut Vec<f32>) {
    for k in 0..size[2] {
        for j in 0..size[1] {
            let base = start[0] + dims[0] * (start[1] + j + dims[1] * (start[2] + k));
            out.extend_from_slice(&vol[base..base + size[0]]);
        }
    }
}

/// Zero-pads a volume of `dims` at the end of each axis to `padded`.
fn pad(vol: &[f32], dims: [usize; 3], padded: [usize; 3]) -> Vec<f32> {
    if dims == padded {
        return vol.to_vec();
    }
    let mut out = vec![0f32; padded.iter().product()];
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            let src = dims[0] * (j + dims[1] * k);
            let dst = padded[0] * (j + padded[1] * k);
            out[dst..dst + dims[0]].copy_from_slice(&vol[src..src + dims[0]]);
        }
    }
    out
}
