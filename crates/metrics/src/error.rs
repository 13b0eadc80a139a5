//! The crate's error type: every way user input can be unusable for a metric.

/// Errors of magseg-metrics. Metrics never panic on user input; they return one of these.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A mask, label map or distance map does not have one value per grid voxel.
    #[error("{what} has {got} voxels but the grid {dims:?} has {expected}")]
    LengthMismatch {
        /// Which input ("pred", "reference", "features", ...).
        what: &'static str,
        /// Its length.
        got: usize,
        /// The number of grid voxels.
        expected: usize,
        /// The grid dimensions.
        dims: [usize; 3],
    },
    /// Two masks that must be compared voxel by voxel differ in length.
    #[error("pred has {pred} voxels but reference has {reference}")]
    MaskLengths {
        /// Length of the prediction.
        pred: usize,
        /// Length of the reference.
        reference: usize,
    },
    /// The grid itself is unusable (non-positive or non-finite spacing, too many voxels).
    #[error("invalid grid: {0}")]
    InvalidGrid(String),
    /// An evaluation option is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// A CUDA driver call failed (feature `cuda`): no device, PTX not loadable, launch or copy failed.
    #[error("CUDA: {0}")]
    Cuda(String),
}

/// `Result` with [`MetricsError`].
pub type Result<T, E = MetricsError> = std::result::Result<T, E>;
