//! magseg-volume: NIfTI-1 / Analyze 7.5 IO, the `Volume` type and its geometry, preprocessing
//! (reorientation, cropping, normalisation, resampling), dataset layouts, label presets and phantom data.
//!
//! Voxel data is kept in NIfTI order: `data[i + nx*(j + ny*(k + nz*c))]`. Nothing here knows about
//! tensors or candle; every failure is a [`VolumeError`] naming the file and what was expected.

pub mod case;
pub mod dataset;
mod error;
pub mod labels;
pub mod orientation;
pub mod phantom;
pub mod read;
pub mod transform;
mod volume;
pub mod write;

pub use case::{load_case, load_images, LoadedCase};
pub use dataset::{discover, Case, Dataset, Layout, ModalityFile};
pub use error::{Result, VolumeError};
pub use labels::{LabelPreset, Region};
pub use read::{read_header, read_image, read_image_unchecked, read_labels, DataType};
pub use volume::{identity, Affine, FileFormat, Geometry, Image, LabelMap, Source, Volume};
pub use write::{write_image, write_labels};
