//! MAG-MS training losses (DESIGN.md §2), written with differentiable candle ops.
//!
//! Conventions shared by every function:
//!
//! * logits are floating-point tensors shaped `(N, C, D, H, W)` with `C >= 2` classes
//!   (f32 is the intended dtype);
//! * targets are **class indices**, an integer tensor (`u8`, `u32` or `i64`) shaped
//!   `(N, D, H, W)` or `(N, 1, D, H, W)`, each value in `0..C`; they are one-hot encoded inside,
//!   as MONAI's `to_onehot_y=True` does;
//! * a wrong rank, a shape mismatch, a bad dtype, an out-of-range label or a bad configuration
//!   value is reported as a [`DistillError`], never a panic.
//!
//! The losses are:
//!
//! * [`dice_ce`]: MONAI 1.6.1 `DiceCELoss(to_onehot_y=True, softmax=True)` with all other
//!   arguments at their defaults;
//! * [`kl_distill`]: pixel-wise KL divergence from the fused (teacher) prediction to a
//!   single-modality (student) prediction, scaled by `T²`;
//! * [`feature_mse`]: Σ over feature levels of `mse_loss(f_l, f̄_l)`;
//! * [`magms_loss`]: the full MAG-MS objective.

mod error;
pub mod schedule;
mod sums;

pub use error::{DistillError, Result};
pub use schedule::{members, Subset, SubsetSchedule};

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

/// MONAI's default numerator smoothing (`smooth_nr`).
pub const SMOOTH_NR: f64 = 1e-5;
/// MONAI's default denominator smoothing (`smooth_dr`).
pub const SMOOTH_DR: f64 = 1e-5;

/// Checks that `logits` is a floating-point `(N, C, D, H, W)` tensor with `C >= 2`;
/// returns `(N, C, V)` with `V = D·H·W`.
fn check_logits(logits: &Tensor, what: &str) -> Result<(usize, usize, usize)> {
    if !logits.dtype().is_float() {
        return Err(DistillError::DType(format!("{what} must be floating point, got {:?}", logits.dtype())));
    }
    let dims = logits.dims();
    if dims.len() != 5 {
        return Err(DistillError::Shape(format!("{what} must be (N, C, D, H, W), got {:?}", dims)));
    }
    if dims[1] < 2 {
        return Err(DistillError::Shape(format!("{what} needs at least 2 channels, got {:?}", dims)));
    }
    let v = dims[2] * dims[3] * dims[4];
    if dims[0] == 0 || v == 0 {
        return Err(DistillError::Shape(format!("{what} is empty: {:?}", dims)));
    }
    Ok((dims[0], dims[1], v))
}

/// Numerically stable log-softmax over dimension 1 (the class axis).
///
/// The per-voxel maximum is detached: subtracting a constant does not change the result, and this
/// keeps the gradient exactly that of log-softmax.
fn log_softmax_c(x: &Tensor) -> Result<Tensor> {
    let max = sums::channel_max(x)?;
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

/// One-hot encodes `target` (class indices) to the shape and dtype of `logits`, validating it.
fn one_hot(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    let dims = logits.dims();
    let (n, c) = (dims[0], dims[1]);
    let spatial = &dims[2..];
    match target.dtype() {
        DType::U8 | DType::U32 | DType::I64 => {}
        other => {
            return Err(DistillError::DType(format!("target must hold class indices as u8, u32 or i64, got {other:?}")))
        }
    }
    let t = match target.dims() {
        [tn, td, th, tw] if *tn == n && [*td, *th, *tw] == spatial => target.clone(),
        [tn, 1, td, th, tw] if *tn == n && [*td, *th, *tw] == spatial => target.squeeze(1)?,
        other => {
            return Err(DistillError::Shape(format!(
                "target {:?} does not fit logits {:?}: expected ({n}, {}, {}, {}) or ({n}, 1, {}, {}, {})",
                other, dims, spatial[0], spatial[1], spatial[2], spatial[0], spatial[1], spatial[2]
            )))
        }
    };
    let tf = t.to_dtype(DType::F64)?;
    let range = Tensor::stack(&[tf.min_all()?, tf.max_all()?], 0)?.to_vec1::<f64>()?;
    let (lo, hi) = (range[0], range[1]);
    if lo < 0.0 || hi >= c as f64 {
        return Err(DistillError::Label(format!("labels span [{lo}, {hi}] but there are {c} classes")));
    }
    let classes = Tensor::arange(0u32, c as u32, logits.device())?.to_dtype(DType::F64)?.reshape((1, c, 1, 1, 1))?;
    let oh = tf.unsqueeze(1)?.broadcast_eq(&classes)?;
    Ok(oh.to_dtype(logits.dtype())?)
}

/// MONAI 1.6.1 `DiceCELoss(to_onehot_y=True, softmax=True)` with every other argument at its
/// default (include_background, no squared prediction, no Jaccard, `smooth_nr = smooth_dr = 1e-5`,
/// `batch=False`, mean reduction, `lambda_dice = lambda_ce = 1`).
///
/// With `p = softmax(logits)` over classes and `y` the one-hot target:
///
/// * Dice term: for every sample `n` and class `c` (including background and classes absent from
///   the target), `1 − (2·Σ_v p·y + 1e-5) / (Σ_v p + Σ_v y + 1e-5)`, averaged over all `N·C` pairs;
/// * CE term: `−log p_{y}` averaged over all `N·D·H·W` voxels (torch `cross_entropy`, mean);
///
/// and the result is their sum, a scalar tensor.
///
/// `target` holds class indices, see the crate documentation.
pub fn dice_ce(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    let (n, c, v) = check_logits(logits, "logits")?;
    let y = one_hot(logits, target)?;
    let logp = log_softmax_c(logits)?;
    Ok(dice_ce_per_output(&logp, &y, 1, (n, c, v))?.squeeze(0)?)
}

/// The DiceCE of each of `t` outputs whose log-probabilities `logp` are stacked along the batch axis
/// (`(t·N, C, D, H, W)`, output-major), against the one-hot target `y (N, C, D, H, W)`: a `(t,)`
/// tensor. Every sum runs over all outputs at once (a handful of graph nodes whatever `t` is).
fn dice_ce_per_output(logp: &Tensor, y: &Tensor, t: usize, (n, c, v): (usize, usize, usize)) -> Result<Tensor> {
    let logp = logp.reshape((t, n * c, v))?;
    let y = y.reshape((1, n * c, v))?;
    let p = logp.exp()?;
    let tp = sums::sum_last(&p.broadcast_mul(&y)?)?;
    let sum_p = sums::sum_last(&p)?;
    let sum_y = sums::sum_last(&y)?;
    let num = tp.affine(2.0, SMOOTH_NR)?;
    let den = sum_p.broadcast_add(&sum_y)?.affine(1.0, SMOOTH_DR)?;
    // Mean over the N·C (sample, class) pairs of each output.
    let dice = (num / den)?.affine(-1.0, 1.0)?.mean(1)?;
    // −Σ log p_y over each output's N·V voxels, averaged.
    let ce = sums::sum_last(&logp.broadcast_mul(&y)?.reshape((t, n * c * v))?)?.affine(-1.0 / (n * v) as f64, 0.0)?;
    Ok((dice + ce)?)
}

/// Options of [`kl_distill`]; the defaults are the reference behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KlOptions {
    /// When true the teacher distribution is `softmax(z_t / T)`; when false (the reference
    /// code, default) it is `softmax(z_t)`, i.e. not softened.
    pub soften_teacher: bool,
    /// When true the teacher logits are detached, so no gradient reaches them; when false (the
    /// reference code, default) gradients flow into the teacher too.
    pub detach_teacher: bool,
}

/// Pixel-wise self-distillation loss from the teacher (fused output) to a student (one
/// modality's output):
///
/// `T² · mean_{n, voxels} Σ_c p0_c (log p0_c − log q_c)`, with `q = softmax(z_s / T)` and
/// `p0 = softmax(z_t / T)` if `opts.soften_teacher`, else `softmax(z_t)`.
///
/// This equals torch's `kl_div(log_softmax(z_s/T), p0, reduction='none').sum(1).mean() · T²`.
/// Both logits tensors must be `(N, C, D, H, W)` of the same shape; `t` must be finite and > 0.
pub fn kl_distill(student_logits: &Tensor, teacher_logits: &Tensor, t: f64, opts: KlOptions) -> Result<Tensor> {
    check_logits(student_logits, "student logits")?;
    let (n, c, v) = check_logits(teacher_logits, "teacher logits")?;
    if student_logits.dims() != teacher_logits.dims() {
        return Err(DistillError::Shape(format!(
            "student logits {:?} and teacher logits {:?} differ",
            student_logits.dims(),
            teacher_logits.dims()
        )));
    }
    if !(t.is_finite() && t > 0.0) {
        return Err(DistillError::Config(format!("temperature must be finite and > 0, got {t}")));
    }
    let log_p0 = teacher_log_probs(teacher_logits, None, t, opts)?;
    let log_q = log_softmax_c(&student_logits.affine(1.0 / t, 0.0)?)?;
    kl_sum(&log_p0, &log_q, 1, (n, c, v), t)
}

/// The teacher's log-probabilities `log softmax(z_t / T)` (`opts.soften_teacher`) or `log softmax(z_t)`,
/// detached with `opts.detach_teacher`; `unsoftened`, when given, is `log softmax(z_t)` already computed.
fn teacher_log_probs(z_t: &Tensor, unsoftened: Option<&Tensor>, t: f64, opts: KlOptions) -> Result<Tensor> {
    let log_p0 = match unsoftened {
        Some(lp) if !opts.soften_teacher => lp.clone(),
        _ if opts.soften_teacher => log_softmax_c(&z_t.affine(1.0 / t, 0.0)?)?,
        _ => log_softmax_c(z_t)?,
    };
    Ok(if opts.detach_teacher { log_p0.detach() } else { log_p0 })
}

/// `T² · Σ_students mean_{n, voxels} Σ_c p0 (log p0 − log q)`: the summed KL of `s` students whose
/// log-probabilities `log_q` are stacked along the batch axis (`(s·N, C, …)`), all against the
/// teacher's `log_p0 (N, C, …)`; a 0-d tensor.
fn kl_sum(log_p0: &Tensor, log_q: &Tensor, s: usize, (n, c, v): (usize, usize, usize), t: f64) -> Result<Tensor> {
    let log_p0 = log_p0.reshape((1, n * c * v))?;
    let log_q = log_q.reshape((s, n * c * v))?;
    let terms = log_q.broadcast_sub(&log_p0)?.broadcast_mul(&log_p0.exp()?)?;
    Ok(sums::sum_last(&terms.flatten_all()?)?.affine(-t * t / (n * v) as f64, 0.0)?)
}

/// `t` in f32 when it is a half-precision float, else itself.
fn widen(t: &Tensor) -> Result<Tensor> {
    Ok(match t.dtype() {
        candle_core::DType::BF16 | candle_core::DType::F16 => t.to_dtype(candle_core::DType::F32)?,
        _ => t.clone(),
    })
}

/// Σ over levels `l` of `mse_loss(features[l], mean[l])` (torch mean reduction: the average of
/// the squared differences over every element of the level); bf16/f16 features are widened to f32
/// first (as `.float()` in the reference), f32/f64 ones keep their dtype.
///
/// The two slices must have the same length and each pair the same shape. An empty slice gives 0.
pub fn feature_mse(features: &[Tensor], mean: &[Tensor]) -> Result<Tensor> {
    check_levels(features, mean)?;
    let mut total: Option<Tensor> = None;
    for (f, m) in features.iter().zip(mean) {
        let d = (widen(f)? - widen(m)?)?;
        let mse = sums::mean_all(&d.sqr()?)?;
        total = Some(match total {
            None => mse,
            Some(acc) => (acc + mse)?,
        });
    }
    match total {
        Some(t) => Ok(t),
        None => Err(DistillError::Shape("no feature levels".into())),
    }
}

/// Checks that `features` and `mean` have as many levels and that each pair has one shape and one
/// float dtype and is not empty.
fn check_levels(features: &[Tensor], mean: &[Tensor]) -> Result<()> {
    if features.len() != mean.len() {
        return Err(DistillError::Shape(format!("{} feature levels but {} mean levels", features.len(), mean.len())));
    }
    for (l, (f, m)) in features.iter().zip(mean).enumerate() {
        if f.dims() != m.dims() {
            return Err(DistillError::Shape(format!(
                "level {l}: features {:?} and mean {:?} differ",
                f.dims(),
                m.dims()
            )));
        }
        if f.dtype() != m.dtype() || !f.dtype().is_float() {
            return Err(DistillError::DType(format!(
                "level {l}: features {:?} and mean {:?} must be the same float dtype",
                f.dtype(),
                m.dtype()
            )));
        }
        if f.elem_count() == 0 {
            return Err(DistillError::Shape(format!("level {l} is empty")));
        }
    }
    Ok(())
}

/// Weights and options of [`magms_loss`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossConfig {
    /// Weight λ of the KL self-distillation term (default 1; 0 disables it).
    pub lambda: f64,
    /// Weight γ of the feature MSE term (default 1; 0 disables it).
    pub gamma: f64,
    /// Distillation temperature T (default 1).
    pub temperature: f64,
    /// See [`KlOptions::soften_teacher`] (default false, the reference).
    pub soften_teacher: bool,
    /// See [`KlOptions::detach_teacher`] (default false, the reference).
    pub detach_teacher: bool,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self { lambda: 1.0, gamma: 1.0, temperature: 1.0, soften_teacher: false, detach_teacher: false }
    }
}

impl LossConfig {
    /// "MAG without self-distillation": λ = γ = 0, the paper's ablation.
    pub fn without_self_distillation() -> Self {
        Self { lambda: 0.0, gamma: 0.0, ..Self::default() }
    }

    fn validate(&self) -> Result<()> {
        for (name, v) in [("lambda", self.lambda), ("gamma", self.gamma)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(DistillError::Config(format!("{name} must be finite and >= 0, got {v}")));
            }
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(DistillError::Config(format!("temperature must be finite and > 0, got {}", self.temperature)));
        }
        Ok(())
    }
}

/// The MAG-MS loss and its parts.
#[derive(Debug, Clone)]
pub struct LossParts {
    /// The differentiable total loss (scalar tensor).
    pub total: Tensor,
    /// DiceCE of each output: index 0 is the fused output, index `m + 1` modality `m`.
    pub dice_ce: Vec<f64>,
    /// Σ_m KL (unweighted, before λ); 0 when λ = 0 (then it is not computed).
    pub kl: f64,
    /// Σ_m feature MSE (unweighted, before γ); 0 when γ = 0 (then it is not computed).
    pub mse: f64,
}

/// The MAG-MS objective (DESIGN.md §2):
///
/// `L = Σ_{t=0..M} DiceCE(z_t, y) + λ Σ_m KL(z_0 → z_m) + γ Σ_m feature_mse(f_m, f̄)`
///
/// * `fused_logits`: `z_0`, the decoder output of the fused features (the teacher);
/// * `modality_logits[m]`: `z_m`, the decoder output of modality `m` alone;
/// * `modality_features[m]`: the per-level (fusion-conv) feature maps of modality `m`;
/// * `fused_features`: `f̄`, their per-level mean (not detached by this function);
/// * `target`: class indices, see the crate documentation.
///
/// With λ = 0 the KL terms and with γ = 0 the MSE terms are skipped entirely (the features are then
/// not even looked at, so they may be empty).
///
/// This stacks the outputs along the batch axis (one copy of the logits, and of each feature level
/// when γ > 0) and calls [`magms_loss_stacked`]; a network that decodes all outputs in one batch
/// (as `magseg_model::MagMs` does in training) calls that directly.
pub fn magms_loss(
    fused_logits: &Tensor,
    modality_logits: &[Tensor],
    modality_features: &[Vec<Tensor>],
    fused_features: &[Tensor],
    target: &Tensor,
    cfg: LossConfig,
) -> Result<LossParts> {
    cfg.validate()?;
    check_logits(fused_logits, "fused logits")?;
    for (m, z) in modality_logits.iter().enumerate() {
        if z.dims() != fused_logits.dims() {
            return Err(DistillError::Shape(format!(
                "modality {m} logits {:?} differ from fused logits {:?}",
                z.dims(),
                fused_logits.dims()
            )));
        }
    }
    let outputs = modality_logits.len() + 1;
    let stacked = if outputs == 1 {
        fused_logits.clone()
    } else {
        let all: Vec<&Tensor> = std::iter::once(fused_logits).chain(modality_logits).collect();
        Tensor::cat(&all, 0)?
    };
    let mut features = Vec::new();
    if cfg.gamma != 0.0 && outputs > 1 {
        if modality_features.len() != modality_logits.len() {
            return Err(DistillError::Shape(format!(
                "{} modality logits but {} modality feature sets",
                modality_logits.len(),
                modality_features.len()
            )));
        }
        for f in modality_features {
            check_levels(f, fused_features)?;
        }
        for (l, mean) in fused_features.iter().enumerate() {
            let level: Vec<&Tensor> = std::iter::once(mean).chain(modality_features.iter().map(|f| &f[l])).collect();
            features.push(Tensor::cat(&level, 0)?);
        }
    }
    magms_loss_stacked(&stacked, outputs, &features, target, cfg)
}

/// [`magms_loss`] on outputs stacked along the batch axis, output-major with the fused output first:
///
/// * `logits`: `(outputs·N, C, D, H, W)`, `z_0` (the teacher) in the first `N` rows, then `z_1…z_M`;
/// * `features[l]`: level `l` as `(outputs·N, C_l, …)`, `f̄_l` first, then `f_{1,l}…f_{M,l}`
///   (floating point; bf16/f16 is widened to f32 as in [`feature_mse`]); ignored when γ = 0 or
///   there is only one output.
///
/// The target is one-hot encoded and checked once, one log-softmax serves every output (the
/// teacher's serves its DiceCE and every KL term; with T = 1 so do the students'), every DiceCE, KL
/// and feature-MSE sum runs over all outputs in one op, and the reported values come back to the
/// host in one read: the graph has a few nodes per loss term whatever `M` is, and the step two
/// device syncs (the labels' range, the values). The values are those of [`dice_ce`],
/// [`kl_distill`] and [`feature_mse`] per output up to f32 summation order.
pub fn magms_loss_stacked(
    logits: &Tensor,
    outputs: usize,
    features: &[Tensor],
    target: &Tensor,
    cfg: LossConfig,
) -> Result<LossParts> {
    cfg.validate()?;
    let (rows, c, v) = check_logits(logits, "stacked logits")?;
    if outputs == 0 || rows % outputs != 0 {
        return Err(DistillError::Shape(format!(
            "stacked logits {:?} do not hold {outputs} outputs of equal batch",
            logits.dims()
        )));
    }
    let n = rows / outputs;
    let s = outputs - 1;
    let fused_logits = logits.narrow(0, 0, n)?;
    let logp = log_softmax_c(logits)?;
    let dice = dice_ce_per_output(&logp, &one_hot(&fused_logits, target)?, outputs, (n, c, v))?;
    let mut total = dice.sum(0)?;

    let opts = KlOptions { soften_teacher: cfg.soften_teacher, detach_teacher: cfg.detach_teacher };
    let kl = if cfg.lambda != 0.0 && s > 0 {
        let log_p0 = teacher_log_probs(&fused_logits, Some(&logp.narrow(0, 0, n)?), cfg.temperature, opts)?;
        let log_q = if cfg.temperature == 1.0 {
            logp.narrow(0, n, s * n)?
        } else {
            log_softmax_c(&logits.narrow(0, n, s * n)?.affine(1.0 / cfg.temperature, 0.0)?)?
        };
        let kl = kl_sum(&log_p0, &log_q, s, (n, c, v), cfg.temperature)?;
        total = (total + kl.affine(cfg.lambda, 0.0)?)?;
        Some(kl)
    } else {
        None
    };
    let levels = if s > 0 { features } else { &[] };
    if cfg.gamma != 0.0 && s > 0 && features.is_empty() {
        return Err(DistillError::Shape("no feature levels for the feature MSE (γ > 0)".into()));
    }
    let (total, mse) = add_weighted_sum(total, cfg.gamma, levels, |f| stacked_feature_mse(f, outputs, n))?;

    // One read-back of every reported value.
    let zero = || Tensor::zeros(1, dice.dtype(), dice.device());
    let report = [
        dice.detach(),
        kl.map_or_else(zero, |k| k.detach().reshape(1))?,
        match &mse {
            Some(m) => m.detach().reshape(1)?.to_dtype(dice.dtype())?,
            None => zero()?,
        },
    ];
    let values: Vec<f64> = Tensor::cat(&report, 0)?.to_dtype(DType::F64)?.to_vec1()?;
    let (dice_values, kl_sum, mse_sum) = (values[..outputs].to_vec(), values[outputs], values[outputs + 1]);
    tracing::trace!(dice_ce = ?dice_values, kl = kl_sum, mse = mse_sum, "magms loss");
    Ok(LossParts { total, dice_ce: dice_values, kl: kl_sum, mse: mse_sum })
}

/// `Σ_m mse_loss(f_m, f̄)` of one feature level stacked as `(outputs·N, …)` with `f̄` first: one
/// broadcast difference and one sum for every modality at once.
fn stacked_feature_mse(f: &Tensor, outputs: usize, n: usize) -> Result<Tensor> {
    if !f.dtype().is_float() {
        return Err(DistillError::DType(format!("features must be floating point, got {:?}", f.dtype())));
    }
    if f.rank() == 0 || f.dim(0)? != outputs * n || f.elem_count() == 0 {
        return Err(DistillError::Shape(format!(
            "stacked features {:?} do not hold {outputs} outputs of batch {n}",
            f.dims()
        )));
    }
    let per_output = f.elem_count() / outputs;
    let rows = widen(f)?.reshape((outputs, per_output))?;
    let d = rows.narrow(0, 1, outputs - 1)?.broadcast_sub(&rows.narrow(0, 0, 1)?)?;
    Ok(sums::sum_last(&d.sqr()?.flatten_all()?)?.affine(1.0 / per_output as f64, 0.0)?)
}

/// `total + weight · Σ_items term(item)`, and the unweighted sum (a tensor); `total` unchanged and
/// `None` when `weight` is 0 (no term is computed) or there are no items.
fn add_weighted_sum<T>(
    total: Tensor,
    weight: f64,
    items: &[T],
    term: impl Fn(&T) -> Result<Tensor>,
) -> Result<(Tensor, Option<Tensor>)> {
    if weight == 0.0 {
        return Ok((total, None));
    }
    let mut acc: Option<Tensor> = None;
    for item in items {
        let t = term(item)?;
        acc = Some(match acc {
            None => t,
            Some(a) => (a + t)?,
        });
    }
    match acc {
        Some(sum) => Ok(((total + sum.affine(weight, 0.0)?)?, Some(sum))),
        None => Ok((total, None)),
    }
}
