//! magseg-metrics: exact Euclidean distance transform, surface extraction, Dice, HD95 (MONAI and
//! pooled conventions), maximum Hausdorff distance, ASSD, per-region evaluation and summaries.
//!
//! Nothing here knows about tensors or candle: masks and label maps are plain slices in NIfTI order,
//! `data[i + nx*(j + ny*k)]`, on a [`Grid`] of dims (nx, ny, nz) and spacing in mm along i, j, k.
//! Every failure is a [`MetricsError`]; nothing panics on user input.
//!
//! # Conventions
//!
//! - **Surface** of a mask: the mask XOR its binary erosion with the 6- or 26-neighbourhood
//!   ([`Connectivity`], 6 by default as MONAI's `get_mask_edges` and MedPy). Voxels outside the grid
//!   count as background (scipy `border_value=0`), so mask voxels on the grid border are surface.
//! - **Directed distances** d(A→B): for each surface voxel of A, the exact Euclidean distance (mm, with
//!   the grid's anisotropic spacing) to the nearest surface voxel of B ([`SurfaceDistances`]).
//! - **HD95** ([`Hd95Convention`]): `Monai` (default) = max(P95(d(A→B)), P95(d(B→A))), as MONAI's
//!   `compute_hausdorff_distance`; `Pooled` = P95 of both lists concatenated, as MedPy `hd95`,
//!   panoptica and the BraTS challenge. They differ up to ~3× when the errors are one-sided. P95 is
//!   numpy's default linear-interpolation percentile ([`percentile`]).
//! - **HD** = the maximum over both lists. **ASSD** = the mean of both lists pooled, as MedPy 0.5's
//!   `assd` and MONAI's symmetric average surface distance. The older textbook form (MedPy ≤ 0.4),
//!   the mean of the two directed means, is [`SurfaceDistances::assd_mean_of_means`]; the two agree
//!   when both surfaces have equally many voxels.
//! - **Dice** = 2|A∩B| / (|A|+|B|).
//!
//! # Empty masks ([`EvalOptions`])
//!
//! - Both empty: Dice, HD95, HD and ASSD are NaN with note [`EmptyCase::BothEmpty`] (nnU-Net's
//!   convention, the default [`BothEmpty::Nan`]); summaries exclude such cases from the means and count
//!   them in [`RegionSummary::n_nan`]. With [`BothEmpty::Perfect`]: Dice 1, distances 0.
//! - Exactly one empty: Dice 0 and HD95 = HD = ASSD = `empty_penalty_mm` (default 373.13 mm, the
//!   BraTS convention: the diagonal of a 1 mm 240×240×155 volume, whatever the grid), note
//!   [`EmptyCase::PredEmpty`] or [`EmptyCase::RefEmpty`]; summaries include them and count them in
//!   [`RegionSummary::n_penalised`]. (MONAI returns NaN/inf here and silently drops the case from
//!   means; this crate does not.)
//!
//! # Speed
//!
//! The EDT is separable (binary scan along i, Felzenszwalb–Huttenlocher envelopes along j and k),
//! parallel with rayon and blocked so that memory is read in whole cache lines. Surface metrics only
//! need distances between surface voxels, so [`compare_masks`] crops both masks to the bounding box of
//! their union first (exact: outside it everything is background, just like outside the grid) and
//! computes the two EDTs only there.
//!
//! # GPU (feature `cuda`)
//!
//! `cuda::CudaEdt` (the EDT) and `cuda::CudaSurface` (surface distances, HD95, HD, ASSD, Dice)
//! compute the same numbers as the CPU functions, bit for bit: the same crop, surfaces and f64
//! arithmetic in the same order (kernels compiled with `-fmad=false`).

#[cfg(feature = "cuda")]
pub mod cuda;
mod distances;
mod edt;
mod error;
mod grid;
mod line;
mod pair;
mod regions;
mod summary;
mod surface;

pub use distances::{
    percentile, percentile_in_place, surface_distances, surface_distances_uncropped, Hd95Convention, SurfaceDistances,
};
pub use edt::{edt, edt_squared};
pub use error::{MetricsError, Result};
pub use grid::{bounding_box, BBox, Grid};
pub use pair::{compare_masks, dice, BothEmpty, EmptyCase, EvalOptions, PairMetrics, BRATS_EMPTY_PENALTY_MM};
pub use regions::{evaluate_labels, RegionMetrics};
pub use summary::{summarize, RegionSummary};
pub use surface::{surface, Connectivity};
