//! Adam and AdamW (PyTorch semantics, optional AMSGrad) with their state exportable for
//! checkpoints, and gradient value clamping / global norm clipping.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::{Result, TrainError};

/// Which update rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// `torch.optim.Adam`: weight decay is an L2 term added to the gradient.
    #[default]
    Adam,
    /// `torch.optim.AdamW`: decoupled weight decay `p ← p·(1 − lr·wd)`.
    Adamw,
}

/// Optimiser settings (defaults: the MAG-MS reference, Adam lr 2e-4, weight decay 1e-5, AMSGrad,
/// gradient values clamped to [−1, 1]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Update rule.
    pub kind: OptimizerKind,
    /// Base learning rate (the schedule scales it).
    pub lr: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Use the AMSGrad variant (the running maximum of the second moment).
    pub amsgrad: bool,
    /// β₁, β₂.
    pub betas: [f64; 2],
    /// ε added to the denominator.
    pub eps: f64,
    /// Clamp every gradient value to [−clip_value, clip_value] (applied first); `None` to skip.
    pub clip_value: Option<f64>,
    /// Scale all gradients so their global L2 norm is at most this; `None` to skip.
    pub clip_norm: Option<f64>,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::Adam,
            lr: 2e-4,
            weight_decay: 1e-5,
            amsgrad: true,
            betas: [0.9, 0.999],
            eps: 1e-8,
            clip_value: Some(1.0),
            clip_norm: None,
        }
    }
}

impl OptimConfig {
    /// Checks every value.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, v: f64| TrainError::Config(format!("optim.{what} = {v} is out of range"));
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(bad("lr", self.lr));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(bad("weight_decay", self.weight_decay));
        }
        for (i, b) in self.betas.iter().enumerate() {
            if !(0.0..1.0).contains(b) {
                return Err(bad(&format!("betas[{i}]"), *b));
            }
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(bad("eps", self.eps));
        }
        for (what, v) in [("clip_value", self.clip_value), ("clip_norm", self.clip_norm)] {
            if let Some(v) = v {
                if !(v.is_finite() && v > 0.0) {
                    return Err(bad(what, v));
                }
            }
        }
        Ok(())
    }
}

/// Per-parameter moments.
#[derive(Debug, Clone)]
struct Moments {
    m: Tensor,
    v: Tensor,
    vmax: Option<Tensor>,
}

/// Adam / AdamW over named variables.
#[derive(Debug)]
pub struct Adam {
    config: OptimConfig,
    vars: Vec<(String, Var)>,
    moments: Vec<Option<Moments>>,
    step: u64,
}

/// What one [`Adam::step`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepInfo {
    /// Global L2 norm of the gradients before clipping by norm (after value clamping).
    pub grad_norm: f64,
    /// Parameters that received a gradient.
    pub updated: usize,
}

impl Adam {
    /// An optimiser for `vars` (name, variable), with zero state.
    pub fn new(vars: Vec<(String, Var)>, config: OptimConfig) -> Result<Self> {
        config.validate()?;
        let moments = vec![None; vars.len()];
        Ok(Self { config, vars, moments, step: 0 })
    }

    /// Updates taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The settings.
    pub fn config(&self) -> &OptimConfig {
        &self.config
    }

    /// Clamps and clips the gradients of `grads`, then updates every variable that has one, with
    /// learning rate `lr`. Variables without a gradient keep their value and state (as PyTorch
    /// skips parameters whose `.grad` is `None`). A non-finite gradient norm is an error and
    /// changes nothing.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<StepInfo> {
        let _span = tracing::trace_span!("adam_step", step = self.step).entered();
        let mut gs: Vec<Option<Tensor>> = Vec::with_capacity(self.vars.len());
        // Σ g² stays on the device (in f64) until all variables are summed: one host sync per step,
        // and each tensor's sum in two stages (candle's CUDA whole-tensor sum uses one SM).
        let mut sq: Option<Tensor> = None;
        for (_, var) in &self.vars {
            let g = match grads.get(var.as_tensor()) {
                Some(g) => {
                    let g = g.to_dtype(DType::F32)?;
                    let g = match self.config.clip_value {
                        Some(c) => g.clamp(-c as f32, c as f32)?,
                        None => g,
                    };
                    let s = magseg_kernels::reduce::sum_all(&g.sqr()?)?.to_dtype(DType::F64)?;
                    sq = Some(match sq {
                        Some(acc) => (acc + s)?,
                        None => s,
                    });
                    Some(g)
                }
                None => None,
            };
            gs.push(g);
        }
        let norm = match sq {
            Some(s) => s.to_scalar::<f64>()?.sqrt(),
            None => 0.0,
        };
        if !norm.is_finite() {
            return Err(TrainError::Diverged { step: self.step, what: format!("gradient norm {norm}") });
        }
        let scale = match self.config.clip_norm {
            Some(max) if norm > max => max / (norm + 1e-6),
            _ => 1.0,
        };
        self.step += 1;
        let t = self.step as i32;
        let [b1, b2] = self.config.betas;
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        let wd = self.config.weight_decay;
        let mut updated = 0;
        for (i, g) in gs.into_iter().enumerate() {
            let Some(mut g) = g else { continue };
            if scale != 1.0 {
                g = g.affine(scale, 0.0)?;
            }
            let var = &self.vars[i].1;
            let mut p = var.as_tensor().clone();
            if wd != 0.0 {
                match self.config.kind {
                    OptimizerKind::Adam => g = (g + p.affine(wd, 0.0)?)?,
                    OptimizerKind::Adamw => p = p.affine(1.0 - lr * wd, 0.0)?,
                }
            }
            let st = match self.moments[i].take() {
                Some(s) => s,
                None => Moments {
                    m: g.zeros_like()?,
                    v: g.zeros_like()?,
                    vmax: if self.config.amsgrad { Some(g.zeros_like()?) } else { None },
                },
            };
            let m = (st.m.affine(b1, 0.0)? + g.affine(1.0 - b1, 0.0)?)?;
            let v = (st.v.affine(b2, 0.0)? + g.sqr()?.affine(1.0 - b2, 0.0)?)?;
            let (second, vmax) = match st.vmax {
                Some(vm) => {
                    let vm = vm.maximum(&v)?;
                    (vm.clone(), Some(vm))
                }
                None => (v.clone(), None),
            };
            let denom = second.sqrt()?.affine(1.0 / bc2.sqrt(), self.config.eps)?;
            let update = (m.affine(lr / bc1, 0.0)? / denom)?;
            var.set(&(p - update)?)?;
            self.moments[i] = Some(Moments { m, v, vmax });
            updated += 1;
        }
        Ok(StepInfo { grad_norm: norm, updated })
    }

    /// The state as named tensors (`m.<name>`, `v.<name>`, `vmax.<name>`) for a checkpoint;
    /// parameters that never had a gradient have no entries.
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for ((name, _), st) in self.vars.iter().zip(&self.moments) {
            if let Some(st) = st {
                out.insert(format!("m.{name}"), st.m.clone());
                out.insert(format!("v.{name}"), st.v.clone());
                if let Some(vm) = &st.vmax {
                    out.insert(format!("vmax.{name}"), vm.clone());
                }
            }
        }
        out
    }

    /// Restores the state written by [`Adam::state_tensors`] after `steps` updates. Every tensor must
    /// belong to a known parameter and have its shape.
    pub fn load_state(&mut self, mut tensors: HashMap<String, Tensor>, steps: u64) -> Result<()> {
        let device = self.vars.first().map(|(_, v)| v.device().clone());
        for (i, (name, var)) in self.vars.iter().enumerate() {
            let mut take = |prefix: &str| -> Result<Option<Tensor>> {
                match tensors.remove(&format!("{prefix}.{name}")) {
                    Some(t) if t.dims() == var.dims() => {
                        Ok(Some(t.to_device(device.as_ref().unwrap_or(&candle_core::Device::Cpu))?))
                    }
                    Some(t) => Err(TrainError::Config(format!(
                        "optimiser state {prefix}.{name} has shape {:?}, the parameter {:?}",
                        t.dims(),
                        var.dims()
                    ))),
                    None => Ok(None),
                }
            };
            let (m, v, vmax) = (take("m")?, take("v")?, take("vmax")?);
            self.moments[i] = match (m, v) {
                (Some(m), Some(v)) => {
                    if self.config.amsgrad && vmax.is_none() {
                        return Err(TrainError::Config(format!("optimiser state lacks vmax.{name} (amsgrad)")));
                    }
                    Some(Moments { m, v, vmax: if self.config.amsgrad { vmax } else { None } })
                }
                (None, None) => None,
                _ => return Err(TrainError::Config(format!("optimiser state of {name} is incomplete"))),
            };
        }
        if let Some(extra) = tensors.keys().next() {
            return Err(TrainError::Config(format!("optimiser state has an unknown tensor {extra}")));
        }
        self.step = steps;
        Ok(())
    }
}
