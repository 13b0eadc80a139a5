//! The `Volume` type: voxel data in NIfTI order (x fastest, then y, z, channel) with its grid geometry.

use std::path::PathBuf;

/// A 4×4 voxel-to-world matrix (row major); world coordinates are NIfTI's RAS+ millimetres.
pub type Affine = [[f64; 4]; 4];

/// The grid of a volume: its size, voxel spacing and voxel-to-world affine.
#[derive(Debug, Clone, PartialEq)]
pub struct Geometry {
    /// Number of voxels along i, j, k (the file's first three axes).
    pub dims: [usize; 3],
    /// Voxel size in mm along i, j, k (always positive).
    pub spacing: [f64; 3],
    /// Voxel (i, j, k, 1) to world (x, y, z, 1), RAS+ mm.
    pub affine: Affine,
}

impl Geometry {
    /// An axis-aligned grid with the given spacing and zero origin (NIfTI "method 1").
    pub fn from_spacing(dims: [usize; 3], spacing: [f64; 3]) -> Self {
        let mut affine = identity();
        for (a, s) in spacing.iter().enumerate() {
            affine[a][a] = *s;
        }
        Self { dims, spacing, affine }
    }

    /// Number of voxels in one channel.
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    /// True when the grid holds no voxel.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Linear index of voxel (i, j, k) in NIfTI order.
    #[inline]
    pub fn index(&self, i: usize, j: usize, k: usize) -> usize {
        i + self.dims[0] * (j + self.dims[1] * k)
    }

    /// Orientation code in nibabel's convention (the direction each voxel axis increases towards),
    /// e.g. "RAS" or "LPS".
    pub fn orientation(&self) -> String {
        crate::orientation::axcodes(&self.affine).iter().collect()
    }

    /// Describe how `other` differs from `self`, or `None` when they agree within `tol`
    /// (mm for affine entries and spacing).
    pub fn difference(&self, other: &Geometry, tol: f64) -> Option<String> {
        if self.dims != other.dims {
            return Some(format!("shape {:?} vs {:?}", self.dims, other.dims));
        }
        for a in 0..3 {
            if (self.spacing[a] - other.spacing[a]).abs() > tol {
                return Some(format!("spacing {:?} vs {:?} mm", self.spacing, other.spacing));
            }
        }
        for r in 0..3 {
            for c in 0..4 {
                let d = (self.affine[r][c] - other.affine[r][c]).abs();
                if d > tol {
                    return Some(format!(
                        "affine entry [{r}][{c}] {} vs {} (differs by {d:.4}); affines {:?} vs {:?}",
                        self.affine[r][c], other.affine[r][c], self.affine, other.affine
                    ));
                }
            }
        }
        None
    }
}

/// The 4×4 identity.
pub fn identity() -> Affine {
    let mut m = [[0.0; 4]; 4];
    for (i, row) in m.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    m
}

/// Where a volume came from, and the header fields needed to write a result that overlays it.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file read (the `.hdr` for pairs), if any.
    pub path: Option<PathBuf>,
    /// On-disk format.
    pub format: FileFormat,
    /// On-disk datatype name ("int16", "float32", ...).
    pub datatype: &'static str,
    /// The file's NIfTI-1 header (Analyze headers are converted), kept for its codes and qform.
    pub header: nifti::NiftiHeader,
}

/// On-disk formats read by magseg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Single-file NIfTI-1 (`.nii`, `.nii.gz`).
    Nifti1Single,
    /// NIfTI-1 header/image pair (`.hdr` + `.img`, optionally gzipped).
    Nifti1Pair,
    /// Analyze 7.5 pair without NIfTI magic.
    Analyze75,
    /// Made in memory.
    Memory,
}

impl FileFormat {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Nifti1Single => "NIfTI-1",
            FileFormat::Nifti1Pair => "NIfTI-1 pair",
            FileFormat::Analyze75 => "Analyze 7.5",
            FileFormat::Memory => "in memory",
        }
    }
}

impl Source {
    /// True when the file stored its header and voxels little-endian.
    pub fn little_endian(&self) -> bool {
        self.header.endianness == nifti::Endianness::Little
    }
}

impl Default for Source {
    fn default() -> Self {
        Self { path: None, format: FileFormat::Memory, datatype: "none", header: nifti::NiftiHeader::default() }
    }
}

/// A 3-D volume with one or more channels. `data[i + nx*(j + ny*(k + nz*c))]` is voxel (i, j, k) of
/// channel c.
#[derive(Debug, Clone)]
pub struct Volume<T> {
    /// Voxel values, channel after channel, each in NIfTI order.
    pub data: Vec<T>,
    /// The grid.
    pub geometry: Geometry,
    /// Number of channels (the NIfTI 4th and higher axes, flattened).
    pub channels: usize,
    /// Where it came from.
    pub source: Source,
}

/// An intensity image.
pub type Image = Volume<f32>;
/// An integer label map.
pub type LabelMap = Volume<i32>;

impl<T: Copy> Volume<T> {
    /// A volume made in memory; `data.len()` must be `geometry.len() * channels`.
    pub fn new(data: Vec<T>, geometry: Geometry, channels: usize) -> crate::Result<Self> {
        if data.len() != geometry.len() * channels {
            return Err(crate::VolumeError::Invalid(format!(
                "volume data has {} values but the grid {:?} × {channels} channel(s) needs {}",
                data.len(),
                geometry.dims,
                geometry.len() * channels
            )));
        }
        Ok(Self { data, geometry, channels, source: Source::default() })
    }

    /// The voxel values of channel `c`.
    pub fn channel(&self, c: usize) -> &[T] {
        let n = self.geometry.len();
        &self.data[c * n..(c + 1) * n]
    }

    /// Mutable voxel values of channel `c`.
    pub fn channel_mut(&mut self, c: usize) -> &mut [T] {
        let n = self.geometry.len();
        &mut self.data[c * n..(c + 1) * n]
    }

    /// The same grid and source with other data (same number of channels unless `channels` says).
    pub fn with_data<U: Copy>(&self, data: Vec<U>, channels: usize) -> crate::Result<Volume<U>> {
        let mut v = Volume::new(data, self.geometry.clone(), channels)?;
        v.source = self.source.clone();
        Ok(v)
    }
}

impl Image {
    /// Minimum and maximum over all channels (NaN-free data assumed), `None` when empty.
    pub fn range(&self) -> Option<(f32, f32)> {
        let mut it = self.data.iter().copied();
        let first = it.next()?;
        Some(it.fold((first, first), |(lo, hi), v| (lo.min(v), hi.max(v))))
    }
}

impl LabelMap {
    /// Each distinct label value with its voxel count, ascending by value.
    pub fn counts(&self) -> Vec<(i32, usize)> {
        let mut map = std::collections::BTreeMap::new();
        for &v in &self.data {
            *map.entry(v).or_insert(0usize) += 1;
        }
        map.into_iter().collect()
    }
}
