//! Sliding-window inference of a whole preprocessed volume for any modality subset: zero padding up
//! to the window, the window grid and Gaussian blending of magseg-patch, softmax probabilities
//! averaged over windows, and the arg-max class map. `magseg predict` and validation share it.

use candle_core::{DType, Device, Tensor};
use magseg_distill::Subset;
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
    /// Run the whole volume (zero-padded to the U-Net's multiple of 8) through the network at once
    /// instead of sliding patch-sized windows (U-Net only; the other fields are then unused). The
    /// PyTorch accuracy peer evaluates this way.
    pub whole: bool,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self { overlap: 0.5, sigma_scale: 0.125, windows_per_batch: 1, whole: false }
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
    let subset: Subset = (input.slots.iter().enumerate()).filter(|(_, s)| s.is_some()).map(|(m, _)| 1u32 << m).sum();
    let mut out = sliding_window_subsets(model, input, &[subset], cfg, &mut |_, _| {})?;
    Ok(out.pop().unwrap_or_default())
}

/// Per-class probabilities `(classes, k, j, i)` of `input` for each of `subsets` (bit m = model
/// modality m), in one sweep: every window is encoded once per modality that some subset uses, and
/// each subset decodes the mean of its members' features. Every modality of a subset must have a
/// slot. `progress(done, total)` is called after each group of windows.
pub fn sliding_window_subsets(
    model: &MagMs,
    input: InferInput,
    subsets: &[Subset],
    cfg: &WindowConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Vec<f32>>> {
    cfg.validate()?;
    let mc = model.config();
    let n_mod = mc.modalities.len();
    if input.slots.len() != n_mod {
        return Err(TrainError::Config(format!("{} modality slots for a {n_mod}-modality model", input.slots.len())));
    }
    let used: Subset = subsets.iter().fold(0, |a, s| a | s);
    if subsets.is_empty() || subsets.contains(&0) {
        return Err(magseg_model::ModelError::NoModality { expected: n_mod }.into());
    }
    for m in 0..32 {
        if used & (1 << m) != 0 && input.slots.get(m).is_none_or(|s| s.is_none()) {
            let name = mc.modalities.get(m).map(String::as_str).unwrap_or("?");
            return Err(TrainError::Data(format!("modality {name} is needed but not given")));
        }
    }
    let dims = input.dims;
    let n: usize = dims.iter().product();
    let channels = input.image.len() / n.max(1);
    if n == 0 || input.image.len() != channels * n || input.slots.iter().flatten().any(|&c| c >= channels) {
        return Err(TrainError::Data(format!("image of {} values does not fit dims {dims:?}", input.image.len())));
    }
    // Model patch (D, H, W) = (k, j, i); for the whole volume, its grid rounded up for the network.
    let window = if cfg.whole {
        let size = mc.whole_volume_size([dims[2], dims[1], dims[0]])?;
        [size[2], size[1], size[0]]
    } else {
        [mc.patch_size[2], mc.patch_size[1], mc.patch_size[0]]
    };
    let padded = [0, 1, 2].map(|a| dims[a].max(window[a]));
    let np: usize = padded.iter().product();
    let _span = tracing::debug_span!("sliding_window", ?dims, ?window, subsets = subsets.len()).entered();
    // Zero-pad (at the end of each axis) every channel some subset uses.
    let chans: Vec<Option<Vec<f32>>> = (0..n_mod)
        .map(|m| match input.slots[m] {
            Some(c) if used & (1 << m) != 0 => Some(pad(&input.image[c * n..(c + 1) * n], dims, padded)),
            _ => None,
        })
        .collect();
    let classes = mc.out_channels;
    let importance = gaussian_importance(window, cfg.sigma_scale);
    let mut accs = (0..subsets.len())
        .map(|_| Accumulator::new(classes, padded, window, importance.clone()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let starts = window_grid(padded, window, cfg.overlap)?;
    let wn: usize = window.iter().product();
    let device = model.device().clone();
    // Detached parameters: no autograd graph, so each window's activations are freed as it goes.
    let model = &model.frozen()?;
    let mut done = 0;
    for group in starts.chunks(cfg.windows_per_batch) {
        let mut feats: Vec<Option<Vec<Tensor>>> = vec![None; n_mod];
        for (m, ch) in chans.iter().enumerate() {
            if let Some(vol) = ch {
                let x = {
                    let _span = tracing::debug_span!("window_upload").entered();
                    let mut buf = Vec::with_capacity(group.len() * wn);
                    for s in group {
                        extract(vol, padded, *s, window, &mut buf);
                    }
                    let shape = (group.len(), 1, window[2], window[1], window[0]);
                    Tensor::from_vec(buf, shape, &Device::Cpu)?.to_device(&device)?
                };
                let _span = tracing::debug_span!("window_encode").entered();
                feats[m] = Some(model.encode(m, &x)?);
            }
        }
        for (si, &s) in subsets.iter().enumerate() {
            let logits = {
                let _span = tracing::debug_span!("window_decode").entered();
                let members: Vec<Vec<Tensor>> =
                    (0..n_mod).filter(|m| s & (1 << m) != 0).filter_map(|m| feats[m].clone()).collect();
                let fused = magseg_model::mean_features(&members)?;
                model.decode(&fused)?
            };
            let probs = {
                let _span = tracing::debug_span!("window_download").entered();
                let probs = candle_nn::ops::softmax(&logits, 1)?.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
                probs.flatten_all()?.to_vec1::<f32>()?
            };
            let _span = tracing::debug_span!("window_accumulate").entered();
            for (b, start) in group.iter().enumerate() {
                accs[si].add(*start, &probs[b * classes * wn..(b + 1) * classes * wn])?;
            }
        }
        done += group.len();
        progress(done, starts.len());
    }
    let mut results = Vec::with_capacity(subsets.len());
    for acc in accs {
        let full = acc.finish()?;
        if padded == dims {
            results.push(full);
            continue;
        }
        let mut out = Vec::with_capacity(classes * n);
        for c in 0..classes {
            extract(&full[c * np..(c + 1) * np], padded, [0; 3], dims, &mut out);
        }
        results.push(out);
    }
    Ok(results)
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
