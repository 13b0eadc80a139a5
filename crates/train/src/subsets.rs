//! Evaluation over every modality subset: each case is predicted for all 2^M − 1 subsets in one
//! sweep, scored per region (Dice, HD95, ASSD on the original grid), summarised per subset, and the
//! modality importance computed as Shapley values of the mean Dice.

use magseg_distill::{members, Subset};
use magseg_metrics::{evaluate_labels, summarize, EvalOptions, Grid, RegionMetrics, RegionSummary};
use magseg_volume::{load_case, Case, LabelMap};
use serde::Serialize;

use crate::predict::{PredictOptions, Predictor};
use crate::shapley::shapley;
use crate::{Result, TrainError};

/// One subset's scores.
#[derive(Debug, Clone, Serialize)]
pub struct SubsetResult {
    /// Bit mask over the model's modalities.
    pub subset: Subset,
    /// Modality names joined with `+`.
    pub name: String,
    /// Per case: (case id, metrics per region).
    pub cases: Vec<(String, Vec<RegionMetrics>)>,
    /// Means per region over the cases.
    pub summary: Vec<RegionSummary>,
}

/// Shapley values of one region's mean Dice.
#[derive(Debug, Clone, Serialize)]
pub struct Importance {
    /// Region name.
    pub region: String,
    /// (modality, Shapley value); they sum to the all-modality mean Dice.
    pub values: Vec<(String, f64)>,
}

/// The whole evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct SubsetEvaluation {
    /// The model's modalities.
    pub modalities: Vec<String>,
    /// Region names.
    pub regions: Vec<String>,
    /// Every non-empty subset, the largest first.
    pub subsets: Vec<SubsetResult>,
    /// Modality importance per region.
    pub importance: Vec<Importance>,
}

impl SubsetEvaluation {
    /// The mean Dice of `region` for `subset` (NaN if absent).
    pub fn dice(&self, subset: Subset, region: &str) -> f64 {
        (self.subsets.iter().find(|s| s.subset == subset))
            .and_then(|s| s.summary.iter().find(|r| r.region == region))
            .map_or(f64::NAN, |r| r.dice_mean)
    }
}

/// Every non-empty subset of `m` modalities, the largest first (then by mask).
pub fn all_subsets(m: usize) -> Vec<Subset> {
    let full: Subset = (1 << m) - 1;
    let mut v: Vec<Subset> = (1..=full).collect();
    v.sort_by_key(|s| (std::cmp::Reverse(s.count_ones()), *s));
    v
}

/// Called per case with its id, the label map of every subset (in [`SubsetEvaluation::subsets`]
/// order) and the reference, e.g. to draw pictures.
pub type CaseHook<'a> = dyn FnMut(&str, &[LabelMap], &LabelMap, &[(String, magseg_volume::Image)]) -> Result<()> + 'a;

/// Predicts every case of `cases` (which must have labels and every model modality) for all
/// subsets and scores them. `progress(case index, cases, windows done, windows)` reports progress.
pub fn evaluate_subsets(
    predictor: &Predictor,
    cases: &[Case],
    eval: &EvalOptions,
    opts: &PredictOptions,
    progress: &mut dyn FnMut(usize, usize, usize, usize),
    hook: &mut CaseHook,
) -> Result<SubsetEvaluation> {
    let modalities = predictor.modalities().to_vec();
    if modalities.len() > 8 {
        return Err(TrainError::Config(format!(
            "{} modalities: at most 8 for all-subset evaluation",
            modalities.len()
        )));
    }
    let preset = predictor.preset();
    let subsets = all_subsets(modalities.len());
    let mut per_subset: Vec<Vec<(String, Vec<RegionMetrics>)>> = vec![Vec::new(); subsets.len()];
    for (ci, case) in cases.iter().enumerate() {
        let _span = tracing::info_span!("evaluate_case", case = %case.id).entered();
        let loaded = load_case(case, Some(preset))?;
        let reference =
            loaded.label.clone().ok_or_else(|| TrainError::Data(format!("case {} has no label map", case.id)))?;
        let mut inputs = Vec::with_capacity(modalities.len());
        for m in &modalities {
            let img = loaded.image(m).ok_or_else(|| TrainError::Data(format!("case {} has no {m} image", case.id)))?;
            inputs.push((m.clone(), img.clone()));
        }
        let preds = predictor.predict_subsets(&inputs, &subsets, opts, &mut |d, t| progress(ci, cases.len(), d, t))?;
        let grid = Grid::new(reference.geometry.dims, reference.geometry.spacing);
        let mut maps = Vec::with_capacity(preds.len());
        for (si, p) in preds.into_iter().enumerate() {
            let metrics = evaluate_labels(&p.labels.data, &reference.data, &grid, preset, eval)?;
            per_subset[si].push((case.id.clone(), metrics));
            maps.push(p.labels);
        }
        hook(&case.id, &maps, &reference, &inputs)?;
    }
    let regions: Vec<String> = preset.regions.iter().map(|r| r.name.clone()).collect();
    let results: Vec<SubsetResult> = subsets
        .iter()
        .zip(per_subset)
        .map(|(&s, cases)| {
            let summary = summarize(&cases.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>());
            let name = members(s).iter().map(|&m| modalities[m].as_str()).collect::<Vec<_>>().join("+");
            SubsetResult { subset: s, name, cases, summary }
        })
        .collect();
    let mut evaluation = SubsetEvaluation {
        modalities: modalities.clone(),
        regions: regions.clone(),
        subsets: results,
        importance: Vec::new(),
    };
    for r in &regions {
        let phi = shapley(&|s| evaluation.dice(s, r), modalities.len());
        evaluation
            .importance
            .push(Importance { region: r.clone(), values: modalities.iter().cloned().zip(phi).collect() });
    }
    Ok(evaluation)
}
