//! The crate's error type.

/// Everything that can go wrong in magseg-patch.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A patch or window does not fit in the volume (no padding is done here; pad beforehand).
    #[error("patch/window {patch:?} is larger than the volume {dims:?}; pad the volume first")]
    TooLarge {
        /// The requested patch or window size.
        patch: [usize; 3],
        /// The volume size.
        dims: [usize; 3],
    },
    /// Buffer lengths or shapes disagree.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// The case cache holds no case.
    #[error("the case cache is empty")]
    EmptyCache,
    /// A loader worker stopped without delivering its batch.
    #[error("loader worker failed: {0}")]
    Worker(String),
    /// An error from magseg-volume (e.g. unknown label values).
    #[error(transparent)]
    Volume(#[from] magseg_volume::VolumeError),
}

/// Result with [`PatchError`].
pub type Result<T> = std::result::Result<T, PatchError>;
