//! magseg-model: UNETR with MONAI's parameter names, the MAG-MS modality-agnostic network
//! (per-modality encoders, fusion convolutions, mean fusion, one shared decoder) with a UNETR or
//! a light 3-D U-Net backbone, checkpoints, and MONAI UNETR weight import.
//!
//! # Overview
//!
//! - [`Unetr`]: MONAI 1.6.1's `UNETR(..., proj_type="perceptron", norm_name="instance",
//!   res_block=True)`; its [`candle_nn::VarMap`] holds the parameters under MONAI's state-dict
//!   names, so [`import_monai_unetr`] loads a MONAI state dict saved as safetensors by name.
//! - [`MagMs`]: the MAG-MS network configured by [`MagMsConfig`] ([`ModelKind::Unetr`] or
//!   [`ModelKind::Unet`]); [`MagMs::forward`] takes one optional tensor per modality and
//!   returns a [`MagMsOutput`]; [`MagMs::save`] / [`MagMs::load`] write and read a checkpoint
//!   directory.
//!
//! All tensors are f32 `(B, C, D, H, W)`; the 3-D convolutions and instance norms come from
//! magseg-kernels, and so do the layer norms, the attention softmax, GELU and leaky ReLU (custom ops
//! with their gradients written out), so every used parameter gets a gradient.
//!
//! MONAI's transformer blocks own a `norm_cross_attn` LayerNorm that their forward pass never
//! uses (no cross-attention); it is kept so names and parameter counts match MONAI, and
//! [`is_unused_parameter`] / [`MagMs::trainable_vars`] leave it out of training.

mod blocks;
mod checkpoint;
mod config;
mod error;
mod init;
mod layers;
mod magms;
mod unet;
mod unetr;
mod vit;

use candle_core::{DType, Tensor};

pub use blocks::{UnetOutBlock, UnetResBlock, UnetrBasicBlock, UnetrPrUpBlock, UnetrUpBlock};
pub use checkpoint::{import_monai_unetr, load_weights, read_config, CONFIG_FILE, WEIGHTS_FILE};
pub use config::{MagMsConfig, ModelKind};
pub use error::{ModelError, Result};
pub use magms::{mean_features, MagMs, MagMsOutput, ModalityOutput, StackedOutputs};
pub use unet::{unet_channels, ConvBlock, UnetDecoder, UnetEncoder, UNET_LEVELS};
pub use unetr::{Unetr, UnetrConfig, UnetrDecoder, UnetrEncoder};
pub use vit::{Mlp, PatchEmbedding, SelfAttention, TransformerBlock, Vit, VitOutput, VitSizes};

/// Whether the parameter `name` is one MONAI creates but never uses in the forward pass (the
/// transformer blocks' `norm_cross_attn`): it is saved and loaded but gets no gradient.
pub fn is_unused_parameter(name: &str) -> bool {
    name.contains(".norm_cross_attn.")
}

/// Checks that `x` is an f32 (or, for mixed precision, bf16) `(B, channels, size[0], size[1], size[2])`
/// tensor with `B ≥ 1`.
pub(crate) fn check_input(x: &Tensor, channels: usize, size: [usize; 3]) -> Result<()> {
    let dims = x.dims();
    let ok = dims.len() == 5 && dims[0] > 0 && dims[1] == channels && dims[2..] == size;
    if !ok {
        return Err(ModelError::Input(format!(
            "expected shape (B, {channels}, {}, {}, {}), got {dims:?}",
            size[0], size[1], size[2]
        )));
    }
    if !matches!(x.dtype(), DType::F32 | DType::BF16) {
        return Err(ModelError::Input(format!("expected f32 or bf16 input, got {:?}", x.dtype())));
    }
    Ok(())
}
