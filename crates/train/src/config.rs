//! The training configuration (`train.toml`): every section with its defaults, and the checks that
//! run before any work starts.

use std::path::PathBuf;

use magseg_distill::{LossConfig, SubsetSchedule};
use magseg_model::{MagMsConfig, ModelKind};
use magseg_patch::{AugmentConfig, SamplerConfig};
use serde::{Deserialize, Serialize};

use crate::data::DataConfig;
use crate::infer::WindowConfig;
use crate::optim::OptimConfig;
use crate::schedule::LrSchedule;
use crate::{Result, TrainError};

/// The whole configuration. Every section but `[data]` is optional; unknown keys are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The data set and split.
    pub data: DataConfig,
    /// The network.
    #[serde(default)]
    pub model: ModelSection,
    /// Length, batch, seed, device, output.
    #[serde(default)]
    pub train: RunSection,
    /// The optimiser.
    #[serde(default)]
    pub optim: OptimConfig,
    /// The learning-rate schedule.
    #[serde(default)]
    pub schedule: LrSchedule,
    /// The MAG-MS objective.
    #[serde(default)]
    pub loss: LossSection,
    /// Patch sampling and augmentation.
    #[serde(default)]
    pub sampling: SamplingSection,
    /// Validation.
    #[serde(default)]
    pub validation: ValidationSection,
}

/// `[model]`: backbone and sizes (the patch is also the sliding window).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// `unetr` (the paper's) or `unet` (the lighter 3-D U-Net).
    pub kind: ModelKind,
    /// Patch size in voxels along (i, j, k) of the RAS grid; UNETR needs multiples of 16, the
    /// U-Net multiples of 8.
    pub patch: [usize; 3],
    /// UNETR: channels of the first convolutional level.
    pub feature_size: usize,
    /// UNETR: ViT width.
    pub hidden_size: usize,
    /// UNETR: ViT MLP width.
    pub mlp_dim: usize,
    /// UNETR: attention heads.
    pub num_heads: usize,
    /// UNETR: transformer blocks.
    pub num_layers: usize,
    /// U-Net: channels of the first level.
    pub unet_base_channels: usize,
}

impl Default for ModelSection {
    fn default() -> Self {
        let d = MagMsConfig::default();
        Self {
            kind: ModelKind::Unetr,
            patch: [96; 3],
            feature_size: d.feature_size,
            hidden_size: d.hidden_size,
            mlp_dim: d.mlp_dim,
            num_heads: d.num_heads,
            num_layers: d.num_layers,
            unet_base_channels: d.unet_base_channels,
        }
    }
}

/// Metrics log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (`metrics.jsonl`).
    #[default]
    Jsonl,
    /// Comma-separated values with a header (`metrics.csv`).
    Csv,
}

/// `[train]`: run length and logistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSection {
    /// Epochs.
    pub epochs: u64,
    /// Steps per epoch; default: training cases / batch, rounded up (one patch per case).
    pub steps_per_epoch: Option<u64>,
    /// Patches per step.
    pub batch: usize,
    /// Seed of initialisation, sampling, augmentation and subset draws.
    pub seed: u64,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Compute precision: `f32`, or `bf16` (mixed precision: bf16 activations and convolutions,
    /// f32 parameters, optimiser, norm statistics, logits and losses).
    pub precision: Precision,
    /// Patch-preparing threads.
    pub workers: usize,
    /// Output directory (checkpoints, logs, curves).
    pub output: PathBuf,
    /// Write the resumable checkpoint every this many epochs (and at the end).
    pub checkpoint_every: u64,
    /// Stop (validate, checkpoint) once this many seconds of training have passed.
    pub time_limit_s: Option<f64>,
    /// With `time_limit_s`: the learning-rate schedule runs over the time budget instead of the
    /// planned steps (progress = seconds trained / time_limit_s, as the PyTorch reference
    /// magms_unet_ref.py does), so that a run cut by time still anneals fully. Needs a schedule without
    /// warm-up steps. The learning rate then depends on the machine's speed: a resumed run is not
    /// bit-identical to an uninterrupted one.
    pub schedule_by_time: bool,
    /// Metrics log format.
    pub log_format: LogFormat,
}

impl Default for RunSection {
    fn default() -> Self {
        Self {
            epochs: 100,
            steps_per_epoch: None,
            batch: 2,
            seed: 0,
            device: "cpu".into(),
            precision: Precision::F32,
            workers: 2,
            output: PathBuf::from("runs/magseg"),
            checkpoint_every: 1,
            time_limit_s: None,
            schedule_by_time: false,
            log_format: LogFormat::Jsonl,
        }
    }
}

/// `[loss]`: the MAG-MS objective (λ = γ = T = 1 and the reference teacher by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossSection {
    /// KL self-distillation weight λ (0 with `gamma = 0` is the no-self-distillation ablation).
    pub lambda: f64,
    /// Feature MSE weight γ.
    pub gamma: f64,
    /// Temperature T.
    pub temperature: f64,
    /// Soften the teacher by T too.
    pub soften_teacher: bool,
    /// Detach the teacher.
    pub detach_teacher: bool,
    /// `{ kind = "reference" }` or `{ kind = "extended", k = 2 }`.
    pub subsets: SubsetSchedule,
}

impl Default for LossSection {
    fn default() -> Self {
        let l = LossConfig::default();
        Self {
            lambda: l.lambda,
            gamma: l.gamma,
            temperature: l.temperature,
            soften_teacher: l.soften_teacher,
            detach_teacher: l.detach_teacher,
            subsets: SubsetSchedule::Reference,
        }
    }
}

impl LossSection {
    /// The distill crate's loss settings.
    pub fn loss_config(&self) -> LossConfig {
        LossConfig {
            lambda: self.lambda,
            gamma: self.gamma,
            temperature: self.temperature,
            soften_teacher: self.soften_teacher,
            detach_teacher: self.detach_teacher,
        }
    }
}

/// `[sampling]`: foreground-biased crops and augmentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingSection {
    /// Relative weight of crops centred on tumour.
    pub pos: f32,
    /// Relative weight of crops centred on background inside the brain.
    pub neg: f32,
    /// `[sampling.augment]`.
    pub augment: AugmentConfig,
}

impl Default for SamplingSection {
    fn default() -> Self {
        Self { pos: 1.0, neg: 1.0, augment: AugmentConfig::default() }
    }
}

/// Which subsets validation scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ValidationSubsets {
    /// All modalities and each single one (the outputs training supervises).
    #[default]
    Singles,
    /// Every non-empty subset (2^M − 1 inferences per case).
    All,
}

/// `[validation]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationSection {
    /// Validate every this many epochs (and after the last).
    pub every: u64,
    /// Subsets to score.
    pub subsets: ValidationSubsets,
    /// Sliding-window settings.
    pub window: WindowConfig,
}

impl Default for ValidationSection {
    fn default() -> Self {
        Self { every: 1, subsets: ValidationSubsets::Singles, window: WindowConfig::default() }
    }
}

impl TrainConfig {
    /// The network configuration for `modalities` and the preset's class count.
    pub fn model_config(&self, modalities: &[String], classes: usize, preset: &str) -> MagMsConfig {
        let m = &self.model;
        MagMsConfig {
            kind: m.kind,
            modalities: modalities.to_vec(),
            out_channels: classes,
            // Model input (D, H, W) = voxel axes (k, j, i).
            patch_size: [m.patch[2], m.patch[1], m.patch[0]],
            feature_size: m.feature_size,
            hidden_size: m.hidden_size,
            mlp_dim: m.mlp_dim,
            num_heads: m.num_heads,
            num_layers: m.num_layers,
            vit_patch_size: MagMsConfig::default().vit_patch_size,
            unet_base_channels: m.unet_base_channels,
            label_preset: Some(preset.to_string()),
            normalisation: "zscore_nonzero".into(),
        }
    }

    /// The sampler settings.
    pub fn sampler_config(&self) -> SamplerConfig {
        SamplerConfig {
            patch: self.model.patch,
            pos: self.sampling.pos,
            neg: self.sampling.neg,
            augment: self.sampling.augment.clone(),
        }
    }

    /// Checks every value that needs no data (the data checks are in [`DataConfig::plan`]).
    pub fn validate(&self) -> Result<()> {
        let t = &self.train;
        if t.epochs == 0 || t.batch == 0 || t.workers == 0 || t.checkpoint_every == 0 {
            return Err(TrainError::Config("train.epochs, batch, workers and checkpoint_every must be ≥ 1".into()));
        }
        if t.steps_per_epoch == Some(0) {
            return Err(TrainError::Config("train.steps_per_epoch must be ≥ 1".into()));
        }
        if let Some(s) = t.time_limit_s {
            if !(s.is_finite() && s > 0.0) {
                return Err(TrainError::Config(format!("train.time_limit_s = {s} must be > 0")));
            }
        }
        if t.schedule_by_time {
            if t.time_limit_s.is_none() {
                return Err(TrainError::Config("train.schedule_by_time needs train.time_limit_s".into()));
            }
            if matches!(self.schedule, LrSchedule::WarmupCosine { warmup_steps, .. } if warmup_steps > 0) {
                return Err(TrainError::Config(
                    "train.schedule_by_time needs a schedule without warm-up (schedule.warmup_steps = 0)".into(),
                ));
            }
        }
        parse_device(&t.device)?;
        if self.validation.every == 0 {
            return Err(TrainError::Config("validation.every must be ≥ 1".into()));
        }
        if let Some(s) = self.data.spacing {
            if s.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
                return Err(TrainError::Config(format!("data.spacing {s:?} must be positive")));
            }
        }
        self.validation.window.validate()?;
        self.optim.validate()?;
        self.schedule.validate()?;
        magseg_patch::PatchSampler::new(self.sampler_config())?;
        // The model sizes (patch multiples and the like), checked with placeholder modalities.
        self.model_config(&["a".into()], 2, "brats").validate()?;
        Ok(())
    }
}

/// The precision a model computes in (see [`magseg_model::MagMs::set_compute_dtype`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// bf16 activations with f32 parameters, norms and losses (PyTorch's autocast to bf16).
    Bf16,
    /// f32, with the convolutions on a GPU's tensor cores as tf32 (operands rounded to 10 mantissa
    /// bits, f32 sums; [`magseg_kernels::CudaConvPath::GemmTf32`]), as PyTorch runs f32 convolutions
    /// by default. The same as `F32` on the CPU. The choice holds for the whole process.
    Tf32,
}

impl Precision {
    /// The activations' dtype.
    pub fn dtype(self) -> candle_core::DType {
        match self {
            Precision::F32 | Precision::Tf32 => candle_core::DType::F32,
            Precision::Bf16 => candle_core::DType::BF16,
        }
    }

    /// Makes the process's convolutions follow this precision: `Tf32` selects the tf32 kernels for
    /// every later convolution on a GPU ([`magseg_kernels::CudaConvPath::set_process_default`]);
    /// the other precisions change nothing. An error when the process already fixed another
    /// convolution path (an earlier run in this process, or `MAGSEG_CONV_CUDA` read already).
    pub fn apply(self) -> Result<()> {
        use magseg_kernels::CudaConvPath;
        if self != Precision::Tf32 {
            return Ok(());
        }
        match CudaConvPath::set_process_default(CudaConvPath::GemmTf32) {
            CudaConvPath::GemmTf32 => Ok(()),
            other => Err(TrainError::Config(format!(
                "precision tf32: this process already runs its GPU convolutions on the {other:?} path \
                 (set MAGSEG_CONV_CUDA=tf32, or use tf32 from the start of the process)"
            ))),
        }
    }

    /// The name used in options and reports: `f32`, `bf16` or `tf32`.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::Tf32 => "tf32",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" | "fp32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            "tf32" => Ok(Precision::Tf32),
            _ => Err(TrainError::Config(format!("precision '{s}': expected f32, bf16 or tf32"))),
        }
    }
}

/// Parses `cpu`, `cuda` or `cuda:N` into a device (a cuda device needs a CUDA build and a GPU).
pub fn parse_device(s: &str) -> Result<candle_core::Device> {
    let bad = || TrainError::Config(format!("device '{s}': expected cpu, cuda or cuda:N"));
    match s {
        "cpu" => Ok(candle_core::Device::Cpu),
        "cuda" => cuda(0),
        _ => match s.strip_prefix("cuda:") {
            Some(n) => cuda(n.parse().map_err(|_| bad())?),
            None => Err(bad()),
        },
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda(n: usize) -> Result<candle_core::Device> {
    Err(TrainError::Config(format!(
        "cannot use cuda:{n}: this magseg was built without CUDA support (build it with `--features cuda`, see docs/GPU.md)"
    )))
}

#[cfg(feature = "cuda")]
fn cuda(n: usize) -> Result<candle_core::Device> {
    magseg_kernels::alloc::cuda_device(n).map_err(|e| TrainError::Config(format!("cannot use cuda:{n}: {e}")))
}
