//! Prediction with a trained model: the training preprocessing, sliding-window inference for one or
//! many modality subsets (optionally averaged over mirrored inputs), and the result brought back to
//! the original grid of the inputs with the data set's own label values.

use std::path::Path;

use candle_core::Device;
use magseg_distill::{members, Subset};
use magseg_model::MagMs;
use magseg_volume::{Image, LabelMap, LabelPreset, Volume};

use crate::infer::{argmax_classes, sliding_window_subsets, InferInput, WindowConfig};
use crate::preprocess::{preprocess, Preprocess};
use crate::{Result, TrainError};

/// A trained model ready to predict: the network, its preprocessing and its label preset.
#[derive(Debug)]
pub struct Predictor {
    model: MagMs,
    preprocess: Preprocess,
    preset: LabelPreset,
}

/// Prediction settings.
#[derive(Debug, Clone, Default)]
pub struct PredictOptions {
    /// Sliding-window settings.
    pub window: WindowConfig,
    /// Average over the 8 mirrorings of the three axes (8× the work).
    pub mirror: bool,
    /// Also return the per-class probabilities.
    pub probabilities: bool,
}

/// One subset's result on the inputs' original grid.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// The modalities used (bit m = model modality m).
    pub subset: Subset,
    /// Class indices (0 = background), on the original grid.
    pub classes: Vec<u8>,
    /// The label map in the data set's values (e.g. BraTS 0/1/2/4), original grid and header.
    pub labels: LabelMap,
    /// Per-class probabilities, when asked for.
    pub probabilities: Option<Image>,
}

impl Predictor {
    /// Loads a model directory (`best/` or `last/` of a run): weights, `config.json`,
    /// `preprocess.json` (absent: no resampling) and the label preset named in the config.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        if !dir.join(magseg_model::CONFIG_FILE).is_file() {
            return Err(TrainError::Checkpoint {
                path: dir.to_path_buf(),
                reason: format!("not a model directory (no {})", magseg_model::CONFIG_FILE),
            });
        }
        let model = MagMs::load(dir, device)?;
        let preprocess = Preprocess::load(dir)?;
        let name = model.config().label_preset.clone().ok_or_else(|| TrainError::Checkpoint {
            path: dir.to_path_buf(),
            reason: "the model's config.json names no label preset".into(),
        })?;
        let preset = LabelPreset::named(&name)?;
        if preset.num_classes() != model.config().out_channels {
            return Err(TrainError::Checkpoint {
                path: dir.to_path_buf(),
                reason: format!(
                    "preset {name} has {} classes, the model {}",
                    preset.num_classes(),
                    model.config().out_channels
                ),
            });
        }
        Ok(Self { model, preprocess, preset })
    }

    /// Computes in `precision` from now on (f32 after [`Predictor::load`]; `tf32` holds for the
    /// whole process, see [`crate::Precision::apply`]).
    pub fn set_precision(&mut self, precision: crate::Precision) -> Result<()> {
        precision.apply()?;
        Ok(self.model.set_compute_dtype(precision.dtype())?)
    }

    /// The network.
    pub fn model(&self) -> &MagMs {
        &self.model
    }

    /// The model's modality names, in input order.
    pub fn modalities(&self) -> &[String] {
        &self.model.config().modalities
    }

    /// The label preset.
    pub fn preset(&self) -> &LabelPreset {
        &self.preset
    }

    /// The subset mask of the named modalities; unknown or repeated names are errors.
    pub fn subset_of(&self, names: &[&str]) -> Result<Subset> {
        let mut s: Subset = 0;
        for name in names {
            let m = self.modalities().iter().position(|x| x == name).ok_or_else(|| {
                TrainError::Data(format!(
                    "the model knows no modality '{name}' (it has {})",
                    self.modalities().join(", ")
                ))
            })?;
            if s & (1 << m) != 0 {
                return Err(TrainError::Data(format!("modality '{name}' is given twice")));
            }
            s |= 1 << m;
        }
        if s == 0 {
            return Err(magseg_model::ModelError::NoModality { expected: self.modalities().len() }.into());
        }
        Ok(s)
    }

    /// Predicts from all given `inputs` (modality name, image; one grid).
    pub fn predict(
        &self,
        inputs: &[(String, Image)],
        opts: &PredictOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Prediction> {
        let names: Vec<&str> = inputs.iter().map(|(n, _)| n.as_str()).collect();
        let s = self.subset_of(&names)?;
        let mut out = self.predict_subsets(inputs, &[s], opts, progress)?;
        out.pop().ok_or_else(|| TrainError::Data("no prediction".into()))
    }

    /// Predicts every subset of `subsets` from `inputs` in one sweep (each modality's encoder runs
    /// once per window for all subsets). Every subset's modalities must be among the inputs.
    pub fn predict_subsets(
        &self,
        inputs: &[(String, Image)],
        subsets: &[Subset],
        opts: &PredictOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<Prediction>> {
        let names: Vec<&str> = inputs.iter().map(|(n, _)| n.as_str()).collect();
        let given = self.subset_of(&names)?;
        for &s in subsets {
            if s == 0 || s & !given != 0 {
                return Err(TrainError::Data(format!(
                    "subset {:?} needs modalities that are not given",
                    members(s)
                        .iter()
                        .map(|&m| self.modalities().get(m).cloned().unwrap_or_default())
                        .collect::<Vec<_>>()
                )));
            }
        }
        let refs: Vec<(&str, &Image)> = inputs.iter().map(|(n, i)| (n.as_str(), i)).collect();
        let prepared = preprocess(&refs, &self.preprocess)?;
        let dims = prepared.dims;
        let n: usize = dims.iter().product();
        let mut image = Vec::with_capacity(n * inputs.len());
        let mut slots = vec![None; self.modalities().len()];
        for (c, ((name, _), img)) in inputs.iter().zip(&prepared.images).enumerate() {
            image.extend_from_slice(&img.data);
            let m = self.modalities().iter().position(|x| x == name).unwrap_or(0);
            slots[m] = Some(c);
        }
        let classes = self.model.config().out_channels;
        let flips: Vec<[bool; 3]> =
            if opts.mirror { (0..8).map(|f| [f & 1 != 0, f & 2 != 0, f & 4 != 0]).collect() } else { vec![[false; 3]] };
        let total_passes = flips.len();
        let mut sums: Option<Vec<Vec<f32>>> = None;
        for (pass, flip) in flips.iter().enumerate() {
            let img = flip_channels(&image, dims, *flip);
            let input = InferInput { dims, image: &img, slots: &slots };
            let mut step = |done: usize, total: usize| progress(pass * total + done, total * total_passes);
            let probs = sliding_window_subsets(&self.model, input, subsets, &opts.window, &mut step)?;
            let probs: Vec<Vec<f32>> = probs.into_iter().map(|p| flip_channels(&p, dims, *flip)).collect();
            sums = Some(match sums {
                None => probs,
                Some(mut acc) => {
                    for (a, p) in acc.iter_mut().zip(&probs) {
                        a.iter_mut().zip(p).for_each(|(x, y)| *x += y);
                    }
                    acc
                }
            });
        }
        let mut sums = sums.unwrap_or_default();
        let k = flips.len() as f32;
        let mut out = Vec::with_capacity(subsets.len());
        for (&s, probs) in subsets.iter().zip(sums.iter_mut()) {
            if k > 1.0 {
                probs.iter_mut().for_each(|x| *x /= k);
            }
            let back = prepared.inverse.probs_back(probs, classes)?;
            let cls = argmax_classes(&back.data, classes);
            let labels = Volume {
                data: self.preset.from_classes(&cls),
                geometry: back.geometry.clone(),
                channels: 1,
                source: back.source.clone(),
            };
            out.push(Prediction { subset: s, classes: cls, labels, probabilities: opts.probabilities.then_some(back) });
        }
        Ok(out)
    }
}

/// Mirrors every channel of a channels-first `(C, k, j, i)` buffer along the flagged axes (i, j, k).
fn flip_channels(data: &[f32], dims: [usize; 3], flip: [bool; 3]) -> Vec<f32> {
    if flip == [false; 3] {
        return data.to_vec();
    }
    let [ni, nj, nk] = dims;
    let n = ni * nj * nk;
    let mut out = vec![0f32; data.len()];
    for (src, dst) in data.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        for k in 0..nk {
            let sk = if flip[2] { nk - 1 - k } else { k };
            for j in 0..nj {
                let sj = if flip[1] { nj - 1 - j } else { j };
                let d = ni * (j + nj * k);
                let s = ni * (sj + nj * sk);
                if flip[0] {
                    for i in 0..ni {
                        dst[d + i] = src[s + ni - 1 - i];
                    }
                } else {
                    dst[d..d + ni].copy_from_slice(&src[s..s + ni]);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flipping_twice_is_the_identity_and_moves_voxels() {
        let dims = [3, 2, 2];
        let data: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let f = flip_channels(&data, dims, [true, false, true]);
        assert_eq!(f[0], data[2 + 3 * 2]); // (0,0,0) ← (2,0,1)
        assert_eq!(f[12], data[12 + 2 + 3 * 2]); // second channel
        assert_eq!(flip_channels(&f, dims, [true, false, true]), data);
    }
}
