//! Cropping a volume to a box (the non-zero foreground over all channels) and restoring the crop onto
//! the original grid, keeping world positions.

use rayon::prelude::*;

use super::checked_len;
use crate::volume::{Geometry, Image, Volume};
use crate::{Result, VolumeError};

/// A box of voxels `start[a] <= index[a] < end[a]` along each axis a (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BBox {
    /// First voxel index inside the box, per axis.
    pub start: [usize; 3],
    /// One past the last voxel index inside the box, per axis.
    pub end: [usize; 3],
}

impl BBox {
    /// The box covering a whole grid of size `dims`.
    pub fn full(dims: [usize; 3]) -> Self {
        Self { start: [0; 3], end: dims }
    }

    /// Size of the box along each axis (0 where `end <= start`).
    pub fn shape(&self) -> [usize; 3] {
        [0, 1, 2].map(|a| self.end[a].saturating_sub(self.start[a]))
    }

    /// True when the box holds no voxel.
    pub fn is_empty(&self) -> bool {
        self.shape().contains(&0)
    }

    /// The box grown by `margin` voxels on every side, clipped to a grid of size `dims`.
    pub fn expand(&self, margin: usize, dims: [usize; 3]) -> Self {
        Self {
            start: [0, 1, 2].map(|a| self.start[a].saturating_sub(margin).min(dims[a])),
            end: [0, 1, 2].map(|a| self.end[a].saturating_add(margin).min(dims[a])),
        }
    }

    /// Fail unless the box is non-empty and lies inside a grid of size `dims`.
    fn check(&self, dims: [usize; 3]) -> Result<()> {
        for a in 0..3 {
            if self.start[a] >= self.end[a] || self.end[a] > dims[a] {
                return Err(VolumeError::Invalid(format!(
                    "box {:?}..{:?} is empty or does not fit in the grid {dims:?}",
                    self.start, self.end
                )));
            }
        }
        Ok(())
    }
}

/// Check that a volume's data length matches its grid and channels.
fn check_len<T>(v: &Volume<T>) -> Result<()> {
    let need = checked_len(v.geometry.dims).and_then(|n| n.checked_mul(v.channels)).unwrap_or(usize::MAX);
    if v.data.len() != need {
        return Err(VolumeError::Invalid(format!(
            "volume data has {} values but its grid {:?} × {} channel(s) needs {need}",
            v.data.len(),
            v.geometry.dims,
            v.channels
        )));
    }
    Ok(())
}

/// The smallest box holding every voxel for which `pred` is true in any channel, or `None` when there
/// is none (or the data length does not match the grid).
pub fn bbox_where<T: Sync>(v: &Volume<T>, pred: impl Fn(&T) -> bool + Sync) -> Option<BBox> {
    let [nx, ny, nz] = v.geometry.dims;
    if check_len(v).is_err() || v.geometry.is_empty() {
        return None;
    }
    let n = v.geometry.len();
    let slice_box = |k: usize| -> Option<BBox> {
        let mut b: Option<BBox> = None;
        for c in 0..v.channels {
            for j in 0..ny {
                let row = &v.data[c * n + nx * (j + ny * k)..][..nx];
                let Some(first) = row.iter().position(&pred) else {
                    continue;
                };
                let last = row.iter().rposition(&pred).unwrap_or(first);
                let r = BBox { start: [first, j, k], end: [last + 1, j + 1, k + 1] };
                b = Some(b.map_or(r, |b| union(&b, &r)));
            }
        }
        b
    };
    (0..nz).into_par_iter().filter_map(slice_box).reduce_with(|a, b| union(&a, &b))
}

fn union(a: &BBox, b: &BBox) -> BBox {
    BBox { start: [0, 1, 2].map(|i| a.start[i].min(b.start[i])), end: [0, 1, 2].map(|i| a.end[i].max(b.end[i])) }
}

/// The bounding box of the non-zero voxels over all channels, `None` when every voxel is zero.
/// NaN voxels count as non-zero.
pub fn nonzero_bbox(img: &Image) -> Option<BBox> {
    bbox_where(img, |&v| v != 0.0)
}

/// The grid of the box `b` of `g`: same directions and spacing, origin moved to voxel `b.start`.
fn cropped_geometry(g: &Geometry, b: &BBox) -> Geometry {
    let mut affine = g.affine;
    for (r, row) in affine.iter_mut().enumerate().take(3) {
        row[3] += (0..3).map(|a| g.affine[r][a] * b.start[a] as f64).sum::<f64>();
    }
    Geometry { dims: b.shape(), spacing: g.spacing, affine }
}

/// The part of `v` inside the box `b`, all channels. The affine's translation is shifted so that every
/// kept voxel keeps its world position. Fails when the box is empty or does not fit in the grid.
pub fn crop<T: Copy + Send + Sync>(v: &Volume<T>, b: &BBox) -> Result<Volume<T>> {
    check_len(v)?;
    b.check(v.geometry.dims)?;
    let [nx, ny, _] = v.geometry.dims;
    let n = v.geometry.len();
    let [ox, oy, oz] = b.shape();
    // Non-empty box, so the data is empty only with zero channels.
    let Some(&first) = v.data.first() else {
        return Ok(Volume {
            data: Vec::new(),
            geometry: cropped_geometry(&v.geometry, b),
            channels: v.channels,
            source: v.source.clone(),
        });
    };
    let mut data = vec![first; ox * oy * oz * v.channels];
    data.par_chunks_mut(ox).enumerate().for_each(|(row, dst)| {
        let j = row % oy;
        let k = (row / oy) % oz;
        let c = row / (oy * oz);
        let src = c * n + b.start[0] + nx * (b.start[1] + j + ny * (b.start[2] + k));
        dst.copy_from_slice(&v.data[src..src + ox]);
    });
    Ok(Volume { data, geometry: cropped_geometry(&v.geometry, b), channels: v.channels, source: v.source.clone() })
}

/// Put a volume cropped with [`crop`] back onto its original grid: voxels inside the box `b` come from
/// `v`, all others are `fill`; the result has geometry `original` and `v`'s channels.
///
/// Fails when the box does not fit `original`, or `v` is not on the cropped grid (dims differ, or
/// spacing or affine off by more than 1e-3 mm).
pub fn uncrop<T: Copy + Send + Sync>(v: &Volume<T>, b: &BBox, original: &Geometry, fill: T) -> Result<Volume<T>> {
    check_len(v)?;
    b.check(original.dims)?;
    let expected = cropped_geometry(original, b);
    if let Some(diff) = expected.difference(&v.geometry, 1e-3) {
        return Err(VolumeError::Invalid(format!(
            "cannot uncrop: the volume is not on the grid of box {:?}..{:?} of the original ({diff})",
            b.start, b.end
        )));
    }
    let [nx, ny, nz] = original.dims;
    let n = original.len();
    let [ox, oy, oz] = b.shape();
    let m = ox * oy * oz;
    let mut data = vec![fill; n * v.channels];
    data.par_chunks_mut(nx).enumerate().for_each(|(row, dst)| {
        let j = row % ny;
        let k = (row / ny) % nz;
        let c = row / (ny * nz);
        if j < b.start[1] || j >= b.end[1] || k < b.start[2] || k >= b.end[2] {
            return;
        }
        let src = c * m + ox * ((j - b.start[1]) + oy * (k - b.start[2]));
        dst[b.start[0]..b.end[0]].copy_from_slice(&v.data[src..src + ox]);
    });
    Ok(Volume { data, geometry: original.clone(), channels: v.channels, source: v.source.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_boxes_are_errors() {
        let g = Geometry::from_spacing([4, 4, 4], [1.0; 3]);
        let v = Volume::new(vec![1.0f32; 64], g, 1).unwrap();
        for b in [BBox { start: [0, 0, 0], end: [5, 4, 4] }, BBox { start: [2, 0, 0], end: [2, 4, 4] }] {
            assert!(crop(&v, &b).is_err());
        }
        let b = BBox::full([4, 4, 4]);
        assert_eq!(crop(&v, &b).unwrap().data, v.data);
        assert_eq!(b.expand(2, [4, 4, 4]), b);
    }
}
