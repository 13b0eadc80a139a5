//! magseg-patch: patch sampling, augmentation, an in-memory case cache, a prefetching batch loader and
//! sliding-window inference helpers (grid, Gaussian importance, blending).
//!
//! Every buffer is plain `f32`/`u8`. Volumes and patches are channels-first `(C, D, H, W)` in NIfTI
//! order (i fastest): `data[i + ni*(j + nj*(k + nk*c))]`. Nothing here knows about candle; every
//! failure is a [`PatchError`]. All randomness comes from the seeded [`Rng`], so results depend only
//! on the seed, never on thread count.

pub mod augment;
pub mod cache;
mod error;
pub mod loader;
pub mod rng;
pub mod sampler;
pub mod window;

pub use augment::AugmentConfig;
pub use cache::{CaseCache, CaseData};
pub use error::{PatchError, Result};
pub use loader::{Batch, Loader, LoaderConfig};
pub use rng::Rng;
pub use sampler::{Patch, PatchSampler, SamplerConfig};
pub use window::{gaussian_importance, window_grid, Accumulator};
