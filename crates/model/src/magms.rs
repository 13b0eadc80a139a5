//! The MAG-MS network: one single-channel encoder per modality, bias-free 1×1×1 fusion
//! convolutions on each encoder feature, mean fusion over the modalities present, and one shared
//! decoder that decodes the fused features and, in training, each modality's own features.
//!
//! Parameter names: `encoders.{m}.<backbone encoder>` (UNETR: `vit.…`, `encoder1.…`; U-Net:
//! `blocks.…`), `encoders.{m}.fusion.{l}.weight`, `decoder.<backbone decoder>` (UNETR:
//! `decoder5.…`, `out.…`; U-Net: `up.…`, `blocks.…`, `out.…`).

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{var_builder::SimpleBackend, VarBuilder, VarMap};

use crate::init::SeededInit;

use crate::layers::Conv3d;
use crate::unet::{UnetDecoder, UnetEncoder};
use crate::unetr::{UnetrDecoder, UnetrEncoder};
use crate::{check_input, is_unused_parameter, MagMsConfig, ModelError, ModelKind, Result};

/// A backbone encoder.
#[derive(Debug, Clone)]
enum Backbone {
    Unetr(Box<UnetrEncoder>),
    Unet(UnetEncoder),
}

/// A backbone decoder.
#[derive(Debug, Clone)]
enum SharedDecoder {
    Unetr(Box<UnetrDecoder>),
    Unet(UnetDecoder),
}

/// One modality's encoder and its fusion convolutions.
#[derive(Debug, Clone)]
struct ModalityEncoder {
    backbone: Backbone,
    fusion: Vec<Conv3d>,
}

/// One modality's training outputs.
#[derive(Debug, Clone)]
pub struct ModalityOutput {
    /// The modality's index in [`MagMsConfig::modalities`].
    pub modality: usize,
    /// The shared decoder's logits from this modality's features alone, `(B, classes, D, H, W)`.
    pub logits: Tensor,
    /// The modality's fusion-conv feature maps, finest first (5 for UNETR, 4 for U-Net).
    pub features: Vec<Tensor>,
}

/// What [`MagMs::forward`] returns.
#[derive(Debug, Clone)]
pub struct MagMsOutput {
    /// Logits decoded from the fused features, `(B, classes, D, H, W)`.
    pub fused: Tensor,
    /// Training only (empty in inference): each present modality's outputs, in modality order.
    pub modalities: Vec<ModalityOutput>,
    /// Training only (empty in inference): the fused feature maps (the mean of the present
    /// modalities' fusion-conv features), finest first.
    pub fused_features: Vec<Tensor>,
    /// Training with two or more modalities present: the decoder's batch as it ran.
    pub stacked: Option<StackedOutputs>,
}

/// In training the shared decoder runs once, on the fused features and every present modality's
/// stacked along the batch axis; [`MagMsOutput::fused`] and each [`ModalityOutput::logits`] are
/// views of its output. (Every layer of the decoders treats samples independently: convolutions and
/// instance norms.) With `M` modalities, one pass over the batch has `1/(1 + M)` of the graph nodes
/// and kernel launches of `1 + M` passes, each launch with `1 + M` times the work.
#[derive(Debug, Clone)]
pub struct StackedOutputs {
    /// `((1 + M)·B, classes, D, H, W)` logits (f32): the fused output's `B` rows first, then each
    /// present modality's, in modality order.
    pub logits: Tensor,
    /// Per level, finest first, `((1 + M)·B, C_l, …)`: the fused features, then each present
    /// modality's, in the same order.
    pub features: Vec<Tensor>,
}

/// The modality-agnostic MAG-MS network, with its parameters (f32) in one [`VarMap`]. It computes in
/// f32, or in bf16 with f32 parameters, norms and logits after [`MagMs::set_compute_dtype`].
#[derive(Clone)]
pub struct MagMs {
    config: MagMsConfig,
    varmap: VarMap,
    device: Device,
    compute_dtype: DType,
    encoders: Vec<ModalityEncoder>,
    decoder: SharedDecoder,
}

impl std::fmt::Debug for MagMs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MagMs").field("config", &self.config).field("parameters", &self.num_parameters()).finish()
    }
}

impl MagMs {
    /// Builds a freshly initialised network on `device` (validating `config`), with the initial
    /// weights of seed 0 (see [`MagMs::with_seed`]).
    pub fn new(config: MagMsConfig, device: &Device) -> Result<Self> {
        Self::with_seed(config, device, 0)
    }

    /// Builds a network whose initial weights depend only on `seed` (and each parameter's name):
    /// PyTorch's default uniform bounds for convolutions and linear layers, N(0, 0.02) for the
    /// ViT's linear layers and position embeddings, as [`MagMs::new`].
    pub fn with_seed(config: MagMsConfig, device: &Device, seed: u64) -> Result<Self> {
        Self::build(config, device, SeededInit { varmap: VarMap::new(), seed, frozen: false })
    }

    /// The same network for inference: its parameters are detached views of this one's (the same
    /// storage, so later updates show through), so that a forward pass builds no autograd graph
    /// and frees each activation as soon as the next layer has read it. Cheap (no copies).
    pub fn frozen(&self) -> Result<Self> {
        let mut net = Self::build(
            self.config.clone(),
            &self.device,
            SeededInit { varmap: self.varmap.clone(), seed: 0, frozen: true },
        )?;
        net.compute_dtype = self.compute_dtype;
        Ok(net)
    }

    /// Builds the network's layers under `init`, which creates (or, frozen, looks up) each parameter.
    fn build(config: MagMsConfig, device: &Device, init: SeededInit) -> Result<Self> {
        config.validate()?;
        let varmap = init.varmap.clone();
        let backend: Box<dyn SimpleBackend> = Box::new(init);
        let vb = VarBuilder::from_backend(backend, DType::F32, device.clone());
        let channels = config.feature_channels();
        let mut encoders = Vec::with_capacity(config.modalities.len());
        for m in 0..config.modalities.len() {
            let e = vb.pp("encoders").pp(m);
            let backbone = match config.kind {
                ModelKind::Unetr => Backbone::Unetr(Box::new(UnetrEncoder::new(e.clone(), config.unetr_config())?)),
                ModelKind::Unet => Backbone::Unet(UnetEncoder::new(e.clone(), 1, config.unet_base_channels)?),
            };
            let fusion = channels
                .iter()
                .enumerate()
                .map(|(l, &c)| Conv3d::new(e.pp("fusion").pp(l), c, c, 1, false))
                .collect::<Result<Vec<_>>>()?;
            encoders.push(ModalityEncoder { backbone, fusion });
        }
        let d = vb.pp("decoder");
        let decoder = match config.kind {
            ModelKind::Unetr => SharedDecoder::Unetr(Box::new(UnetrDecoder::new(d, config.unetr_config())?)),
            ModelKind::Unet => {
                SharedDecoder::Unet(UnetDecoder::new(d, config.unet_base_channels, config.out_channels)?)
            }
        };
        Ok(Self { config, varmap, device: device.clone(), compute_dtype: DType::F32, encoders, decoder })
    }

    /// The configuration.
    pub fn config(&self) -> &MagMsConfig {
        &self.config
    }

    /// All parameters by name (including MONAI's unused `norm_cross_attn` LayerNorms).
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// The device the parameters live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Every parameter with its name, sorted by name.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        named_vars(&self.varmap)
    }

    /// The parameters an optimiser should update, sorted by name: all but the unused ones
    /// (see [`is_unused_parameter`]).
    pub fn trainable_vars(&self) -> Vec<(String, Var)> {
        self.named_vars().into_iter().filter(|(n, _)| !is_unused_parameter(n)).collect()
    }

    /// Number of scalar parameters (all of them, as PyTorch's `parameters()` counts).
    pub fn num_parameters(&self) -> usize {
        count_parameters(&self.varmap)
    }

    /// The dtype activations are computed in (f32 unless set otherwise).
    pub fn compute_dtype(&self) -> DType {
        self.compute_dtype
    }

    /// Computes in `dtype`: `F32` (the default) or `BF16` (mixed precision as PyTorch's autocast:
    /// inputs, convolutions, linear layers and features in bf16; parameters, norm statistics, the
    /// attention softmax and the returned logits in f32). Other dtypes are refused.
    pub fn set_compute_dtype(&mut self, dtype: DType) -> Result<()> {
        if !matches!(dtype, DType::F32 | DType::BF16) {
            return Err(ModelError::Config(format!("compute dtype {dtype:?} is not supported (f32 or bf16)")));
        }
        self.compute_dtype = dtype;
        Ok(())
    }

    /// Modality `m`'s fusion-conv features for `x (B, 1, D, H, W)`, in the compute dtype: `(D, H, W)`
    /// is the patch, or for the U-Net any size it accepts ([`MagMsConfig::accepts_size`]).
    pub fn encode(&self, m: usize, x: &Tensor) -> Result<Vec<Tensor>> {
        let enc = self.encoders.get(m).ok_or_else(|| {
            ModelError::Input(format!("modality index {m} out of range (the model has {})", self.encoders.len()))
        })?;
        let size = match x.dims() {
            &[_, _, d, h, w] if self.config.accepts_size([d, h, w]) => [d, h, w],
            _ => self.config.patch_size,
        };
        check_input(x, 1, size)?;
        let x = &x.to_dtype(self.compute_dtype)?;
        let feats = match &enc.backbone {
            Backbone::Unetr(e) => e.forward(x)?,
            Backbone::Unet(e) => e.forward(x)?,
        };
        feats.iter().zip(&enc.fusion).map(|(f, conv)| conv.forward(f)).collect()
    }

    /// Decodes (fused or single-modality) features into logits (f32) with the shared decoder.
    pub fn decode(&self, features: &[Tensor]) -> Result<Tensor> {
        let logits = match &self.decoder {
            SharedDecoder::Unetr(d) => d.forward(features)?,
            SharedDecoder::Unet(d) => d.forward(features)?,
        };
        Ok(logits.to_dtype(DType::F32)?)
    }

    /// Runs the network on the modalities present: `inputs[m]` is modality `m`'s image
    /// `(B, 1, patch_size)` or `None` when missing (its encoder is not run). Any non-empty
    /// subset works; with `train` the output also holds each present modality's logits and
    /// features and the fused features. Errors (never panics) on a wrong number of slots, no
    /// modality present, or inputs of the wrong shape.
    pub fn forward(&self, inputs: &[Option<Tensor>], train: bool) -> Result<MagMsOutput> {
        let n = self.encoders.len();
        if inputs.len() != n {
            return Err(ModelError::Input(format!("expected {n} modality slots, got {}", inputs.len())));
        }
        let present: Vec<(usize, &Tensor)> =
            inputs.iter().enumerate().filter_map(|(m, x)| Some((m, x.as_ref()?))).collect();
        let Some(&(_, first)) = present.first() else {
            return Err(ModelError::NoModality { expected: n });
        };
        let _span = tracing::debug_span!("magms_forward", present = present.len(), train).entered();
        for &(m, x) in &present {
            if x.dims() != first.dims() {
                return Err(ModelError::Input(format!(
                    "modality {} has shape {:?}, another present modality {:?}",
                    self.config.modalities[m],
                    x.dims(),
                    first.dims()
                )));
            }
        }
        let feats = present.iter().map(|&(m, x)| self.encode(m, x)).collect::<Result<Vec<_>>>()?;
        let fused_features = mean_features(&feats)?;
        if !train {
            let fused = self.decode(&fused_features)?;
            return Ok(MagMsOutput { fused, modalities: Vec::new(), fused_features: Vec::new(), stacked: None });
        }
        if present.len() == 1 {
            // The fused features are the modality's own: one decoder pass serves both outputs.
            let fused = self.decode(&fused_features)?;
            let features = feats.into_iter().next().unwrap_or_default();
            let modalities = vec![ModalityOutput { modality: present[0].0, logits: fused.clone(), features }];
            return Ok(MagMsOutput { fused, modalities, fused_features, stacked: None });
        }
        let b = first.dim(0)?;
        let features = (0..fused_features.len())
            .map(|l| {
                let level: Vec<&Tensor> =
                    std::iter::once(&fused_features[l]).chain(feats.iter().map(|f| &f[l])).collect();
                Ok(Tensor::cat(&level, 0)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let logits = self.decode(&features)?;
        let fused = logits.narrow(0, 0, b)?;
        let mut modalities = Vec::with_capacity(present.len());
        for (i, (&(m, _), features)) in present.iter().zip(feats).enumerate() {
            modalities.push(ModalityOutput { modality: m, logits: logits.narrow(0, (i + 1) * b, b)?, features });
        }
        let stacked = Some(StackedOutputs { logits, features });
        Ok(MagMsOutput { fused, modalities, fused_features, stacked })
    }

    /// Inference: the fused logits for the modalities present.
    pub fn predict(&self, inputs: &[Option<Tensor>]) -> Result<Tensor> {
        Ok(self.forward(inputs, false)?.fused)
    }
}

/// Mean fusion: the element-wise mean per level over several modalities' features (the features
/// themselves when only one modality is present).
pub fn mean_features(feats: &[Vec<Tensor>]) -> Result<Vec<Tensor>> {
    let Some(first) = feats.first() else {
        return Err(ModelError::Input("no features to fuse".into()));
    };
    if feats.len() == 1 {
        return Ok(first.clone());
    }
    let k = feats.len() as f64;
    (0..first.len())
        .map(|l| {
            let mut sum = feats[0][l].clone();
            for f in &feats[1..] {
                sum = (sum + &f[l])?;
            }
            Ok((sum / k)?)
        })
        .collect()
}

/// Every variable of `varmap` with its name, sorted by name.
pub(crate) fn named_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
    let mut v: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Number of scalars in `varmap`.
pub(crate) fn count_parameters(varmap: &VarMap) -> usize {
    named_vars(varmap).iter().map(|(_, v)| v.elem_count()).sum()
}
