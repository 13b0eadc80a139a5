//! Exact, reversible reorientation of a volume's voxel axes to RAS (axis permutation and flips only,
//! no interpolation), keeping every voxel's world position.

use rayon::prelude::*;

use super::checked_len;
use crate::orientation::axis_permutation;
use crate::volume::{Affine, Geometry, Volume};
use crate::{Result, VolumeError};

/// How [`to_ras`] rearranged a volume: which original axis each RAS axis came from, which were
/// flipped, and the original and RAS geometries. [`from_ras`] uses it to undo the change exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct Reorientation {
    /// For each output (RAS) axis, the original voxel axis it is taken from.
    perm: [usize; 3],
    /// For each output (RAS) axis, whether its direction is reversed relative to the original axis.
    flip: [bool; 3],
    /// The grid before reorientation.
    original: Geometry,
    /// The grid after reorientation.
    ras: Geometry,
}

impl Reorientation {
    /// For each RAS voxel axis, the original voxel axis it comes from.
    pub fn permutation(&self) -> [usize; 3] {
        self.perm
    }

    /// For each RAS voxel axis, whether it runs against the original axis.
    pub fn flips(&self) -> [bool; 3] {
        self.flip
    }

    /// The grid before reorientation (restored by [`from_ras`]).
    pub fn original(&self) -> &Geometry {
        &self.original
    }

    /// The grid after reorientation (what [`from_ras`] expects its input to have).
    pub fn ras_geometry(&self) -> &Geometry {
        &self.ras
    }

    /// True when the volume was already RAS and nothing was moved.
    pub fn is_identity(&self) -> bool {
        self.perm == [0, 1, 2] && self.flip == [false; 3]
    }
}

/// The permutation and flips that bring an affine to RAS: for each output axis, (input axis, flip).
/// Falls back to the identity when the axis codes do not form a permutation (a degenerate affine
/// with a zero column), so such volumes pass through unchanged.
fn ras_mapping(m: &Affine) -> ([usize; 3], [bool; 3]) {
    let codes = axis_permutation(m);
    let mut perm = [usize::MAX; 3];
    let mut flip = [false; 3];
    for (input_axis, (world, flipped)) in codes.iter().enumerate() {
        if *world > 2 || perm[*world] != usize::MAX {
            return ([0, 1, 2], [false; 3]);
        }
        perm[*world] = input_axis;
        flip[*world] = *flipped;
    }
    (perm, flip)
}

/// The geometry of a grid whose output axis `o` is input axis `perm[o]`, reversed when `flip[o]`.
fn permuted_geometry(g: &Geometry, perm: [usize; 3], flip: [bool; 3]) -> Geometry {
    let mut affine = g.affine;
    let mut dims = [0; 3];
    let mut spacing = [0.0; 3];
    for o in 0..3 {
        let a = perm[o];
        dims[o] = g.dims[a];
        spacing[o] = g.spacing[a];
        let sign = if flip[o] { -1.0 } else { 1.0 };
        // Flipping axis a moves the origin to the old voxel n_a − 1 along it.
        let steps = if flip[o] { g.dims[a].saturating_sub(1) as f64 } else { 0.0 };
        for (row, old) in affine.iter_mut().zip(g.affine.iter()).take(3) {
            row[o] = sign * old[a];
            row[3] += old[a] * steps;
        }
    }
    Geometry { dims, spacing, affine }
}

/// Voxel data rearranged so that output axis `o` is input axis `perm[o]`, reversed when `flip[o]`.
fn permute_data<T: Copy + Send + Sync>(
    data: &[T],
    dims: [usize; 3],
    channels: usize,
    perm: [usize; 3],
    flip: [bool; 3],
) -> Vec<T> {
    let n: usize = dims.iter().product();
    if n == 0 || channels == 0 {
        return Vec::new();
    }
    let stride = [1isize, dims[0] as isize, (dims[0] * dims[1]) as isize];
    let mut out_dims = [0; 3];
    let mut step = [0isize; 3];
    let mut offset = 0isize;
    for o in 0..3 {
        let a = perm[o];
        out_dims[o] = dims[a];
        if flip[o] {
            offset += (dims[a] as isize - 1) * stride[a];
            step[o] = -stride[a];
        } else {
            step[o] = stride[a];
        }
    }
    let (nx, ny, nz) = (out_dims[0], out_dims[1], out_dims[2]);
    let mut out = vec![data[0]; n * channels];
    out.par_chunks_mut(nx).enumerate().for_each(|(row, dst)| {
        let j = row % ny;
        let k = (row / ny) % nz;
        let c = row / (ny * nz);
        let base = (c * n) as isize + offset + j as isize * step[1] + k as isize * step[2];
        for (i, d) in dst.iter_mut().enumerate() {
            // In range by construction: each axis index stays within its input extent.
            *d = data[(base + i as isize * step[0]) as usize];
        }
    });
    out
}

/// Reorient a volume to RAS by permuting and flipping its voxel axes (no interpolation), so that
/// the result's axis codes are "RAS" (for oblique grids: the closest axis-aligned orientation).
///
/// The affine is updated exactly, so every voxel keeps its world position; dims and spacing are
/// permuted, channels and source kept. A volume that is already RAS is returned unchanged. The
/// returned [`Reorientation`] undoes the change with [`from_ras`].
///
/// A volume with a degenerate affine (a zero column), or whose data length does not match its grid,
/// is also returned unchanged with an identity record (and [`from_ras`] then reports the mismatch).
pub fn to_ras<T: Copy + Send + Sync>(v: &Volume<T>) -> (Volume<T>, Reorientation) {
    let consistent = checked_len(v.geometry.dims).and_then(|n| n.checked_mul(v.channels)) == Some(v.data.len());
    let (perm, flip) = if consistent { ras_mapping(&v.geometry.affine) } else { ([0, 1, 2], [false; 3]) };
    let ras = permuted_geometry(&v.geometry, perm, flip);
    let data = if perm == [0, 1, 2] && flip == [false; 3] {
        v.data.clone()
    } else {
        permute_data(&v.data, v.geometry.dims, v.channels, perm, flip)
    };
    let out = Volume { data, geometry: ras.clone(), channels: v.channels, source: v.source.clone() };
    let record = Reorientation { perm, flip, original: v.geometry.clone(), ras };
    (out, record)
}

/// Undo [`to_ras`]: bring a volume on the RAS grid recorded in `r` back to the original voxel order
/// and geometry, voxel for voxel (any number of channels; a prediction made on the RAS grid works).
///
/// Fails when `v`'s grid is not the recorded RAS grid (dims, spacing or affine off by more than
/// 1e-3 mm) or its data length does not match its grid.
pub fn from_ras<T: Copy + Send + Sync>(v: &Volume<T>, r: &Reorientation) -> Result<Volume<T>> {
    if let Some(diff) = r.ras.difference(&v.geometry, 1e-3) {
        return Err(VolumeError::Invalid(format!(
            "cannot undo the reorientation: the volume is not on the RAS grid it was made for ({diff})"
        )));
    }
    if checked_len(v.geometry.dims).and_then(|n| n.checked_mul(v.channels)) != Some(v.data.len()) {
        return Err(VolumeError::Invalid(format!(
            "volume data has {} values but its grid {:?} × {} channel(s) needs {}",
            v.data.len(),
            v.geometry.dims,
            v.channels,
            v.geometry.len().saturating_mul(v.channels)
        )));
    }
    let mut inv_perm = [0; 3];
    let mut inv_flip = [false; 3];
    for (o, &a) in r.perm.iter().enumerate() {
        inv_perm[a] = o;
        inv_flip[a] = r.flip[o];
    }
    let data = if r.is_identity() {
        v.data.clone()
    } else {
        permute_data(&v.data, v.geometry.dims, v.channels, inv_perm, inv_flip)
    };
    Ok(Volume { data, geometry: r.original.clone(), channels: v.channels, source: v.source.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degenerate_affine_passes_through() {
        let mut g = Geometry::from_spacing([2, 3, 4], [1.0, 1.0, 1.0]);
        g.affine[1][1] = 0.0;
        let v = Volume::new((0..24).collect::<Vec<i32>>(), g, 1).unwrap();
        let (r, rec) = to_ras(&v);
        assert!(rec.is_identity());
        assert_eq!(r.data, v.data);
        assert_eq!(from_ras(&r, &rec).unwrap().data, v.data);
    }
}
