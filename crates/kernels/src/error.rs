//! The crate's error type, [`KernelsError`], and its conversion into candle errors.

use thiserror::Error;

/// Everything that can go wrong in this crate: bad shapes, bad configurations, unsupported dtypes
/// or devices. Public functions that return a `candle_core::Result` wrap it with
/// `candle_core::Error::wrap` (candle keeps its message); the slice kernels in [`crate::cpu`]
/// return it as is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KernelsError {
    /// A tensor does not have the rank the operation needs.
    #[error("{op}: {what} must have rank {expected}, got shape {shape:?}")]
    Rank {
        /// The operation that rejected the tensor.
        op: &'static str,
        /// Which argument ("input", "weight", ...).
        what: &'static str,
        /// The rank expected ("5", "at least 3").
        expected: &'static str,
        /// The shape received.
        shape: Vec<usize>,
    },
    /// Two shapes that must agree do not.
    #[error("{op}: {msg}")]
    Shape {
        /// The operation that rejected the shapes.
        op: &'static str,
        /// What does not agree, with the numbers.
        msg: String,
    },
    /// A configuration value (stride, padding, eps) is out of range.
    #[error("{op}: invalid configuration: {msg}")]
    Config {
        /// The operation that rejected the configuration.
        op: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// The operation has no implementation for this dtype (yet).
    #[error("{op}: dtype {dtype} is not supported (supported: {supported})")]
    Dtype {
        /// The operation.
        op: &'static str,
        /// The dtype received, as candle names it.
        dtype: String,
        /// The dtypes that are supported.
        supported: &'static str,
    },
    /// The arguments of one operation do not share one dtype.
    #[error("{op}: dtypes differ: {lhs} and {rhs}")]
    DtypeMismatch {
        /// The operation.
        op: &'static str,
        /// The first dtype.
        lhs: String,
        /// The second dtype.
        rhs: String,
    },
    /// The operation has no implementation on this device (yet).
    #[error("{op}: no implementation on device {device}")]
    Device {
        /// The operation.
        op: &'static str,
        /// The device, as candle names it.
        device: String,
    },
    /// A CUDA driver call failed.
    #[error("{op}: CUDA driver error: {msg}")]
    Cuda {
        /// The operation.
        op: &'static str,
        /// The call that failed and the driver's error.
        msg: String,
    },
    /// A storage handed to a custom op was not laid out as the op expects (a bug, not user input).
    #[error("{op}: internal layout error: {msg}")]
    Layout {
        /// The operation.
        op: &'static str,
        /// What was found.
        msg: String,
    },
}

impl From<KernelsError> for candle_core::Error {
    fn from(e: KernelsError) -> Self {
        candle_core::Error::wrap(e)
    }
}
