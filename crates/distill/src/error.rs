//! The error type of the distillation losses.

/// Everything that can go wrong when computing a loss.
#[derive(Debug, thiserror::Error)]
pub enum DistillError {
    /// Two tensors (or a tensor and the expected layout) do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A tensor has a dtype the loss does not accept.
    #[error("unsupported dtype: {0}")]
    DType(String),
    /// A label lies outside `0..num_classes`.
    #[error("label out of range: {0}")]
    Label(String),
    /// A configuration value is invalid (negative weight, non-positive temperature, ...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, DistillError>;
