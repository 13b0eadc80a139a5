//! The crate's error type, [`ModelError`].

use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong when building, running, saving or loading a model.
#[derive(Debug, Error)]
pub enum ModelError {
    /// The configuration cannot describe a working network.
    #[error("invalid model configuration: {0}")]
    Config(String),
    /// An input tensor has the wrong rank, shape, dtype or device.
    #[error("invalid input: {0}")]
    Input(String),
    /// A forward pass was asked for with no modality present.
    #[error("no modality present: give at least one of the {expected} modality inputs")]
    NoModality {
        /// How many modality slots the model has.
        expected: usize,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A `config.json` could not be parsed or written.
    #[error("{path}: bad model configuration file: {source}")]
    Json {
        /// The configuration file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// A weight file does not hold exactly the model's parameters.
    #[error(
        "{path}: weights do not match the model: {} missing {missing:?}, {} unexpected {unexpected:?}",
        missing.len(),
        unexpected.len()
    )]
    Keys {
        /// The weight file.
        path: PathBuf,
        /// Parameters of the model that the file lacks (sorted).
        missing: Vec<String>,
        /// Tensors in the file that the model has no parameter for (sorted).
        unexpected: Vec<String>,
    },
    /// A tensor in a weight file has another shape than the model's parameter.
    #[error("{path}: tensor {name} has shape {found:?}, the model expects {expected:?}")]
    WeightShape {
        /// The weight file.
        path: PathBuf,
        /// The parameter name.
        name: String,
        /// The model's shape.
        expected: Vec<usize>,
        /// The file's shape.
        found: Vec<usize>,
    },
    /// A tensor operation failed (candle or magseg-kernels).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// `Result` with [`ModelError`].
pub type Result<T> = std::result::Result<T, ModelError>;
