//! Resampling a volume onto another grid through world coordinates (trilinear for intensities,
//! nearest neighbour for labels), and the grid of a volume at a new voxel spacing.

use rayon::prelude::*;

use super::{checked_len, invert_affine, mat_mul};
use crate::orientation::affine_spacing;
use crate::volume::{Geometry, Image, LabelMap, Volume};
use crate::{Result, VolumeError};

/// The largest number of voxels per channel that [`spacing_geometry`] will produce (2³², 16 GiB of
/// f32 per channel), so that an absurd spacing is an error rather than an allocation failure.
pub const MAX_RESAMPLED_VOXELS: usize = 1 << 32;

/// Source coordinates closer than this (in voxels) to an integer are snapped to it, so that
/// resampling onto the same grid is exact despite rounding in the affine inverse.
const SNAP: f64 = 1e-6;

/// How to read a source volume between its voxel centres.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interp {
    /// Trilinear interpolation of the 8 surrounding voxels (intensity images only).
    Linear,
    /// The value of the closest voxel (halves round away from zero); the only choice for labels.
    Nearest,
}

/// A voxel type that [`resample_to`] can read. Linear interpolation is only allowed where
/// [`Resample::LINEAR`] is true: for label types it is an error (not silently nearest), so that a
/// mistaken call shows up instead of producing smoothed label values.
pub trait Resample: Copy + Send + Sync {
    /// Whether trilinear interpolation is meaningful for this type.
    const LINEAR: bool;
    /// The value as f64 (for interpolation weights).
    fn to_f64(self) -> f64;
    /// A value from an interpolated f64 (only called when `LINEAR`).
    fn from_f64(v: f64) -> Self;
}

impl Resample for f32 {
    const LINEAR: bool = true;
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

impl Resample for i32 {
    const LINEAR: bool = false;
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_f64(v: f64) -> Self {
        v.round() as i32
    }
}

fn invalid(msg: String) -> VolumeError {
    VolumeError::Invalid(msg)
}

/// Snap a continuous index to the nearest integer when it is within [`SNAP`] of it.
#[inline]
fn snap(p: f64) -> f64 {
    let r = p.round();
    if (p - r).abs() < SNAP {
        r
    } else {
        p
    }
}

/// Read one channel at continuous index `p` (already snapped).
#[inline]
fn sample<T: Resample>(ch: &[T], dims: [usize; 3], p: [f64; 3], interp: Interp, fill: T) -> T {
    let [nx, ny, nz] = dims;
    match interp {
        Interp::Nearest => {
            let q = p.map(f64::round);
            // Negative or NaN: outside.
            if !(q[0] >= 0.0 && q[1] >= 0.0 && q[2] >= 0.0) {
                return fill;
            }
            let (i, j, k) = (q[0] as usize, q[1] as usize, q[2] as usize);
            if i >= nx || j >= ny || k >= nz {
                return fill;
            }
            ch[i + nx * (j + ny * k)]
        }
        Interp::Linear => {
            let f = p.map(f64::floor);
            // Entirely outside (also catches NaN): every neighbour would be fill.
            if !(f[0] >= -1.0 && f[1] >= -1.0 && f[2] >= -1.0)
                || f[0] >= nx as f64
                || f[1] >= ny as f64
                || f[2] >= nz as f64
            {
                return fill;
            }
            let t = [p[0] - f[0], p[1] - f[1], p[2] - f[2]];
            let base = [f[0] as i64, f[1] as i64, f[2] as i64];
            let fillv = fill.to_f64();
            let mut acc = 0.0;
            for corner in 0..8 {
                let mut w = 1.0;
                let mut idx = [0i64; 3];
                for a in 0..3 {
                    let hi = (corner >> a) & 1 == 1;
                    w *= if hi { t[a] } else { 1.0 - t[a] };
                    idx[a] = base[a] + i64::from(hi);
                }
                if w == 0.0 {
                    continue;
                }
                let inside = (0..3).all(|a| idx[a] >= 0 && (idx[a] as usize) < dims[a]);
                acc += w * if inside {
                    let (i, j, k) = (idx[0] as usize, idx[1] as usize, idx[2] as usize);
                    ch[i + nx * (j + ny * k)].to_f64()
                } else {
                    fillv
                };
            }
            T::from_f64(acc)
        }
    }
}

/// Resample `v` onto the grid `target`: each target voxel's world position (through `target.affine`)
/// is mapped through the inverse of `v`'s affine to a continuous source index, which is read by
/// `interp`. Reads outside the source grid give `fill`; with [`Interp::Linear`] each neighbour outside
/// the grid counts as `fill` (no clamping). All channels are resampled; the source is kept.
///
/// Fails for [`Interp::Linear`] on a type without linear interpolation (labels), for a singular or
/// non-finite affine, or when `v`'s data length does not match its grid. Resampling onto `v`'s own
/// grid returns the data unchanged.
pub fn resample_to<T: Resample>(v: &Volume<T>, target: &Geometry, interp: Interp, fill: T) -> Result<Volume<T>> {
    if interp == Interp::Linear && !T::LINEAR {
        return Err(invalid("linear interpolation is not defined for label maps; use nearest neighbour".into()));
    }
    let src = &v.geometry;
    let n_src = checked_len(src.dims).unwrap_or(usize::MAX);
    if n_src.checked_mul(v.channels) != Some(v.data.len()) {
        return Err(invalid(format!(
            "volume data has {} values but its grid {:?} × {} channel(s) needs {}",
            v.data.len(),
            src.dims,
            v.channels,
            n_src.saturating_mul(v.channels)
        )));
    }
    let inv = invert_affine(&src.affine)
        .ok_or_else(|| invalid(format!("the source affine {:?} is singular or not finite", src.affine)))?;
    if invert_affine(&target.affine).is_none() {
        return Err(invalid(format!("the target affine {:?} is singular or not finite", target.affine)));
    }
    let n = checked_len(target.dims)
        .filter(|&n| n <= MAX_RESAMPLED_VOXELS && n.checked_mul(v.channels).is_some())
        .ok_or_else(|| {
            invalid(format!("the target grid {:?} is larger than {MAX_RESAMPLED_VOXELS} voxels", target.dims))
        })?;
    let m = mat_mul(&inv, &target.affine);
    let mut data = vec![fill; n * v.channels];
    let [nx, ny, nz] = target.dims;
    if n > 0 && n_src > 0 {
        data.par_chunks_mut(nx).enumerate().for_each(|(row, dst)| {
            let j = (row % ny) as f64;
            let k = ((row / ny) % nz) as f64;
            let c = row / (ny * nz);
            let ch = &v.data[c * n_src..(c + 1) * n_src];
            let base = [0, 1, 2].map(|r| m[r][1] * j + m[r][2] * k + m[r][3]);
            for (i, d) in dst.iter_mut().enumerate() {
                let i = i as f64;
                let p = [0, 1, 2].map(|r| snap(base[r] + m[r][0] * i));
                *d = sample(ch, src.dims, p, interp, fill);
            }
        });
    }
    Ok(Volume { data, geometry: target.clone(), channels: v.channels, source: v.source.clone() })
}

/// The grid covering the same field of view as `g` at voxel spacing `target_spacing`: dims
/// `max(1, round(dims * spacing / target))` per axis (an axis of size 0 stays 0), the affine's
/// direction columns kept and rescaled to the new spacing, the world position of voxel (0, 0, 0)
/// kept.
///
/// Fails when a target spacing is not finite and positive, `g` has a non-positive or non-finite
/// spacing or a zero affine column, or the new grid would exceed [`MAX_RESAMPLED_VOXELS`].
pub fn spacing_geometry(g: &Geometry, target_spacing: [f64; 3]) -> Result<Geometry> {
    if target_spacing.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(invalid(format!("target spacing {target_spacing:?} mm must be finite and positive")));
    }
    if g.spacing.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(invalid(format!("the volume's spacing {:?} mm is not finite and positive", g.spacing)));
    }
    let norms = affine_spacing(&g.affine);
    if norms.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(invalid(format!("the volume's affine {:?} has a zero or non-finite direction column", g.affine)));
    }
    let mut dims = [0usize; 3];
    for a in 0..3 {
        if g.dims[a] > 0 {
            let d = (g.dims[a] as f64 * g.spacing[a] / target_spacing[a]).round();
            if d.is_nan() || d > MAX_RESAMPLED_VOXELS as f64 {
                return Err(invalid(format!(
                    "spacing {target_spacing:?} mm would make the grid {:?} too large",
                    g.dims
                )));
            }
            dims[a] = (d as usize).max(1);
        }
    }
    let total = checked_len(dims).filter(|&t| t <= MAX_RESAMPLED_VOXELS);
    if total.is_none() {
        return Err(invalid(format!(
            "spacing {target_spacing:?} mm would make a grid of {dims:?} voxels, more than {MAX_RESAMPLED_VOXELS}"
        )));
    }
    let mut affine = g.affine;
    for a in 0..3 {
        let scale = target_spacing[a] / norms[a];
        for row in affine.iter_mut().take(3) {
            row[a] *= scale;
        }
    }
    Ok(Geometry { dims, spacing: target_spacing, affine })
}

/// Resample an intensity image to voxel spacing `spacing` (mm) with trilinear interpolation, fill 0,
/// on the grid of [`spacing_geometry`].
pub fn resample_image(img: &Image, spacing: [f64; 3]) -> Result<Image> {
    let target = spacing_geometry(&img.geometry, spacing)?;
    resample_to(img, &target, Interp::Linear, 0.0)
}

/// Resample a label map to voxel spacing `spacing` (mm) with nearest neighbour, fill 0, on the grid of
/// [`spacing_geometry`].
pub fn resample_labels(l: &LabelMap, spacing: [f64; 3]) -> Result<LabelMap> {
    let target = spacing_geometry(&l.geometry, spacing)?;
    resample_to(l, &target, Interp::Nearest, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_refuse_linear() {
        let g = Geometry::from_spacing([2, 2, 2], [1.0; 3]);
        let l = Volume::new(vec![1i32; 8], g.clone(), 1).unwrap();
        assert!(resample_to(&l, &g, Interp::Linear, 0).is_err());
        assert_eq!(resample_to(&l, &g, Interp::Nearest, 0).unwrap().data, l.data);
    }

    #[test]
    fn half_voxel_outside_mixes_fill() {
        // 1-D along x: source values 2 at i=0, 4 at i=1; target shifted by -0.5 voxel.
        let g = Geometry::from_spacing([2, 1, 1], [1.0; 3]);
        let v = Volume::new(vec![2.0f32, 4.0], g.clone(), 1).unwrap();
        let mut t = g.clone();
        t.affine[0][3] = -0.5;
        t.dims = [3, 1, 1];
        let r = resample_to(&v, &t, Interp::Linear, 10.0).unwrap();
        // y, z are exact integers; x = -0.5, 0.5, 1.5.
        assert_eq!(r.data, vec![6.0, 3.0, 7.0]);
    }
}
