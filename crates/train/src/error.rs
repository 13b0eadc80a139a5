//! The crate's error type, [`TrainError`].

use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong while configuring, running, checkpointing or resuming training.
#[derive(Debug, Error)]
pub enum TrainError {
    /// The training configuration is inconsistent (found before any work starts).
    #[error("invalid training configuration: {0}")]
    Config(String),
    /// The data set does not fit the configuration.
    #[error("data: {0}")]
    Data(String),
    /// A checkpoint directory is missing, incomplete or does not match the configuration.
    #[error("{path}: {reason}")]
    Checkpoint {
        /// The checkpoint directory or file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The loss or a gradient became NaN or infinite.
    #[error("training diverged at step {step}: {what}")]
    Diverged {
        /// The step (0-based).
        step: u64,
        /// What was not finite.
        what: String,
    },
    /// Drawing the training curve failed.
    #[error("{path}: cannot draw the training curve: {reason}")]
    Plot {
        /// The picture file.
        path: PathBuf,
        /// The plotting library's message.
        reason: String,
    },
    /// From magseg-volume.
    #[error(transparent)]
    Volume(#[from] magseg_volume::VolumeError),
    /// From magseg-metrics.
    #[error(transparent)]
    Metrics(#[from] magseg_metrics::MetricsError),
    /// From magseg-patch.
    #[error(transparent)]
    Patch(#[from] magseg_patch::PatchError),
    /// From magseg-model.
    #[error(transparent)]
    Model(#[from] magseg_model::ModelError),
    /// From magseg-distill.
    #[error(transparent)]
    Distill(#[from] magseg_distill::DistillError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl TrainError {
    /// An [`TrainError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
        let path = path.into();
        move |source| TrainError::Io { path, source }
    }
}

/// `Result` with [`TrainError`].
pub type Result<T> = std::result::Result<T, TrainError>;
