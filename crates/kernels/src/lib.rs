//! magseg-kernels: the 3-D tensor operations candle 0.11 lacks — `conv3d`, `conv_transpose3d` and
//! `instance_norm` — with fast CPU implementations and gradients.
//!
//! # Operations
//!
//! - [`conv3d()`]: PyTorch layouts, any kernel size, stride and zero padding (dilation 1, groups 1).
//!   A [`candle_core::CustomOp2`] ([`Conv3d`]) whose backward pass applies two more custom ops,
//!   [`Conv3dBackwardData`] and [`Conv3dBackwardWeight`]; the bias is added by [`add_channel_bias`].
//! - [`conv_transpose3d()`]: padding 0, any kernel and stride ([`ConvTranspose3d`]); its forward
//!   pass is conv3d's backward-data pass, its gradients reuse the conv3d passes.
//! - [`instance_norm`]: custom ops for f32 (statistics, normalisation with γ and β, and the
//!   backward pass's sums and input gradient); other dtypes compose the statistics from candle ops
//!   (long sums in two stages, [`reduce`]: candle's CUDA reductions use one block per output).
//! - [`layer_norm()`], [`softmax_last()`]: over the last dimension, as custom ops with their
//!   gradients written out (f32; other dtypes through candle ops).
//! - [`leaky_relu()`], [`gelu_erf()`]: one custom op each way (gradients written out).
//! - [`max_pool2()`]: 2×2×2 max pooling, one custom op each way, PyTorch's choice of maximum.
//! - [`linear()`], [`self_attention()`]: the ViT's dense layers, each one autograd node (candle's
//!   storage matmuls inside, gradients written out).
//! - [`optim`]: Adam / AdamW as fused in-place passes (a clamped sum of squares for the gradient
//!   norm, the moment update, the parameter update), bit-identical on the CPU and the GPU.
//!
//! # Implementation (CPU, f32)
//!
//! The passes in [`cpu`] work on plain slices described by a [`Conv3dGeometry`]; every pass is a
//! correlation computed plane by plane, in parallel with rayon over runs of output planes, with
//! single-threaded `gemm` calls inside (faster here than one `gemm` with its own rayon
//! parallelism: 92 against 127 ms for 32 → 32 channels at 64³). Nothing larger than one tile is
//! ever materialised (never a k³-fold copy of an activation):
//!
//! - **implicit GEMM** (stride 1, ≥ 8 input channels): each thread pads a ring of kD input planes
//!   and multiplies strided views of it, one GEMM per kernel tap with K = input channels;
//! - **tiled vol2col** (strides > 1, few channels): the columns of a few output rows are gathered
//!   into a buffer that stays in L2 and multiplied with the weight matrix;
//! - **pointwise** (1×1×1, stride 1): one GEMM per batch element straight on the tensors.
//!
//! Backward-data splits the input gradient into stride phases, each a stride-1 correlation of the
//! output gradient with a flipped sub-kernel (no work on inserted zeros); it is also the forward
//! pass of conv_transpose3d. Backward-weight accumulates per work item and sums at the end.
//!
//! Large outputs are fresh allocations: with glibc's default `malloc` every buffer over 32 MiB is
//! a new `mmap`, whose page faults cost 5–15 % of a conv3d and most of an instance norm at
//! 32 × 64³. A binary can avoid that with a caching allocator or a higher `M_MMAP_THRESHOLD`.
//!
//! # bf16
//!
//! Every op also takes bf16 tensors (both operands bf16: mixed dtypes are a
//! [`KernelsError::DtypeMismatch`]). On the CPU, bf16 operands are converted to f32 (exact), the f32
//! pass runs, and the result is rounded to bf16 (round to nearest even), so the bf16 path is
//! testable on any machine (tests/bf16.rs).
//!
//! # Implementation (CUDA, feature `cuda`)
//!
//! Every custom op also has a `cuda_fwd` (module `cuda`, kernels in `src/cuda/*.cu`, compiled to PTX by
//! build.rs with nvcc and loaded through candle's `CudaDevice::get_or_load_custom_func`). Two
//! implementations, chosen per op by [`CudaConvPath`] (default: `MAGSEG_CONV_CUDA=direct` selects the
//! direct kernels, `tf32` the GEMM kernels with f32 on tensor cores as tf32, anything else the GEMM
//! kernels):
//!
//! - **implicit GEMM** (`conv3d_igemm.cu`): shared-memory block tiles with the im2col matrix gathered
//!   on the fly; f32 with 4×4 register micro-tiles, bf16 on tensor cores in all three passes
//!   (`mma.sync` m16n8k16, f32 accumulation), and on [`CudaConvPath::GemmTf32`] f32 on the same
//!   tensor-core tiles as tf32 (m16n8k8); backward-weight as split-K over a fixed partition of
//!   the voxels into partial buffers that a second kernel sums in order; a one-tap kernel for
//!   backward-data when kernel == stride and padding is 0 (conv_transpose3d kernel 2 stride 2);
//! - **direct** (`conv3d.cu`, the reference): one thread per output element (forward) or input element
//!   (backward-data), one block per (output, input channel) pair with a shared-memory tree reduction
//!   (backward-weight); f32 only, bf16 goes through f32 on the GPU.
//!
//! Sums run in a fixed order (no atomics), so GPU results are deterministic; they equal the CPU's
//! within f32 rounding (tests/cuda_conv.rs, both paths, f32 and bf16).
//!
//! Other dtypes and devices (Metal) return [`KernelsError::Dtype`] / [`KernelsError::Device`]
//! (wrapped in a candle error).

mod activation;
pub mod alloc;
mod bias;
mod check;
mod conv3d;
mod conv_transpose3d;
pub mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
mod dense;
mod error;
mod geom;
mod norm;
mod op;
pub mod optim;
mod path;
mod pool;
pub mod reduce;
mod rows;

pub use activation::{gelu_erf, leaky_relu};
pub use bias::add_bias;
pub(crate) use bias::add_channel_bias;
pub use conv3d::{conv3d, conv3d_with_path, Conv3d, Conv3dBackwardData, Conv3dBackwardWeight, Conv3dConfig};
pub use conv_transpose3d::{conv_transpose3d, conv_transpose3d_with_path, ConvTranspose3d};
pub use dense::{linear, self_attention};
pub use error::KernelsError;
pub use geom::Conv3dGeometry;
pub use norm::{instance_norm, instance_norm_leaky_relu};
pub use path::CudaConvPath;
pub use pool::max_pool2;
pub use rows::{layer_norm, softmax_last};
