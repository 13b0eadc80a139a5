//! magseg-volume: NIfTI-1 / Analyze 7.5 IO, the `Volume` type and its geometry, preprocessing
//! (reorientation, cropping, normalisation, resampling), dataset layouts, label presets and phantom data.
//!
//! Voxel data is kept in NIfTI order: `data[i + nx*(j + ny*(k + nz*c))]`. Nothing here knows about
//! tensors or candle; every failure is a [`VolumeError`] naming the file and what was expected.

mod error;
pub mod orientation;
pub mod read;
mod volume;
pub mod write;

pub use error::{Result, VolumeError};
pub use read::{read_header, read_image, read_image_unchecked, read_labels, DataType};
pub use volume::{identity, Affine, FileFormat, Geometry, Image, LabelMap, Source, Volume};
pub use write::{write_image, write_labels};
