//! The preprocessing shared by training and prediction, with its exact inverse: reorient to RAS,
//! optionally resample to a spacing, crop to the non-zero box of all modalities, z-score each
//! modality over its non-zero voxels. [`Inverse`] takes per-class probabilities on the cropped grid
//! back to the original grid of the inputs (uncrop, resample back, undo the reorientation).

use std::path::Path;

use magseg_volume::transform::{
    crop, from_ras, nonzero_bbox, resample_image, resample_labels, resample_to, to_ras, uncrop, zscore_nonzero, BBox,
    Interp, Reorientation,
};
use magseg_volume::{Geometry, Image, LabelMap, Volume};
use serde::{Deserialize, Serialize};

use crate::{Result, TrainError};

/// The preprocessing file written next to a model (`best/`, `last/`).
pub const PREPROCESS_FILE: &str = "preprocess.json";

/// Grid tolerance (mm) between the modalities of one case.
const GRID_TOLERANCE_MM: f64 = 1e-3;

/// How inputs are prepared for the network (stored with each trained model).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocess {
    /// Resample to this spacing (mm) after reorientation; `None` keeps the grid.
    pub spacing: Option<[f64; 3]>,
}

impl Preprocess {
    /// Writes `dir/preprocess.json`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(PREPROCESS_FILE);
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        std::fs::write(&path, text + "\n").map_err(TrainError::io(&path))
    }

    /// Reads `dir/preprocess.json`; a model directory without one uses no resampling.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(PREPROCESS_FILE);
        if !path.exists() {
            return Ok(Self::default());
        }
        let text = std::fs::read_to_string(&path).map_err(TrainError::io(&path))?;
        serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint { path, reason: e.to_string() })
    }
}

/// What is needed to map results on the network's grid back to the inputs' grid.
#[derive(Debug, Clone)]
pub struct Inverse {
    reorientation: Reorientation,
    /// The RAS grid before resampling (when resampled).
    ras_native: Option<Geometry>,
    /// The (resampled) RAS grid the crop was taken from.
    work: Geometry,
    /// The crop box on `work`.
    bbox: BBox,
    /// The cropped grid.
    cropped: Geometry,
    /// The source (header) of the first input, given to outputs.
    source: magseg_volume::Source,
}

/// Prepared images (same order as given) on the cropped grid, and the way back.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Cropped, normalised single-channel images.
    pub images: Vec<Image>,
    /// The cropped grid size (i, j, k).
    pub dims: [usize; 3],
    /// The inverse transform.
    pub inverse: Inverse,
}

/// Checks that every image is single-channel and on the first image's grid.
pub fn check_grids(images: &[(&str, &Image)]) -> Result<()> {
    let Some((first_name, first)) = images.first() else {
        return Err(TrainError::Data("no input image".into()));
    };
    for (name, img) in images {
        if img.channels != 1 {
            return Err(TrainError::Data(format!("modality {name} has {} channels; expected 1", img.channels)));
        }
        if let Some(diff) = first.geometry.difference(&img.geometry, GRID_TOLERANCE_MM) {
            return Err(TrainError::Data(format!("modality {name} is not on the grid of {first_name}: {diff}")));
        }
    }
    Ok(())
}

/// Applies the preprocessing to the images of one case (all on one grid).
pub fn preprocess(images: &[(&str, &Image)], pre: &Preprocess) -> Result<Prepared> {
    check_grids(images)?;
    let mut ras = Vec::with_capacity(images.len());
    let mut reorientation = None;
    let mut ras_native = None;
    for (_, img) in images {
        let (mut r, rec) = to_ras(img);
        if let Some(s) = pre.spacing {
            ras_native.get_or_insert_with(|| r.geometry.clone());
            r = resample_image(&r, s)?;
        }
        reorientation.get_or_insert(rec);
        ras.push(r);
    }
    let reorientation = reorientation.ok_or_else(|| TrainError::Data("no input image".into()))?;
    let work = ras[0].geometry.clone();
    let bbox = (ras.iter().filter_map(nonzero_bbox)).reduce(|a, b| BBox {
        start: [0, 1, 2].map(|i| a.start[i].min(b.start[i])),
        end: [0, 1, 2].map(|i| a.end[i].max(b.end[i])),
    });
    let bbox = bbox.ok_or_else(|| TrainError::Data("every input image is all zeros".into()))?;
    let mut out = Vec::with_capacity(ras.len());
    for r in &ras {
        let mut c = crop(r, &bbox)?;
        zscore_nonzero(&mut c);
        out.push(c);
    }
    let source = images[0].1.source.clone();
    let cropped = out[0].geometry.clone();
    let inverse = Inverse { reorientation, ras_native, work, bbox, cropped, source };
    Ok(Prepared { images: out, dims: bbox.shape(), inverse })
}

impl Inverse {
    /// Brings a label map on the inputs' original grid onto the cropped grid (training targets).
    pub fn labels_forward(&self, labels: &LabelMap, spacing: Option<[f64; 3]>) -> Result<LabelMap> {
        let (mut l, _) = to_ras(labels);
        if let Some(s) = spacing {
            l = resample_labels(&l, s)?;
        }
        if let Some(diff) = self.work.difference(&l.geometry, GRID_TOLERANCE_MM) {
            return Err(TrainError::Data(format!("the label map is not on the images' grid: {diff}")));
        }
        Ok(crop(&l, &self.bbox)?)
    }

    /// Per-class probabilities `(classes, k, j, i)` on the cropped grid → the same on the inputs'
    /// original grid (outside the crop: background probability 1; resampled back linearly).
    pub fn probs_back(&self, probs: &[f32], classes: usize) -> Result<Image> {
        let shape = self.bbox.shape();
        let n: usize = shape.iter().product();
        if probs.len() != n * classes || classes == 0 {
            return Err(TrainError::Data(format!("{} probabilities for {classes} classes of {shape:?}", probs.len())));
        }
        let crop_geom = &self.cropped;
        let mut data = Vec::with_capacity(self.work.len() * classes);
        for c in 0..classes {
            let ch = Volume {
                data: probs[c * n..(c + 1) * n].to_vec(),
                geometry: crop_geom.clone(),
                channels: 1,
                source: self.source.clone(),
            };
            let fill = if c == 0 { 1.0 } else { 0.0 };
            data.extend(uncrop(&ch, &self.bbox, &self.work, fill)?.data);
        }
        let mut vol = Volume { data, geometry: self.work.clone(), channels: classes, source: self.source.clone() };
        if let Some(native) = &self.ras_native {
            // Linear interpolation counts neighbours outside the grid as 0: renormalise so each voxel's
            // probabilities sum to 1; outside the resampled field of view it is background.
            let mut back = resample_to(&vol, native, Interp::Linear, 0.0)?;
            let nn = native.len();
            for v in 0..nn {
                let s: f32 = (0..classes).map(|c| back.data[c * nn + v]).sum();
                if s > 0.0 {
                    (0..classes).for_each(|c| back.data[c * nn + v] /= s);
                } else {
                    back.data[v] = 1.0;
                }
            }
            vol = back;
        }
        let mut out = from_ras(&vol, &self.reorientation)?;
        out.source = self.source.clone();
        Ok(out)
    }

    /// The inputs' original grid.
    pub fn original(&self) -> &Geometry {
        self.reorientation.original()
    }
}
