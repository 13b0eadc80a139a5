//! Comparing one predicted mask with one reference mask: evaluation options, the empty-mask policy,
//! Dice and the surface-distance metrics.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::distances::{check_pair, distances_in};
use crate::grid::{bbox_where, crop, BBox};
use crate::{Connectivity, Grid, Hd95Convention, MetricsError, Result};

/// The BraTS distance penalty for a one-sided empty mask: the diagonal of a 1 mm 240×240×155 volume.
pub const BRATS_EMPTY_PENALTY_MM: f64 = 373.13;

/// What to report when both prediction and reference are empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BothEmpty {
    /// Dice and all distances NaN (nnU-Net): the case is undefined, excluded from means and counted.
    #[default]
    Nan,
    /// A perfect score: Dice 1, all distances 0.
    Perfect,
}

/// Why a [`PairMetrics`] was decided by the empty-mask policy instead of being measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmptyCase {
    /// Prediction and reference are both empty.
    BothEmpty,
    /// The prediction is empty, the reference is not.
    PredEmpty,
    /// The reference is empty, the prediction is not.
    RefEmpty,
}

impl EmptyCase {
    /// A short human-readable description.
    pub fn describe(self) -> &'static str {
        match self {
            EmptyCase::BothEmpty => "both empty",
            EmptyCase::PredEmpty => "prediction empty",
            EmptyCase::RefEmpty => "reference empty",
        }
    }
}

/// How to compute the metrics; see the crate documentation for the conventions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvalOptions {
    /// Neighbourhood defining surface voxels (default 6, as MONAI and MedPy).
    pub connectivity: Connectivity,
    /// HD95 convention (default MONAI).
    pub hd95: Hd95Convention,
    /// HD95, HD and ASSD (mm) when exactly one mask is empty (default
    /// [`BRATS_EMPTY_PENALTY_MM`]); must be finite and ≥ 0.
    pub empty_penalty_mm: f64,
    /// What to report when both masks are empty (default NaN).
    pub both_empty: BothEmpty,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            connectivity: Connectivity::Six,
            hd95: Hd95Convention::Monai,
            empty_penalty_mm: BRATS_EMPTY_PENALTY_MM,
            both_empty: BothEmpty::Nan,
        }
    }
}

impl EvalOptions {
    /// Error when an option is out of range.
    pub fn validate(&self) -> Result<()> {
        let p = self.empty_penalty_mm;
        if !(p.is_finite() && p >= 0.0) {
            return Err(MetricsError::InvalidOption(format!("empty_penalty_mm must be finite and ≥ 0, got {p}")));
        }
        Ok(())
    }
}

/// Metrics of one prediction against one reference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PairMetrics {
    /// Dice coefficient 2|A∩B| / (|A|+|B|).
    pub dice: f64,
    /// 95th percentile Hausdorff distance (mm) in the chosen convention.
    pub hd95: f64,
    /// Maximum symmetric Hausdorff distance (mm).
    pub hd: f64,
    /// Average symmetric surface distance (mm): the mean of both directed lists pooled, as MedPy 0.5
    /// and MONAI (see [`crate::SurfaceDistances::assd`]).
    pub assd: f64,
    /// Set when the empty-mask policy decided the values.
    pub note: Option<EmptyCase>,
}

impl PairMetrics {
    /// The values the policy in `opts` assigns to an empty case.
    pub fn empty(case: EmptyCase, opts: &EvalOptions) -> Self {
        let (dice, dist) = match (case, opts.both_empty) {
            (EmptyCase::BothEmpty, BothEmpty::Nan) => (f64::NAN, f64::NAN),
            (EmptyCase::BothEmpty, BothEmpty::Perfect) => (1.0, 0.0),
            _ => (0.0, opts.empty_penalty_mm),
        };
        Self { dice, hd95: dist, hd: dist, assd: dist, note: Some(case) }
    }
}

/// Dice coefficient of two masks of equal length; NaN when both are empty.
pub fn dice(pred: &[bool], reference: &[bool]) -> Result<f64> {
    if pred.len() != reference.len() {
        return Err(MetricsError::MaskLengths { pred: pred.len(), reference: reference.len() });
    }
    let (inter, np, nr) = counts(pred, reference);
    Ok(2.0 * inter as f64 / (np + nr) as f64)
}

/// |A∩B|, |A|, |B|.
fn counts(p: &[bool], r: &[bool]) -> (usize, usize, usize) {
    p.par_chunks(1 << 16)
        .zip(r.par_chunks(1 << 16))
        .map(|(p, r)| {
            p.iter()
                .zip(r)
                .fold((0, 0, 0), |(i, a, b), (&x, &y)| (i + usize::from(x & y), a + usize::from(x), b + usize::from(y)))
        })
        .reduce(|| (0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2))
}

/// Dice, HD95, HD and ASSD of `pred` against `reference` on `grid`, with the empty-mask policy of
/// `opts`. Surfaces and distance transforms are computed only inside the bounding box of the union of
/// both masks.
pub fn compare_masks(pred: &[bool], reference: &[bool], grid: &Grid, opts: &EvalOptions) -> Result<PairMetrics> {
    check_pair(pred, reference, grid)?;
    opts.validate()?;
    let _span = tracing::debug_span!("compare_masks", dims = ?grid.dims).entered();
    let (bp, br) = rayon::join(|| bbox_where(pred, grid.dims, |v| *v), || bbox_where(reference, grid.dims, |v| *v));
    Ok(compare_in(pred, reference, grid, bp, br, opts))
}

/// [`compare_masks`] after the checks, given both masks' bounding boxes.
pub(crate) fn compare_in(
    pred: &[bool],
    reference: &[bool],
    grid: &Grid,
    bp: Option<BBox>,
    br: Option<BBox>,
    opts: &EvalOptions,
) -> PairMetrics {
    let b = match (bp, br) {
        (None, None) => return PairMetrics::empty(EmptyCase::BothEmpty, opts),
        (None, Some(_)) => return PairMetrics::empty(EmptyCase::PredEmpty, opts),
        (Some(_), None) => return PairMetrics::empty(EmptyCase::RefEmpty, opts),
        (Some(a), Some(b)) => a.union(&b),
    };
    let (p, r) = rayon::join(|| crop(pred, grid.dims, &b), || crop(reference, grid.dims, &b));
    let (inter, np, nr) = counts(&p, &r);
    let d = distances_in(&p, &r, b.dims(), grid.spacing, opts.connectivity);
    tracing::trace!(box_dims = ?b.dims(), surface_pred = d.pred_to_ref.len(), surface_ref = d.ref_to_pred.len());
    PairMetrics {
        dice: 2.0 * inter as f64 / (np + nr) as f64,
        hd95: d.hd95(opts.hd95),
        hd: d.hd(),
        assd: d.assd(),
        note: None,
    }
}
