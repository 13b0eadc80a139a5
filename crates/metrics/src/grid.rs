//! The voxel grid every mask lives on (dims and spacing in NIfTI order), its checks, bounding boxes
//! and cropping.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{MetricsError, Result};

/// A voxel grid: `dims` = (nx, ny, nz) and `spacing` in mm along i, j, k. Data on the grid is a plain
/// slice in NIfTI order, `data[i + nx*(j + ny*k)]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    /// Number of voxels along i, j, k.
    pub dims: [usize; 3],
    /// Voxel size in mm along i, j, k.
    pub spacing: [f64; 3],
}

impl Grid {
    /// A grid with the given dims and spacing (checked when used, see [`Grid::validate`]).
    pub fn new(dims: [usize; 3], spacing: [f64; 3]) -> Self {
        Self { dims, spacing }
    }

    /// An isotropic 1 mm grid.
    pub fn unit(dims: [usize; 3]) -> Self {
        Self { dims, spacing: [1.0; 3] }
    }

    /// Number of voxels, or an error when the spacing is not finite and positive or the product of
    /// the dims overflows.
    pub fn validate(&self) -> Result<usize> {
        if let Some(s) = self.spacing.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(MetricsError::InvalidGrid(format!(
                "spacing {:?} mm: every spacing must be finite and > 0 (found {s})",
                self.spacing
            )));
        }
        self.dims.iter().try_fold(1usize, |a, d| a.checked_mul(*d)).ok_or_else(|| {
            MetricsError::InvalidGrid(format!("dims {:?} have more voxels than fit in memory", self.dims))
        })
    }

    /// Validate the grid and check that `what` has one value per voxel.
    pub(crate) fn check(&self, what: &'static str, len: usize) -> Result<usize> {
        let n = self.validate()?;
        if len != n {
            return Err(MetricsError::LengthMismatch { what, got: len, expected: n, dims: self.dims });
        }
        Ok(n)
    }
}

/// An axis-aligned box of voxels: `lo` inclusive, `hi` exclusive, per axis (i, j, k).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BBox {
    /// First voxel index per axis.
    pub lo: [usize; 3],
    /// One past the last voxel index per axis.
    pub hi: [usize; 3],
}

impl BBox {
    /// Box dimensions.
    pub fn dims(&self) -> [usize; 3] {
        [self.hi[0] - self.lo[0], self.hi[1] - self.lo[1], self.hi[2] - self.lo[2]]
    }

    /// The smallest box holding both.
    pub fn union(&self, o: &BBox) -> BBox {
        let f =
            |a: [usize; 3], b: [usize; 3], g: fn(usize, usize) -> usize| [g(a[0], b[0]), g(a[1], b[1]), g(a[2], b[2])];
        BBox { lo: f(self.lo, o.lo, usize::min), hi: f(self.hi, o.hi, usize::max) }
    }

    /// The same box on a grid of the box's own dims with `spacing`.
    pub(crate) fn grid(&self, spacing: [f64; 3]) -> Grid {
        Grid { dims: self.dims(), spacing }
    }
}

/// The union of two optional boxes.
pub(crate) fn union_opt(a: Option<BBox>, b: Option<BBox>) -> Option<BBox> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.union(&b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Bounding box of the voxels where `member` is true, or `None` when there is none. Parallel over
/// k-slices.
pub(crate) fn bbox_where<T: Sync>(data: &[T], dims: [usize; 3], member: impl Fn(&T) -> bool + Sync) -> Option<BBox> {
    let [nx, ny, _] = dims;
    if data.is_empty() || nx == 0 || ny == 0 {
        return None;
    }
    data.par_chunks(nx * ny)
        .enumerate()
        .map(|(k, slice)| {
            let mut b: Option<BBox> = None;
            for (j, row) in slice.chunks(nx).enumerate() {
                // A branch-free pass first: most rows of a segmentation are empty.
                if !row.iter().fold(false, |acc, v| acc | member(v)) {
                    continue;
                }
                let first = row.iter().position(&member).unwrap_or(0);
                let last = row.iter().rposition(&member).unwrap_or(0);
                b = union_opt(b, Some(BBox { lo: [first, j, k], hi: [last + 1, j + 1, k + 1] }));
            }
            b
        })
        .reduce(|| None, union_opt)
}

/// Bounding box of the true voxels of `mask` (checked against `grid`), `None` when empty.
pub fn bounding_box(mask: &[bool], grid: &Grid) -> Result<Option<BBox>> {
    grid.check("mask", mask.len())?;
    Ok(bbox_where(mask, grid.dims, |v| *v))
}

/// Copy the voxels of `b` out of `data` (on a grid of `dims`), in NIfTI order of the box.
pub(crate) fn crop<T: Copy + Send + Sync + Default>(data: &[T], dims: [usize; 3], b: &BBox) -> Vec<T> {
    let [nx, ny, _] = dims;
    let [bx, by, bz] = b.dims();
    let mut out = vec![T::default(); bx * by * bz];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(bx * by).enumerate().for_each(|(kk, slice)| {
        let k = b.lo[2] + kk;
        for (jj, row) in slice.chunks_mut(bx).enumerate() {
            let start = b.lo[0] + nx * (b.lo[1] + jj + ny * k);
            row.copy_from_slice(&data[start..start + bx]);
        }
    });
    out
}
