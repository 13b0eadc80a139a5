//! Cases decoded and preprocessed once, kept in memory behind `Arc`s so patches never re-read files.

use std::sync::Arc;

use magseg_volume::{LabelPreset, LoadedCase};
use rayon::prelude::*;

use crate::{PatchError, Result};

/// One case ready for sampling: stacked modalities `(C, nk, nj, ni)` (NIfTI order, i fastest), class
/// indices, and the precomputed foreground / background voxel lists used by positive-biased crops.
#[derive(Debug, Clone)]
pub struct CaseData {
    /// Case identifier.
    pub id: String,
    /// Grid size (i, j, k).
    pub dims: [usize; 3],
    /// Number of stacked modalities.
    pub channels: usize,
    /// Intensities, channel after channel.
    pub image: Vec<f32>,
    /// Class index per voxel (0 = background).
    pub labels: Vec<u8>,
    /// Linear indices of voxels with a non-zero class.
    pub foreground: Vec<u32>,
    /// Linear indices of background voxels inside the brain (some channel non-zero).
    pub background: Vec<u32>,
}

impl CaseData {
    /// Build from raw buffers; `image.len()` must be `channels * prod(dims)` and `labels.len()`
    /// `prod(dims)` (fewer than 2³² voxels).
    pub fn new(
        id: impl Into<String>,
        dims: [usize; 3],
        channels: usize,
        image: Vec<f32>,
        labels: Vec<u8>,
    ) -> Result<Self> {
        let n: usize = dims.iter().product();
        if channels == 0 || n == 0 {
            return Err(PatchError::Shape(format!("empty case: dims {dims:?}, {channels} channel(s)")));
        }
        if image.len() != n * channels || labels.len() != n {
            return Err(PatchError::Shape(format!(
                "case with dims {dims:?} and {channels} channel(s) needs {} image and {n} label values, got {} and {}",
                n * channels,
                image.len(),
                labels.len()
            )));
        }
        if n > u32::MAX as usize {
            return Err(PatchError::Shape(format!("case dims {dims:?} exceed 2^32 voxels")));
        }
        let foreground: Vec<u32> = (0..n).into_par_iter().filter(|&v| labels[v] != 0).map(|v| v as u32).collect();
        let background: Vec<u32> = (0..n)
            .into_par_iter()
            .filter(|&v| labels[v] == 0 && (0..channels).any(|c| image[v + c * n] != 0.0))
            .map(|v| v as u32)
            .collect();
        Ok(Self { id: id.into(), dims, channels, image, labels, foreground, background })
    }

    /// Stack the images of a loaded (already preprocessed) case and map its labels to class indices
    /// with `preset`. The case must have a label map.
    pub fn from_loaded(case: &LoadedCase, preset: &LabelPreset) -> Result<Self> {
        let label =
            (case.label.as_ref()).ok_or_else(|| PatchError::Shape(format!("case {} has no label map", case.id)))?;
        let dims = label.geometry.dims;
        let mut image = Vec::with_capacity(label.geometry.len() * case.images.len());
        for (name, img) in &case.images {
            if img.geometry.dims != dims || img.channels != 1 {
                return Err(PatchError::Shape(format!(
                    "case {}: modality {name} has dims {:?} × {} channel(s), labels {dims:?}",
                    case.id, img.geometry.dims, img.channels
                )));
            }
            image.extend_from_slice(&img.data);
        }
        Self::new(case.id.clone(), dims, case.images.len(), image, preset.to_classes(label)?)
    }

    /// Number of voxels per channel.
    pub fn voxels(&self) -> usize {
        self.dims.iter().product()
    }
}

/// All training cases in memory, shared read-only between loader workers.
#[derive(Debug, Clone, Default)]
pub struct CaseCache {
    cases: Vec<Arc<CaseData>>,
}

impl CaseCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Prepare every item with `prepare` in parallel (e.g. load, preprocess, [`CaseData::from_loaded`]);
    /// the cache keeps the input order. The first error is returned, of `prepare`'s own error type
    /// (the cache adds none).
    pub fn build<I, E, F>(items: &[I], prepare: F) -> std::result::Result<Self, E>
    where
        I: Sync,
        E: Send,
        F: Fn(&I) -> std::result::Result<CaseData, E> + Sync,
    {
        let cases: Vec<Arc<CaseData>> =
            items.par_iter().map(|i| prepare(i).map(Arc::new)).collect::<std::result::Result<_, E>>()?;
        tracing::debug!(cases = cases.len(), "case cache built");
        Ok(Self { cases })
    }

    /// Add a case; returns its index.
    pub fn push(&mut self, case: CaseData) -> usize {
        self.cases.push(Arc::new(case));
        self.cases.len() - 1
    }

    /// Case `i`, shared.
    pub fn get(&self, i: usize) -> Option<Arc<CaseData>> {
        self.cases.get(i).cloned()
    }

    /// Number of cases.
    pub fn len(&self) -> usize {
        self.cases.len()
    }

    /// True when no case is cached.
    pub fn is_empty(&self) -> bool {
        self.cases.is_empty()
    }

    /// All cases in order.
    pub fn cases(&self) -> &[Arc<CaseData>] {
        &self.cases
    }
}
