//! Adam and AdamW (PyTorch semantics, optional AMSGrad) with their state exportable for
//! checkpoints, and gradient value clamping / global norm clipping.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use magseg_kernels::optim;

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
    /// Clamp every gradient value to [−clip_value, clip_value] (applied first); `None` to skip
    /// (in TOML, which has no null: `clip_value = "none"`).
    #[serde(deserialize_with = "number_or_none")]
    pub clip_value: Option<f64>,
    /// Scale all gradients so their global L2 norm is at most this; `None` to skip (`"none"`).
    #[serde(deserialize_with = "number_or_none")]
    pub clip_norm: Option<f64>,
}

/// A number, or null / the word `"none"` (any case) for `None`; TOML cannot write null, and a left-out
/// key means the default.
fn number_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Number(f64),
        Word(String),
    }
    match Option::<Value>::deserialize(d)? {
        None => Ok(None),
        Some(Value::Number(v)) => Ok(Some(v)),
        Some(Value::Word(w)) if w.eq_ignore_ascii_case("none") => Ok(None),
        Some(Value::Word(w)) => Err(serde::de::Error::custom(format!("expected a number or \"none\", found \"{w}\""))),
    }
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

/// Adam / AdamW over named f32 variables. The update runs as fused passes of
/// [`magseg_kernels::optim`] (three launches per parameter on a GPU); each parameter's moments live
/// in one `(k, n)` tensor (rows m, v, and AMSGrad's maximum of v), updated in place.
#[derive(Debug)]
pub struct Adam {
    config: OptimConfig,
    vars: Vec<(String, Var)>,
    /// Per parameter: `None` until its first gradient, then its `(k, n)` moments.
    moments: Vec<Option<Var>>,
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
    /// An optimiser for `vars` (name, variable), with zero state. Every variable must be f32 (the
    /// model's master weights; bf16 training casts them in the forward pass).
    pub fn new(vars: Vec<(String, Var)>, config: OptimConfig) -> Result<Self> {
        config.validate()?;
        if let Some((name, v)) = vars.iter().find(|(_, v)| v.dtype() != DType::F32) {
            return Err(TrainError::Config(format!(
                "the optimiser updates f32 parameters; {name} is {}",
                v.dtype().as_str()
            )));
        }
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
        let clip = self.config.clip_value.map(|c| c as f32);
        let mut gs: Vec<Option<Tensor>> = Vec::with_capacity(self.vars.len());
        for (_, var) in &self.vars {
            gs.push(match grads.get(var.as_tensor()) {
                Some(g) => Some(g.to_dtype(DType::F32)?.contiguous()?),
                None => None,
            });
        }
        // Σ clamp(g)² as partial sums over runs of values, all written into one buffer (one launch
        // per gradient), summed once in f64: one host sync per step.
        let counts: Vec<usize> = gs.iter().flatten().map(|g| optim::square_sum_count(g.elem_count())).collect();
        let norm = match self.vars.first() {
            Some((_, v)) if !counts.is_empty() => {
                let partials = Var::zeros(counts.iter().sum::<usize>().max(1), DType::F32, v.device())?;
                let mut offset = 0;
                for (g, count) in gs.iter().flatten().zip(&counts) {
                    optim::square_sums_into(&partials, offset, g, clip)?;
                    offset += count;
                }
                let total = magseg_kernels::reduce::sum_all(&partials.as_tensor().to_dtype(DType::F64)?)?;
                total.to_scalar::<f64>()?.sqrt()
            }
            _ => 0.0,
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
        let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        let wd = self.config.weight_decay;
        let adamw = self.config.kind == OptimizerKind::Adamw;
        let hyper = optim::AdamStep {
            clip,
            grad_scale: scale as f32,
            l2: if adamw { 0.0 } else { wd as f32 },
            b1: [b1 as f32, (1.0 - b1) as f32],
            b2: [b2 as f32, (1.0 - b2) as f32],
            decay: if adamw { (1.0 - lr * wd) as f32 } else { 1.0 },
            inv_sqrt_bc2: (1.0 / bc2.sqrt()) as f32,
            eps: self.config.eps as f32,
            step_size: (lr / bc1) as f32,
        };
        let rows = if self.config.amsgrad { 3 } else { 2 };
        let mut updated = 0;
        for (i, g) in gs.into_iter().enumerate() {
            let Some(g) = g else { continue };
            let p = self.vars[i].1.as_tensor();
            // A handle to the state, updated in place (an error part-way keeps it where it is).
            let state = match &self.moments[i] {
                Some(s) => s.clone(),
                None => self.moments[i].insert(Var::zeros((rows, p.elem_count()), DType::F32, p.device())?).clone(),
            };
            optim::adam_moments(&state, &g, p, &hyper)?;
            optim::adam_apply(p, &state, &hyper)?;
            updated += 1;
        }
        Ok(StepInfo { grad_norm: norm, updated })
    }

    /// The state as named tensors (`m.<name>`, `v.<name>`, `vmax.<name>`, each of its parameter's
    /// shape, copies) for a checkpoint; parameters that never had a gradient have no entries.
    pub fn state_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for ((name, var), st) in self.vars.iter().zip(&self.moments) {
            let Some(st) = st else { continue };
            let prefixes: &[&str] = if st.dims()[0] == 3 { &["m", "v", "vmax"] } else { &["m", "v"] };
            for (row, prefix) in prefixes.iter().enumerate() {
                // A copy: the optimiser's own state changes in place at the next step.
                out.insert(format!("{prefix}.{name}"), st.as_tensor().get(row)?.reshape(var.dims())?.copy()?);
            }
        }
        Ok(out)
    }

    /// Restores the state written by [`Adam::state_tensors`] after `steps` updates. Every tensor must
    /// belong to a known parameter and have its shape.
    pub fn load_state(&mut self, mut tensors: HashMap<String, Tensor>, steps: u64) -> Result<()> {
        let mut moments = Vec::with_capacity(self.vars.len());
        for (name, var) in &self.vars {
            let mut take = |prefix: &str| -> Result<Option<Tensor>> {
                match tensors.remove(&format!("{prefix}.{name}")) {
                    Some(t) if t.dims() == var.dims() => {
                        Ok(Some(t.to_device(var.device())?.to_dtype(DType::F32)?.flatten_all()?))
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
            moments.push(match (m, v) {
                (Some(m), Some(v)) => {
                    let rows = match (self.config.amsgrad, vmax) {
                        (true, Some(vm)) => vec![m, v, vm],
                        (true, None) => {
                            return Err(TrainError::Config(format!("optimiser state lacks vmax.{name} (amsgrad)")))
                        }
                        (false, _) => vec![m, v],
                    };
                    Some(Var::from_tensor(&Tensor::stack(&rows, 0)?)?)
                }
                (None, None) => None,
                _ => return Err(TrainError::Config(format!("optimiser state of {name} is incomplete"))),
            });
        }
        if let Some(extra) = tensors.keys().next() {
            return Err(TrainError::Config(format!("optimiser state has an unknown tensor {extra}")));
        }
        self.moments = moments;
        self.step = steps;
        Ok(())
    }
}
