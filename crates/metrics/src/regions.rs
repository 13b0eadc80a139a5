//! Per-region evaluation of two label maps with a label preset (e.g. BraTS WT/TC/ET).

use magseg_volume::labels::{LabelPreset, Region};
use rayon::prelude::*;
use serde::Serialize;

use crate::grid::{bbox_where, crop, union_opt};
use crate::pair::{compare_in, EmptyCase};
use crate::{EvalOptions, Grid, PairMetrics, Result};

/// The metrics of one region of one case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionMetrics {
    /// Region name ("WT", "TC", ...).
    pub region: String,
    /// Its metrics.
    pub metrics: PairMetrics,
}

/// Whether on-disk value `v` belongs to `region` under `preset`.
fn member(preset: &LabelPreset, region: &Region, v: i32) -> bool {
    if preset.nonzero_is_foreground {
        v != 0
    } else {
        region.labels.contains(&v)
    }
}

/// Evaluate every region of `preset` (in its order) on two label maps of on-disk values.
///
/// A voxel belongs to a region when its value is one of the region's `labels`; with
/// `nonzero_is_foreground` (the `binary` preset) every non-zero value belongs to every region. Values
/// the preset does not know belong to no region (validate the maps with
/// [`LabelPreset::validate`] first to reject them). Both maps are first cropped to the bounding box of
/// all region voxels of either, which is exact; the regions are then evaluated in parallel.
pub fn evaluate_labels(
    pred: &[i32],
    reference: &[i32],
    grid: &Grid,
    preset: &LabelPreset,
    opts: &EvalOptions,
) -> Result<Vec<RegionMetrics>> {
    grid.check("pred", pred.len())?;
    grid.check("reference", reference.len())?;
    opts.validate()?;
    let _span = tracing::debug_span!("evaluate_labels", preset = %preset.name, dims = ?grid.dims).entered();
    let in_any = |v: &i32| preset.regions.iter().any(|r| member(preset, r, *v));
    let (bp, br) = rayon::join(|| bbox_where(pred, grid.dims, in_any), || bbox_where(reference, grid.dims, in_any));
    let Some(b) = union_opt(bp, br) else {
        let m = PairMetrics::empty(EmptyCase::BothEmpty, opts);
        return Ok(preset.regions.iter().map(|r| RegionMetrics { region: r.name.clone(), metrics: m }).collect());
    };
    let (p, r) = rayon::join(|| crop(pred, grid.dims, &b), || crop(reference, grid.dims, &b));
    let sub = b.grid(grid.spacing);
    Ok(preset
        .regions
        .par_iter()
        .map(|region| {
            let mask = |l: &[i32]| -> Vec<bool> { l.par_iter().map(|v| member(preset, region, *v)).collect() };
            let (pm, rm) = rayon::join(|| mask(&p), || mask(&r));
            let (bp, br) = rayon::join(|| bbox_where(&pm, sub.dims, |v| *v), || bbox_where(&rm, sub.dims, |v| *v));
            RegionMetrics { region: region.name.clone(), metrics: compare_in(&pm, &rm, &sub, bp, br, opts) }
        })
        .collect())
}
