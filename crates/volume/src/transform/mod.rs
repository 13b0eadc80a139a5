//! Preprocessing transforms on [`Volume`](crate::Volume)s: reorientation to RAS, cropping to the
//! non-zero bounding box, z-score normalisation and resampling, plus the small affine helpers they share.
//!
//! Every geometric transform keeps world positions: the affine of a result is updated so that each voxel
//! still maps to the same RAS+ millimetre position, and each has an exact inverse
//! ([`from_ras`] for [`to_ras`], [`uncrop`] for [`crop`]).

mod crop;
mod normalize;
mod orient;
mod resample;

pub use crop::{bbox_where, crop, nonzero_bbox, uncrop, BBox};
pub use normalize::{nonzero_stats, zscore_nonzero, ChannelStats};
pub use orient::{from_ras, to_ras, Reorientation};
pub use resample::{
    resample_image, resample_labels, resample_to, spacing_geometry, Interp, Resample, MAX_RESAMPLED_VOXELS,
};

use crate::volume::Affine;

/// Number of voxels of a grid of size `dims`, `None` on overflow.
pub(crate) fn checked_len(dims: [usize; 3]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// The product `a · b` of two 4×4 matrices.
pub fn mat_mul(a: &Affine, b: &Affine) -> Affine {
    let mut out = [[0.0; 4]; 4];
    for (r, row) in out.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *v = (0..4).map(|k| a[r][k] * b[k][c]).sum();
        }
    }
    out
}

/// The world position `m · (p, 1)` of the continuous voxel index `p` (or any affine point map).
pub fn apply_affine(m: &Affine, p: [f64; 3]) -> [f64; 3] {
    let mut out = [0.0; 3];
    for (r, v) in out.iter_mut().enumerate() {
        *v = m[r][0] * p[0] + m[r][1] * p[1] + m[r][2] * p[2] + m[r][3];
    }
    out
}

/// The inverse of a general 4×4 matrix (Gauss–Jordan elimination with partial pivoting), or `None`
/// when it is singular (a pivot below 1e-12 times the largest entry) or holds a non-finite entry.
pub fn invert_affine(m: &Affine) -> Option<Affine> {
    let scale = m.iter().flatten().try_fold(0.0f64, |acc, &v| v.is_finite().then(|| acc.max(v.abs())))?;
    if scale == 0.0 {
        return None;
    }
    let tol = scale * 1e-12;
    // Augmented matrix [m | I].
    let mut a = [[0.0f64; 8]; 4];
    for r in 0..4 {
        a[r][..4].copy_from_slice(&m[r]);
        a[r][4 + r] = 1.0;
    }
    for col in 0..4 {
        let pivot = (col..4).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))?;
        if a[pivot][col].abs() <= tol {
            return None;
        }
        a.swap(col, pivot);
        let p = a[col][col];
        for v in a[col].iter_mut() {
            *v /= p;
        }
        let pivot_row = a[col];
        for (r, row) in a.iter_mut().enumerate() {
            if r == col {
                continue;
            }
            let f = row[col];
            if f != 0.0 {
                for (v, pv) in row.iter_mut().zip(pivot_row.iter()) {
                    *v -= f * pv;
                }
            }
        }
    }
    let mut out = [[0.0; 4]; 4];
    for r in 0..4 {
        out[r].copy_from_slice(&a[r][4..]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity;

    #[test]
    fn inverse_of_general_affine() {
        let m = [[0.0, 0.0, -1.2, 10.0], [-0.9, 0.1, 0.0, 239.0], [0.0, 2.5, 0.3, -7.0], [0.0, 0.0, 0.0, 1.0]];
        let inv = invert_affine(&m).expect("invertible");
        let p = mat_mul(&m, &inv);
        let id = identity();
        for r in 0..4 {
            for c in 0..4 {
                assert!((p[r][c] - id[r][c]).abs() < 1e-12, "{p:?}");
            }
        }
    }

    #[test]
    fn singular_and_non_finite_are_rejected() {
        let mut m = identity();
        m[2][2] = 0.0;
        assert!(invert_affine(&m).is_none());
        let mut m = identity();
        m[0][3] = f64::NAN;
        assert!(invert_affine(&m).is_none());
        assert!(invert_affine(&[[0.0; 4]; 4]).is_none());
    }
}
