//! The training loop: data preparation, model and optimiser set-up (fresh or resumed), prefetched
//! batches, the MAG-MS loss over the scheduled subsets, validation and checkpoints per epoch, the
//! metrics log and the curve picture. Progress goes to an [`Observer`]; nothing here prints.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{Device, Tensor};
use magseg_distill::Subset;
use magseg_model::MagMs;
use magseg_patch::{Batch, CaseCache, Loader, LoaderConfig, PatchSampler};

use crate::checkpoint::{load_checkpoint, resumable_dir, save_checkpoint, write_dir_atomically, TrainState};
use crate::config::{parse_device, TrainConfig, ValidationSubsets};
use crate::data::prepare_cases;
use crate::log::{log_file_name, read_rows, MetricsLog, Row};
use crate::optim::Adam;
use crate::plot::draw_curves;
use crate::step::{train_step, StepLosses, StepPlan};
use crate::validate::{subset_name, validate, Validation};
use crate::{Result, TrainError};

/// The resumable checkpoint's folder name inside the output directory.
pub const LAST_DIR: &str = "last";
/// The best model's folder name inside the output directory.
pub const BEST_DIR: &str = "best";
/// The training-curve picture's file name.
pub const CURVES_FILE: &str = "curves.svg";

/// Facts about a run, reported once before the first step.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Steps already done (non-zero when resuming).
    pub start_step: u64,
    /// Steps planned.
    pub total_steps: u64,
    /// Steps per epoch.
    pub steps_per_epoch: u64,
    /// Training / validation case counts.
    pub cases: (usize, usize),
    /// Trainable parameters.
    pub parameters: usize,
    /// The output directory.
    pub output: PathBuf,
}

/// One finished step.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// Steps done (1-based).
    pub step: u64,
    /// The epoch the step belongs to (0-based).
    pub epoch: u64,
    /// The learning rate used.
    pub lr: f64,
    /// The total loss.
    pub loss: f64,
    /// Σ of the DiceCE terms.
    pub dice_ce: f64,
    /// Σ KL (before λ).
    pub kl: f64,
    /// Σ feature MSE (before γ).
    pub mse: f64,
    /// Gradient norm after value clamping.
    pub grad_norm: f64,
    /// Seconds the step took.
    pub seconds: f64,
}

/// Receives progress; every method has an empty default.
pub trait Observer {
    /// A message about set-up work (loading, preparing).
    fn note(&mut self, _message: &str) {}
    /// The run is about to start its first step.
    fn started(&mut self, _info: &RunInfo) {}
    /// A step finished.
    fn step(&mut self, _report: &StepReport) {}
    /// Validation is starting after `_step` steps.
    fn validating(&mut self, _step: u64) {}
    /// A validation finished after `step` steps.
    fn validated(&mut self, _step: u64, _validation: &Validation, _best: bool) {}
    /// A checkpoint was written.
    fn checkpointed(&mut self, _dir: &Path, _step: u64) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;
impl Observer for Silent {}

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Continue from `output/last` instead of starting (an existing run is otherwise an error).
    pub resume: bool,
    /// Set from outside (Ctrl-C) to finish the current step, write a checkpoint and return.
    pub stop: Arc<AtomicBool>,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The final state.
    pub state: TrainState,
    /// The last validation, if any ran in this session.
    pub last_validation: Option<Validation>,
    /// True when stopped through [`TrainOptions::stop`] before the end.
    pub interrupted: bool,
    /// The output directory.
    pub output: PathBuf,
}

/// Everything prepared before the first step.
struct Setup {
    model: MagMs,
    optim: Adam,
    state: TrainState,
    train: Arc<CaseCache>,
    val: CaseCache,
    preset: magseg_volume::LabelPreset,
    steps_per_epoch: u64,
}

/// Trains (or resumes) the run described by `config`.
pub fn train(config: &TrainConfig, opts: &TrainOptions, obs: &mut dyn Observer) -> Result<TrainOutcome> {
    config.validate()?;
    let device = parse_device(&config.train.device)?;
    let out = config.train.output.clone();
    let last_dir = out.join(LAST_DIR);
    let existing = resumable_dir(&last_dir);
    match (opts.resume, &existing) {
        (false, Some(_)) => {
            return Err(TrainError::Config(format!(
                "{} already holds a training run; pass --resume to continue it or choose another train.output",
                out.display()
            )))
        }
        (true, None) => {
            return Err(TrainError::Checkpoint { path: last_dir, reason: "no checkpoint to resume from".into() })
        }
        _ => {}
    }
    let plan = config.data.plan()?;
    obs.note(&format!(
        "preparing {} training and {} validation case(s) from {}",
        plan.train.len(),
        plan.validation.len(),
        plan.dataset.root.display()
    ));
    let train_cache = prepare_cases(&plan.train, &plan.modalities, &plan.preset, config.data.spacing)?;
    let val = prepare_cases(&plan.validation, &plan.modalities, &plan.preset, config.data.spacing)?;
    let patch = config.model.patch;
    for c in train_cache.cases() {
        if (0..3).any(|a| patch[a] > c.dims[a]) {
            return Err(TrainError::Config(format!(
                "model.patch {patch:?} is larger than case {} after preprocessing ({:?} voxels); use a smaller patch",
                c.id, c.dims
            )));
        }
    }
    let steps_per_epoch =
        config.train.steps_per_epoch.unwrap_or_else(|| (plan.train.len() as u64).div_ceil(config.train.batch as u64));
    let total_steps = steps_per_epoch * config.train.epochs;
    let model_config = config.model_config(&plan.modalities, plan.preset.num_classes(), &plan.preset.name);
    let (model, optim, state) = if opts.resume {
        let ck = load_checkpoint(&last_dir, &device)?;
        check_resumable(&ck.config, config)?;
        if ck.model.config() != &model_config {
            return Err(TrainError::Checkpoint {
                path: last_dir,
                reason: "the checkpoint's model differs from the configuration".into(),
            });
        }
        let mut optim = Adam::new(ck.model.trainable_vars(), config.optim.clone())?;
        optim.load_state(ck.optimizer, ck.state.step)?;
        (ck.model, optim, ck.state)
    } else {
        std::fs::create_dir_all(&out).map_err(TrainError::io(&out))?;
        let model = MagMs::with_seed(model_config, &device, config.train.seed)?;
        let optim = Adam::new(model.trainable_vars(), config.optim.clone())?;
        let state = TrainState {
            step: 0,
            epoch: 0,
            total_steps,
            seed: config.train.seed,
            best: None,
            elapsed_s: 0.0,
            finished: false,
        };
        (model, optim, state)
    };
    let mut model = model;
    config.train.precision.apply()?;
    model.set_compute_dtype(config.train.precision.dtype())?;
    let setup = Setup { model, optim, state, train: Arc::new(train_cache), val, preset: plan.preset, steps_per_epoch };
    run(config, opts, obs, setup, &device)
}

/// The learning-rate factor of `step`: over the planned steps, or with `train.schedule_by_time` over
/// the time budget (`elapsed_s / time_limit_s` mapped onto a million steps).
fn schedule_factor(config: &TrainConfig, step: u64, total: u64, elapsed_s: f64) -> f64 {
    match config.train.time_limit_s {
        Some(limit) if config.train.schedule_by_time => {
            const SCALE: u64 = 1_000_000;
            let progress = (elapsed_s / limit).clamp(0.0, 1.0);
            config.schedule.factor((progress * SCALE as f64) as u64, SCALE)
        }
        _ => config.schedule.factor(step, total),
    }
}

/// A resumed run must use the configuration it was started with (logistics may change).
fn check_resumable(saved: &TrainConfig, now: &TrainConfig) -> Result<()> {
    let mut a = saved.clone();
    let mut b = now.clone();
    for c in [&mut a, &mut b] {
        c.train.workers = 1;
        c.train.device = String::new();
        c.train.precision = Default::default();
        c.train.time_limit_s = None;
    }
    if a != b {
        return Err(TrainError::Config(
            "the configuration differs from the one the run was started with (only train.workers, train.device, \
             train.precision and train.time_limit_s may change on --resume)"
                .into(),
        ));
    }
    Ok(())
}

/// The subsets validation scores: the full set and each single modality, or every subset.
fn validation_subsets(m: usize, which: ValidationSubsets) -> Vec<Subset> {
    match which {
        ValidationSubsets::Singles => {
            let full: Subset = (1 << m) - 1;
            let mut v = vec![full];
            v.extend((0..m).map(|i| 1 << i).filter(|s| *s != full));
            v
        }
        ValidationSubsets::All => crate::subsets::all_subsets(m),
    }
}

fn run(
    config: &TrainConfig,
    opts: &TrainOptions,
    obs: &mut dyn Observer,
    s: Setup,
    device: &Device,
) -> Result<TrainOutcome> {
    let Setup { model, mut optim, mut state, train, val, preset, steps_per_epoch } = s;
    let out = config.train.output.clone();
    let mods = model.config().modalities.clone();
    let m = mods.len();
    let val_subsets = validation_subsets(m, config.validation.subsets);
    let regions: Vec<String> = preset.regions.iter().map(|r| r.name.clone()).collect();
    let mut columns: Vec<String> =
        ["epoch", "lr", "loss", "dice_ce", "kl", "mse", "grad_norm", "seconds"].map(String::from).to_vec();
    columns.push("score".into());
    for &sub in &val_subsets {
        for r in &regions {
            columns.push(format!("dice/{}/{r}", subset_name(sub, &mods)));
        }
    }
    let resume_step = opts.resume.then_some(state.step);
    let mut log = MetricsLog::open(&out, config.train.log_format, columns, resume_step)?;
    obs.started(&RunInfo {
        start_step: state.step,
        total_steps: state.total_steps,
        steps_per_epoch,
        cases: (train.len(), val.len()),
        parameters: model.trainable_vars().iter().map(|(_, v)| v.elem_count()).sum(),
        output: out.clone(),
    });
    let sampler = Arc::new(PatchSampler::new(config.sampler_config())?);
    let loader = Loader::new(
        train,
        sampler,
        LoaderConfig {
            batch_size: config.train.batch,
            workers: config.train.workers,
            prefetch: 2,
            seed: config.train.seed,
            batches: Some(state.total_steps),
            start: state.step,
        },
    )?;
    let loss_cfg = config.loss.loss_config();
    let session = Instant::now();
    let elapsed_before = state.elapsed_s;
    let mut last_validation = None;
    let mut interrupted = false;
    let mut last_ckpt_step = if opts.resume { Some(state.step) } else { None };
    for batch in loader {
        let batch = batch?;
        let t0 = Instant::now();
        let step = state.step;
        let lr = config.optim.lr * schedule_factor(config, step, state.total_steps, state.elapsed_s);
        let (inputs, target) = batch_tensors(&batch, m, device)?;
        let subsets = config.loss.subsets.subsets(m, config.train.seed, step)?;
        let StepLosses { loss, dice_ce: dce, kl, mse, info } =
            train_step(&model, &mut optim, inputs, &target, StepPlan { loss: loss_cfg, subsets: &subsets, lr, step })?;
        state.step += 1;
        state.elapsed_s = elapsed_before + session.elapsed().as_secs_f64();
        let report = StepReport {
            step: state.step,
            epoch: step / steps_per_epoch,
            lr,
            loss,
            dice_ce: dce,
            kl,
            mse,
            grad_norm: info.grad_norm,
            seconds: t0.elapsed().as_secs_f64(),
        };
        log.write(&Row {
            kind: "step".into(),
            step: state.step,
            values: vec![
                ("epoch".into(), report.epoch as f64),
                ("lr".into(), lr),
                ("loss".into(), loss),
                ("dice_ce".into(), dce),
                ("kl".into(), kl),
                ("mse".into(), mse),
                ("grad_norm".into(), info.grad_norm),
                ("seconds".into(), report.seconds),
            ],
        })?;
        log.flush()?;
        obs.step(&report);

        let epoch_end = state.step % steps_per_epoch == 0;
        if epoch_end {
            state.epoch = state.step / steps_per_epoch;
        }
        let out_of_time = config.train.time_limit_s.is_some_and(|l| state.elapsed_s >= l);
        let last = state.step >= state.total_steps || out_of_time;
        let stop = opts.stop.load(Ordering::Relaxed);
        if last {
            state.finished = true;
        }
        if (epoch_end && state.epoch % config.validation.every == 0) || last {
            obs.validating(state.step);
            let v = validate(&model, &val, &preset, &val_subsets, &config.validation.window)?;
            let best = state.best.is_none_or(|(b, _)| v.score > b || b.is_nan());
            let mut values = vec![("epoch".into(), state.epoch as f64), ("score".into(), v.score)];
            for s in &v.subsets {
                for (r, d) in &s.dice {
                    values.push((format!("dice/{}/{r}", s.subset), *d));
                }
            }
            log.write(&Row { kind: "validation".into(), step: state.step, values })?;
            log.flush()?;
            if best {
                state.best = Some((v.score, state.step));
                write_dir_atomically(&out.join(BEST_DIR), |tmp| {
                    model.save(tmp)?;
                    crate::Preprocess { spacing: config.data.spacing }.save(tmp)?;
                    write_validation(&tmp.join("validation.json"), &v, state.step)
                })?;
            }
            write_validation(&out.join("validation.json"), &v, state.step)?;
            obs.validated(state.step, &v, best);
            state.elapsed_s = elapsed_before + session.elapsed().as_secs_f64();
            last_validation = Some(v);
        }
        if (epoch_end && state.epoch % config.train.checkpoint_every == 0) || last || stop {
            log.flush()?;
            save_checkpoint(&out.join(LAST_DIR), &model, &optim, &state, config)?;
            last_ckpt_step = Some(state.step);
            obs.checkpointed(&out.join(LAST_DIR), state.step);
        }
        if last {
            break;
        }
        if stop {
            interrupted = true;
            break;
        }
    }
    log.flush()?;
    if last_ckpt_step != Some(state.step) {
        save_checkpoint(&out.join(LAST_DIR), &model, &optim, &state, config)?;
        obs.checkpointed(&out.join(LAST_DIR), state.step);
    }
    let rows = read_rows(&out.join(log_file_name(config.train.log_format)), config.train.log_format)?;
    draw_curves(&rows, steps_per_epoch, &out.join(CURVES_FILE))?;
    Ok(TrainOutcome { state, last_validation, interrupted, output: out })
}

fn write_validation(path: &Path, v: &Validation, step: u64) -> Result<()> {
    let json = serde_json::json!({ "step": step, "score": v.score, "subsets": v.subsets });
    std::fs::write(path, json.to_string() + "\n").map_err(TrainError::io(path))
}

/// One input tensor `(B, 1, k, j, i)` per modality and the class target `(B, k, j, i)` (u8).
fn batch_tensors(batch: &Batch, m: usize, device: &Device) -> Result<(Vec<Tensor>, Tensor)> {
    let p0 = batch.patches.first().ok_or_else(|| TrainError::Data("empty batch".into()))?;
    let [si, sj, sk] = p0.size;
    let n = si * sj * sk;
    let b = batch.patches.len();
    let mut inputs = Vec::with_capacity(m);
    for c in 0..m {
        let mut buf = Vec::with_capacity(b * n);
        for p in &batch.patches {
            buf.extend_from_slice(&p.image[c * n..(c + 1) * n]);
        }
        inputs.push(Tensor::from_vec(buf, (b, 1, sk, sj, si), &Device::Cpu)?.to_device(device)?);
    }
    let labels: Vec<u8> = batch.patches.iter().flat_map(|p| p.labels.iter().copied()).collect();
    let target = Tensor::from_vec(labels, (b, sk, sj, si), &Device::Cpu)?.to_device(device)?;
    Ok((inputs, target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::LrSchedule;

    fn config(by_time: bool, schedule: LrSchedule) -> TrainConfig {
        let mut c: TrainConfig = toml::from_str("[data]\npath = \"x\"\n").expect("minimal configuration");
        c.train.time_limit_s = Some(200.0);
        c.train.schedule_by_time = by_time;
        c.schedule = schedule;
        c
    }

    #[test]
    fn schedule_by_time_follows_the_time_budget_not_the_steps() {
        let cosine = LrSchedule::WarmupCosine { warmup_steps: 0, min_factor: 0.0 };
        let c = config(true, cosine);
        // Cosine over the budget, as magms_unet_ref.py: 0.5 (1 + cos(π t / T)); the step count is ignored.
        for (elapsed, want) in [(0.0, 1.0), (50.0, 0.5 * (1.0 + (0.25 * std::f64::consts::PI).cos())), (100.0, 0.5)] {
            let got = schedule_factor(&c, 7, 10, elapsed);
            assert!((got - want).abs() < 1e-5, "elapsed {elapsed}: {got} vs {want}");
        }
        assert_eq!(schedule_factor(&c, 7, 10, 250.0), 0.0);
        // Without the flag the steps decide.
        let s = config(false, cosine);
        assert_eq!(schedule_factor(&s, 5, 10, 150.0), cosine.factor(5, 10));
        c.validate().expect("valid");
    }

    #[test]
    fn schedule_by_time_needs_a_limit_and_no_warmup() {
        let mut c = config(true, LrSchedule::WarmupCosine { warmup_steps: 3, min_factor: 0.0 });
        assert!(c.validate().unwrap_err().to_string().contains("warm-up"));
        c.schedule = LrSchedule::Constant;
        c.train.time_limit_s = None;
        assert!(c.validate().unwrap_err().to_string().contains("time_limit_s"));
    }
}
