//! One optimisation step of MAG-MS (forward over every modality, the MAG-MS loss with the scheduled
//! intermediate subsets, backward, optimiser update), shared by the trainer and the step benchmark.

use candle_core::Tensor;
use magseg_distill::{dice_ce, kl_distill, magms_loss, magms_loss_stacked, members, KlOptions, LossConfig, Subset};
use magseg_model::MagMs;

use crate::optim::{Adam, StepInfo};
use crate::{Result, TrainError};

/// The loss terms and optimiser facts of one step (host scalars).
#[derive(Debug, Clone, Copy)]
pub struct StepLosses {
    /// The total loss.
    pub loss: f64,
    /// Σ DiceCE over every decoded output.
    pub dice_ce: f64,
    /// Σ KL (before λ).
    pub kl: f64,
    /// Σ feature MSE (before γ).
    pub mse: f64,
    /// The optimiser's report (gradient norm before clipping).
    pub info: StepInfo,
}

/// What a step does besides its data: the loss weights, the intermediate subsets of this step, the
/// learning rate and the step's number (for a divergence error).
#[derive(Debug, Clone, Copy)]
pub struct StepPlan<'a> {
    /// The MAG-MS loss weights.
    pub loss: LossConfig,
    /// The subsets scheduled for this step (see [`crate::config::LossSection`]).
    pub subsets: &'a [Subset],
    /// The learning rate.
    pub lr: f64,
    /// The step's number.
    pub step: u64,
}

/// Runs one training step on `inputs` (one `(B, 1, D, H, W)` tensor per modality, all present) and
/// `target` (`(B, D, H, W)` class indices): the fused and single-modality outputs, the MAG-MS loss,
/// plus, for every subset in `subsets` with at least two but not all modalities, the DiceCE (and,
/// with λ > 0, the KL to the fused output) of the decoder applied to the mean of its members'
/// features. Then backward and `optim.step(lr)`.
pub fn train_step(
    model: &MagMs,
    optim: &mut Adam,
    inputs: Vec<Tensor>,
    target: &Tensor,
    plan: StepPlan,
) -> Result<StepLosses> {
    let StepPlan { loss: loss_cfg, subsets, lr, step } = plan;
    let _span = tracing::debug_span!("train_step", step).entered();
    let m = inputs.len();
    let fwd = {
        let _span = tracing::debug_span!("step_forward").entered();
        model.forward(&inputs.into_iter().map(Some).collect::<Vec<_>>(), true)?
    };
    let loss_span = tracing::debug_span!("step_loss").entered();
    let (mod_logits, mod_feats): (Vec<Tensor>, Vec<Vec<Tensor>>) = if m > 1 {
        fwd.modalities.iter().map(|o| (o.logits.clone(), o.features.clone())).unzip()
    } else {
        (Vec::new(), Vec::new())
    };
    // The decoder ran once on every output stacked along the batch axis (two or more modalities).
    let parts = match &fwd.stacked {
        Some(st) => magms_loss_stacked(&st.logits, m + 1, &st.features, target, loss_cfg)?,
        None => magms_loss(&fwd.fused, &mod_logits, &mod_feats, &fwd.fused_features, target, loss_cfg)?,
    };
    let mut total = parts.total;
    let mut dce: f64 = parts.dice_ce.iter().sum();
    let mut kl = parts.kl;
    // Extended schedule: intermediate subsets decoded from the mean of their members' features.
    for &sub in subsets.iter().filter(|s| s.count_ones() >= 2 && s.count_ones() < m as u32) {
        let who: Vec<Vec<Tensor>> = members(sub).into_iter().map(|i| mod_feats[i].clone()).collect();
        let feats = magseg_model::mean_features(&who)?;
        let z = model.decode(&feats)?;
        let d = dice_ce(&z, target)?;
        dce += d.to_scalar::<f32>()? as f64;
        total = (total + d)?;
        if loss_cfg.lambda != 0.0 {
            let opts = KlOptions { soften_teacher: loss_cfg.soften_teacher, detach_teacher: loss_cfg.detach_teacher };
            let k = kl_distill(&z, &fwd.fused, loss_cfg.temperature, opts)?;
            kl += k.to_scalar::<f32>()? as f64;
            total = (total + k.affine(loss_cfg.lambda, 0.0)?)?;
        }
    }
    let loss = total.to_scalar::<f32>()? as f64;
    if !loss.is_finite() {
        return Err(TrainError::Diverged { step, what: format!("loss {loss}") });
    }
    drop(loss_span);
    let grads = {
        let _span = tracing::debug_span!("step_backward").entered();
        total.backward()?
    };
    let info = {
        let _span = tracing::debug_span!("step_optimizer").entered();
        optim.step(&grads, lr)?
    };
    Ok(StepLosses { loss, dice_ce: dce, kl, mse: parts.mse, info })
}
