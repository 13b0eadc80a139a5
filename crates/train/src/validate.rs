//! Validation: sliding-window inference of every validation case for chosen modality subsets and the
//! Dice of each label-preset region, averaged over cases.

use magseg_distill::schedule::{members, Subset};
use magseg_model::MagMs;
use magseg_patch::CaseCache;
use magseg_volume::LabelPreset;
use serde::{Deserialize, Serialize};

use crate::infer::{argmax_classes, sliding_window_subsets, InferInput, WindowConfig};
use crate::Result;

/// The mean Dice of each region for one modality subset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubsetScores {
    /// The subset's modality names joined with `+` (e.g. `flair+t1ce`).
    pub subset: String,
    /// (region, mean Dice over the cases where it is defined; NaN when it never is).
    pub dice: Vec<(String, f64)>,
}

/// One validation pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    /// Scores per subset, in the order asked for.
    pub subsets: Vec<SubsetScores>,
    /// The model-selection score: the mean of every defined (subset, region) Dice.
    pub score: f64,
}

impl Validation {
    /// The Dice of `region` for `subset`, if present.
    pub fn dice(&self, subset: &str, region: &str) -> Option<f64> {
        let s = self.subsets.iter().find(|s| s.subset == subset)?;
        s.dice.iter().find(|(r, _)| r == region).map(|(_, d)| *d)
    }
}

/// The name of a subset: its members' names joined with `+`.
pub fn subset_name(subset: Subset, modalities: &[String]) -> String {
    members(subset).iter().map(|&m| modalities[m].as_str()).collect::<Vec<_>>().join("+")
}

/// Runs `model` on every case of `cases` (preprocessed, channels in model modality order) for each
/// subset, scoring each region of `preset` with Dice.
pub fn validate(
    model: &MagMs,
    cases: &CaseCache,
    preset: &LabelPreset,
    subsets: &[Subset],
    window: &WindowConfig,
) -> Result<Validation> {
    let _span = tracing::info_span!("validate", cases = cases.len(), subsets = subsets.len()).entered();
    let modalities = &model.config().modalities;
    let classes = model.config().out_channels;
    let regions: Vec<String> = preset.regions.iter().map(|r| r.name.clone()).collect();
    // sums[s][r] = (sum, count)
    let mut sums = vec![vec![(0.0f64, 0usize); regions.len()]; subsets.len()];
    for case in cases.cases() {
        let mut truth = Vec::with_capacity(regions.len());
        for r in &regions {
            truth.push(preset.region_mask_classes(r, &case.labels)?);
        }
        let slots: Vec<Option<usize>> = (0..modalities.len()).map(Some).collect();
        let input = InferInput { dims: case.dims, image: &case.image, slots: &slots };
        let all_probs = sliding_window_subsets(model, input, subsets, window, &mut |_, _| {})?;
        for (si, probs) in all_probs.iter().enumerate() {
            let pred = argmax_classes(probs, classes);
            for (ri, r) in regions.iter().enumerate() {
                let d = magseg_metrics::dice(&preset.region_mask_classes(r, &pred)?, &truth[ri])?;
                if d.is_finite() {
                    sums[si][ri].0 += d;
                    sums[si][ri].1 += 1;
                }
            }
        }
    }
    let mut all = Vec::new();
    let out = subsets
        .iter()
        .zip(&sums)
        .map(|(&s, row)| SubsetScores {
            subset: subset_name(s, modalities),
            dice: regions
                .iter()
                .zip(row)
                .map(|(r, &(sum, n))| {
                    let d = if n > 0 { sum / n as f64 } else { f64::NAN };
                    if d.is_finite() {
                        all.push(d);
                    }
                    (r.clone(), d)
                })
                .collect(),
        })
        .collect();
    let score = if all.is_empty() { f64::NAN } else { all.iter().sum::<f64>() / all.len() as f64 };
    Ok(Validation { subsets: out, score })
}
