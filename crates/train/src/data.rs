//! Training data: the data set section of the configuration, the training preprocessing (RAS
//! reorientation, optional resampling, crop to the non-zero box of all modalities, per-channel
//! z-score over non-zero voxels) and the train/validation split.

use std::path::PathBuf;

use magseg_patch::{CaseCache, CaseData};
use magseg_volume::{discover, load_case, Case, Dataset, LabelPreset, LoadedCase};
use serde::{Deserialize, Serialize};

use crate::preprocess::{preprocess, Preprocess};
use crate::{Result, TrainError};

/// The `[data]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A data set folder or manifest (any layout `magseg inspect` recognises).
    pub path: PathBuf,
    /// The layout the data set must have (`msd`, `brats`, `brats2023`, `iseg`, `manifest`); default:
    /// whatever is recognised (`magseg inspect` shows it).
    #[serde(default)]
    pub layout: Option<String>,
    /// Modalities to train on, in model input order; default: all of the data set's.
    #[serde(default)]
    pub modalities: Option<Vec<String>>,
    /// Label preset name (`brats`, `msd-brain`, ...); default: the one the layout implies.
    #[serde(default)]
    pub labels: Option<String>,
    /// Case ids held out for validation; default: the last `validation_count` cases by id.
    #[serde(default)]
    pub validation_cases: Option<Vec<String>>,
    /// How many cases to hold out when `validation_cases` is not given (default: a fifth, at
    /// least 1, leaving at least 1 for training).
    #[serde(default)]
    pub validation_count: Option<usize>,
    /// Use only the first `limit` cases (after sorting), e.g. for quick runs.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Resample to this voxel spacing in mm (i, j, k) after reorientation; default: keep the grid.
    #[serde(default)]
    pub spacing: Option<[f64; 3]>,
}

/// The data set resolved against the configuration (no volume read yet).
#[derive(Debug, Clone)]
pub struct DataPlan {
    /// The discovered data set.
    pub dataset: Dataset,
    /// The label preset.
    pub preset: LabelPreset,
    /// Modality names in model input order.
    pub modalities: Vec<String>,
    /// Training cases.
    pub train: Vec<Case>,
    /// Validation cases.
    pub validation: Vec<Case>,
}

impl DataConfig {
    /// Discovers the data set and checks modalities, labels and the split, reading headers only.
    pub fn plan(&self) -> Result<DataPlan> {
        let dataset = discover(&self.path)?;
        if let Some(want) = &self.layout {
            let found = dataset.layout.name().to_lowercase().replace(' ', "");
            if want.to_lowercase().replace([' ', '-', '_'], "") != found {
                return Err(TrainError::Config(format!(
                    "data.layout = '{want}' but {} is laid out as {}",
                    self.path.display(),
                    dataset.layout.name()
                )));
            }
        }
        let preset = match (&self.labels, &dataset.preset) {
            (Some(name), _) => LabelPreset::named(name)?,
            (None, Some(p)) => p.clone(),
            (None, None) => {
                return Err(TrainError::Config(format!(
                "{}: the layout implies no label preset; set data.labels (brats, brats2023, msd-brain, iseg, binary)",
                self.path.display()
            )))
            }
        };
        let available = dataset.modality_names();
        let modalities = self.modalities.clone().unwrap_or_else(|| available.clone());
        if modalities.is_empty() {
            return Err(TrainError::Config("data.modalities is empty".into()));
        }
        let mut cases = dataset.cases.clone();
        if let Some(n) = self.limit {
            cases.truncate(n);
        }
        for case in &cases {
            for m in &modalities {
                if case.modality(m).is_none() {
                    return Err(TrainError::Data(format!(
                        "case {} has no modality '{m}' (it has {})",
                        case.id,
                        case.modality_names().join(", ")
                    )));
                }
            }
            if case.label.is_none() {
                return Err(TrainError::Data(format!(
                    "case {} has no label map; training needs one per case",
                    case.id
                )));
            }
        }
        let (train, validation): (Vec<Case>, Vec<Case>) = match &self.validation_cases {
            Some(ids) => {
                for id in ids {
                    if !cases.iter().any(|c| &c.id == id) {
                        return Err(TrainError::Config(format!("validation case '{id}' is not in the data set")));
                    }
                }
                cases.into_iter().partition(|c| !ids.contains(&c.id))
            }
            None => {
                let n = self.validation_count.unwrap_or((cases.len() / 5).max(1));
                if n >= cases.len() {
                    return Err(TrainError::Config(format!(
                        "{} case(s) cannot give {n} validation case(s) and at least one training case",
                        cases.len()
                    )));
                }
                let cut = cases.len() - n;
                let val = cases.split_off(cut);
                (cases, val)
            }
        };
        if train.is_empty() || validation.is_empty() {
            return Err(TrainError::Config("the split leaves no training or no validation case".into()));
        }
        Ok(DataPlan { dataset, preset, modalities, train, validation })
    }
}

/// Reads one case (the listed modalities and its labels) and applies the training preprocessing
/// ([`crate::preprocess::preprocess`]; the labels follow the same reorientation, nearest-neighbour
/// resampling and crop).
pub fn prepare_case(
    case: &Case,
    modalities: &[String],
    preset: &LabelPreset,
    spacing: Option<[f64; 3]>,
) -> Result<CaseData> {
    let _span = tracing::debug_span!("prepare_case", case = %case.id).entered();
    let loaded = load_case(case, Some(preset))?;
    let mut images = Vec::with_capacity(modalities.len());
    for m in modalities {
        let img = loaded.image(m).ok_or_else(|| TrainError::Data(format!("case {} lacks modality {m}", case.id)))?;
        images.push((m.as_str(), img));
    }
    let prepared = preprocess(&images, &Preprocess { spacing })?;
    let label = loaded.label.as_ref().ok_or_else(|| TrainError::Data(format!("case {} has no labels", case.id)))?;
    let label = prepared.inverse.labels_forward(label, spacing)?;
    let images = modalities.iter().cloned().zip(prepared.images).collect();
    let prepared = LoadedCase { id: case.id.clone(), images, label: Some(label) };
    Ok(CaseData::from_loaded(&prepared, preset)?)
}

/// Prepares `cases` in parallel into a cache (case order kept).
pub fn prepare_cases(
    cases: &[Case],
    modalities: &[String],
    preset: &LabelPreset,
    spacing: Option<[f64; 3]>,
) -> Result<CaseCache> {
    CaseCache::build(cases, |c| prepare_case(c, modalities, preset, spacing))
}
