//! Resumable checkpoints: a directory with the weights and model config (a loadable model), the
//! optimiser state, the training state (steps, epoch, best score, clock; all randomness derives from
//! the seed and the step) and the training configuration. A checkpoint is written into a temporary
//! sibling directory and swapped in with renames, so a crash leaves the previous one intact.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use magseg_model::MagMs;
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::optim::Adam;
use crate::{Result, TrainError};

/// The optimiser state file inside a checkpoint.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// The training state file inside a checkpoint.
pub const STATE_FILE: &str = "state.json";
/// The training configuration copy inside a checkpoint.
pub const TRAIN_CONFIG_FILE: &str = "train.json";

/// Where training stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimiser steps done.
    pub step: u64,
    /// Whole epochs done.
    pub epoch: u64,
    /// Steps the run was planned for.
    pub total_steps: u64,
    /// The seed every random draw derives from (with the step / batch index).
    pub seed: u64,
    /// Best validation score so far and the step it was reached at.
    pub best: Option<(f64, u64)>,
    /// Seconds of training so far (over all sessions).
    pub elapsed_s: f64,
    /// True once the last step is done.
    pub finished: bool,
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| TrainError::Checkpoint { path: path.to_path_buf(), reason: e.to_string() })?;
    std::fs::write(path, text + "\n").map_err(TrainError::io(path))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(TrainError::io(path))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint { path: path.to_path_buf(), reason: e.to_string() })
}

/// A sibling path `dir/.<name>.<suffix>`.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dir.with_file_name(format!(".{name}.{suffix}"))
}

/// Writes a directory with `fill` into a temporary sibling, then replaces `dir` with it.
pub(crate) fn write_dir_atomically(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = sibling(dir, "partial");
    let old = sibling(dir, "old");
    for p in [&tmp, &old] {
        if p.exists() {
            std::fs::remove_dir_all(p).map_err(TrainError::io(p))?;
        }
    }
    std::fs::create_dir_all(&tmp).map_err(TrainError::io(&tmp))?;
    fill(&tmp)?;
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(TrainError::io(dir))?;
    }
    std::fs::rename(&tmp, dir).map_err(TrainError::io(dir))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(TrainError::io(&old))?;
    }
    Ok(())
}

/// Saves everything needed to resume into `dir`.
pub fn save_checkpoint(
    dir: &Path,
    model: &MagMs,
    optim: &Adam,
    state: &TrainState,
    config: &TrainConfig,
) -> Result<()> {
    let _span = tracing::debug_span!("save_checkpoint", step = state.step).entered();
    write_dir_atomically(dir, |tmp| {
        model.save(tmp)?;
        crate::Preprocess { spacing: config.data.spacing }.save(tmp)?;
        let tensors = optim.state_tensors()?;
        let path = tmp.join(OPTIMIZER_FILE);
        candle_core::safetensors::save(&tensors, &path)?;
        write_json(&tmp.join(STATE_FILE), state)?;
        write_json(&tmp.join(TRAIN_CONFIG_FILE), config)
    })?;
    tracing::info!(dir = %dir.display(), step = state.step, "checkpoint written");
    Ok(())
}

/// What [`load_checkpoint`] reads back.
#[derive(Debug)]
pub struct Checkpoint {
    /// The network with its weights.
    pub model: MagMs,
    /// The optimiser state tensors.
    pub optimizer: HashMap<String, Tensor>,
    /// The training state.
    pub state: TrainState,
    /// The configuration the run was started with.
    pub config: TrainConfig,
}

/// The checkpoint directory to resume from: `dir`, or its `.old` sibling when a crash happened
/// between the two renames of an atomic write.
pub fn resumable_dir(dir: &Path) -> Option<PathBuf> {
    [dir.to_path_buf(), sibling(dir, "old")].into_iter().find(|d| d.join(STATE_FILE).is_file())
}

/// Reads a checkpoint written by [`save_checkpoint`] onto `device`.
pub fn load_checkpoint(dir: &Path, device: &Device) -> Result<Checkpoint> {
    let found = resumable_dir(dir).ok_or_else(|| TrainError::Checkpoint {
        path: dir.to_path_buf(),
        reason: "no checkpoint to resume from".into(),
    })?;
    let state: TrainState = read_json(&found.join(STATE_FILE))?;
    let config: TrainConfig = read_json(&found.join(TRAIN_CONFIG_FILE))?;
    let model = MagMs::load(&found, device)?;
    let path = found.join(OPTIMIZER_FILE);
    let optimizer = candle_core::safetensors::load(&path, device)
        .map_err(|e| TrainError::Checkpoint { path: path.clone(), reason: e.to_string() })?;
    Ok(Checkpoint { model, optimizer, state, config })
}
