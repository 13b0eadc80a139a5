//! Directed surface-to-surface distances and what is computed from them: HD95 in the MONAI and pooled
//! conventions, the maximum Hausdorff distance and the average symmetric surface distance.

use serde::{Deserialize, Serialize};

use crate::edt::distances_at;
use crate::grid::{bbox_where, crop, union_opt};
use crate::surface::surface_of;
use crate::{Connectivity, Grid, Result};

/// How the 95th percentile Hausdorff distance combines the two directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hd95Convention {
    /// MONAI `compute_hausdorff_distance(percentile=95)`: the larger of the two directed 95th
    /// percentiles, `max(P95(d(A→B)), P95(d(B→A)))`.
    #[default]
    Monai,
    /// MedPy `hd95`, panoptica and the BraTS challenge: the 95th percentile of both directed distance
    /// lists concatenated. Up to ~3× smaller than MONAI's when the errors are one-sided.
    Pooled,
}

/// The directed surface distances (mm) of two masks: for each surface voxel of one mask, the distance
/// to the nearest surface voxel of the other. The lists are multisets: their order is deterministic
/// but unspecified (grouped by j-row for speed), which no statistic here depends on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SurfaceDistances {
    /// From each surface voxel of the prediction to the reference's surface.
    pub pred_to_ref: Vec<f64>,
    /// From each surface voxel of the reference to the prediction's surface.
    pub ref_to_pred: Vec<f64>,
}

impl SurfaceDistances {
    /// 95th percentile Hausdorff distance in the given convention (NaN when both lists are empty).
    pub fn hd95(&self, convention: Hd95Convention) -> f64 {
        match convention {
            Hd95Convention::Monai => percentile(&self.pred_to_ref, 95.0).max(percentile(&self.ref_to_pred, 95.0)),
            Hd95Convention::Pooled => {
                let mut all = Vec::with_capacity(self.pred_to_ref.len() + self.ref_to_pred.len());
                all.extend_from_slice(&self.pred_to_ref);
                all.extend_from_slice(&self.ref_to_pred);
                percentile_in_place(&mut all, 95.0)
            }
        }
    }

    /// Maximum (100th percentile) symmetric Hausdorff distance.
    pub fn hd(&self) -> f64 {
        self.pred_to_ref.iter().chain(&self.ref_to_pred).copied().fold(f64::NAN, f64::max)
    }

    /// Average symmetric surface distance: the mean of both directed lists pooled together — MedPy
    /// 0.5's `assd` (0.5.2 checked) and MONAI's `compute_average_surface_distance(symmetric=True)`.
    /// The older textbook form (MedPy ≤ 0.4) is [`SurfaceDistances::assd_mean_of_means`]; the two
    /// agree when both surfaces have the same number of voxels.
    pub fn assd(&self) -> f64 {
        let n = self.pred_to_ref.len() + self.ref_to_pred.len();
        (self.pred_to_ref.iter().sum::<f64>() + self.ref_to_pred.iter().sum::<f64>()) / n as f64
    }

    /// The mean of the two directed *mean* distances (MedPy ≤ 0.4's `assd`).
    pub fn assd_mean_of_means(&self) -> f64 {
        (mean(&self.pred_to_ref) + mean(&self.ref_to_pred)) / 2.0
    }
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// numpy's default (`method="linear"`) percentile: sort, rank `q/100·(n−1)`, interpolate between the
/// neighbouring order statistics. NaN for an empty list. `q` is clamped to [0, 100].
pub fn percentile(values: &[f64], q: f64) -> f64 {
    percentile_in_place(&mut values.to_vec(), q)
}

/// [`percentile`] that reorders `values` instead of copying them (O(n) selection, no full sort).
pub fn percentile_in_place(values: &mut [f64], q: f64) -> f64 {
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    let rank = (n - 1) as f64 * (q.clamp(0.0, 100.0) / 100.0);
    let lo = (rank.floor() as usize).min(n - 1);
    let t = rank - lo as f64;
    let (_, a, upper) = values.select_nth_unstable_by(lo, f64::total_cmp);
    let a = *a;
    let Some(b) = upper.iter().copied().min_by(f64::total_cmp) else { return a };
    // numpy's `_lerp`: the formula is chosen by t for monotonicity.
    let d = b - a;
    if t >= 0.5 {
        b - d * (1.0 - t)
    } else {
        a + d * t
    }
}

/// Directed surface distances of `pred` and `reference`, computed only inside the bounding box of
/// their union (exact: everything outside is background, like outside the grid). A list is empty when
/// its mask is empty; distances to an empty mask's (absent) surface are infinite.
pub fn surface_distances(
    pred: &[bool],
    reference: &[bool],
    grid: &Grid,
    connectivity: Connectivity,
) -> Result<SurfaceDistances> {
    check_pair(pred, reference, grid)?;
    let _span = tracing::debug_span!("surface_distances", dims = ?grid.dims).entered();
    let (bp, br) = rayon::join(|| bbox_where(pred, grid.dims, |v| *v), || bbox_where(reference, grid.dims, |v| *v));
    let Some(b) = union_opt(bp, br) else { return Ok(SurfaceDistances::default()) };
    let (p, r) = rayon::join(|| crop(pred, grid.dims, &b), || crop(reference, grid.dims, &b));
    Ok(distances_in(&p, &r, b.dims(), grid.spacing, connectivity))
}

/// [`surface_distances`] over the whole grid, without cropping: a slower reference kept to verify
/// the cropping.
pub fn surface_distances_uncropped(
    pred: &[bool],
    reference: &[bool],
    grid: &Grid,
    connectivity: Connectivity,
) -> Result<SurfaceDistances> {
    check_pair(pred, reference, grid)?;
    Ok(distances_in(pred, reference, grid.dims, grid.spacing, connectivity))
}

pub(crate) fn check_pair(pred: &[bool], reference: &[bool], grid: &Grid) -> Result<()> {
    grid.check("pred", pred.len())?;
    grid.check("reference", reference.len())?;
    Ok(())
}

/// Surfaces, both EDTs and the directed distances of two masks on one (possibly cropped) grid.
pub(crate) fn distances_in(
    p: &[bool],
    r: &[bool],
    dims: [usize; 3],
    sp: [f64; 3],
    c: Connectivity,
) -> SurfaceDistances {
    let (sp_, sr) = rayon::join(|| surface_of(p, dims, c), || surface_of(r, dims, c));
    let (pred_to_ref, ref_to_pred) =
        rayon::join(|| distances_at(&sr, &sp_, dims, sp), || distances_at(&sp_, &sr, dims, sp));
    SurfaceDistances { pred_to_ref, ref_to_pred }
}
