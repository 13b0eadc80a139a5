//! The one error type of magseg-volume: every failure names the file and what was expected.

use std::path::PathBuf;

/// Everything that can go wrong while reading, checking, transforming or writing volumes and datasets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VolumeError {
    /// An operating-system error on a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a format we read, or its header is inconsistent.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, in words.
        reason: String,
    },
    /// A valid but unsupported variant (NIfTI-2, complex or RGB data, ...).
    #[error("{path}: not supported: {what}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is not supported.
        what: String,
    },
    /// The voxel data ends before the header says it should (truncated download, wrong vox_offset).
    #[error("{path}: data is shorter than the header says: expected {expected} bytes of voxel data from offset {offset}, found {found}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes the header promises.
        expected: u64,
        /// Bytes actually present.
        found: u64,
        /// Offset of the voxel data.
        offset: u64,
    },
    /// An image contains NaN or infinite voxels.
    #[error("{path}: {count} voxel(s) are NaN or infinite (first at voxel index {first:?}); fix or mask the image before use")]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// Number of non-finite voxels.
        count: usize,
        /// (x, y, z, channel) of the first one.
        first: [usize; 4],
    },
    /// Volumes that must share a grid do not.
    #[error("grid mismatch between {a} and {b}: {difference}")]
    GridMismatch {
        /// The first file.
        a: PathBuf,
        /// The second file.
        b: PathBuf,
        /// What differs, with both values.
        difference: String,
    },
    /// A label map holds a value that the label preset does not know.
    #[error("{path}: label value {value} ({count} voxels) is not in preset '{preset}' (expected one of {expected:?})")]
    UnknownLabel {
        /// The label file.
        path: PathBuf,
        /// The offending value.
        value: i32,
        /// How many voxels hold it.
        count: usize,
        /// The preset's name.
        preset: String,
        /// The values the preset allows.
        expected: Vec<i32>,
    },
    /// A dataset folder or manifest is malformed (missing files, unknown modality names, ...).
    #[error("{path}: {reason}")]
    Dataset {
        /// The folder or manifest.
        path: PathBuf,
        /// What is wrong and what was expected.
        reason: String,
    },
    /// A request that cannot be carried out (bad argument values, overwriting an input, ...).
    #[error("{0}")]
    Invalid(String),
}

impl VolumeError {
    /// Shorthand for an IO error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
    /// Shorthand for a format error on `path`.
    pub fn format(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Format { path: path.into(), reason: reason.into() }
    }
    /// Shorthand for a dataset error on `path`.
    pub fn dataset(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Dataset { path: path.into(), reason: reason.into() }
    }
}

/// Result alias of this crate.
pub type Result<T, E = VolumeError> = std::result::Result<T, E>;
