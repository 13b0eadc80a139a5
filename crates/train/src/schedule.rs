//! Learning-rate schedules as a pure function of the step: constant, poly (the MAG-MS reference,
//! `(1 − progress)^0.9`) and linear warm-up followed by cosine decay.

use serde::{Deserialize, Serialize};

use crate::{Result, TrainError};

/// A learning-rate schedule; [`LrSchedule::factor`] multiplies the base learning rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LrSchedule {
    /// Always the base rate.
    Constant,
    /// `(1 − epoch/epochs)^power` with the epoch counted fractionally (step / steps per epoch); the
    /// reference uses power 0.9 and whole epochs.
    Poly {
        /// The exponent (0.9 in the reference).
        #[serde(default = "default_power")]
        power: f64,
    },
    /// Linear warm-up from `base/warmup` to `base` over `warmup_steps`, then cosine decay to
    /// `min_factor · base` at the last step.
    WarmupCosine {
        /// Warm-up steps.
        #[serde(default)]
        warmup_steps: u64,
        /// Final learning rate as a fraction of the base rate.
        #[serde(default)]
        min_factor: f64,
    },
}

fn default_power() -> f64 {
    0.9
}

impl Default for LrSchedule {
    fn default() -> Self {
        Self::Poly { power: 0.9 }
    }
}

impl LrSchedule {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        match *self {
            LrSchedule::Constant => Ok(()),
            LrSchedule::Poly { power } if power.is_finite() && power >= 0.0 => Ok(()),
            LrSchedule::WarmupCosine { min_factor, .. } if (0.0..=1.0).contains(&min_factor) => Ok(()),
            s => Err(TrainError::Config(format!("schedule {s:?} has an out-of-range parameter"))),
        }
    }

    /// The factor at `step` (0-based) of `total` steps.
    pub fn factor(&self, step: u64, total: u64) -> f64 {
        let total = total.max(1);
        match *self {
            LrSchedule::Constant => 1.0,
            LrSchedule::Poly { power } => (1.0 - (step.min(total) as f64 / total as f64)).max(0.0).powf(power),
            LrSchedule::WarmupCosine { warmup_steps, min_factor } => {
                if step < warmup_steps {
                    return (step + 1) as f64 / warmup_steps as f64;
                }
                let span = total.saturating_sub(warmup_steps).max(1) as f64;
                let t = ((step - warmup_steps) as f64 / span).min(1.0);
                min_factor + (1.0 - min_factor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poly_matches_the_reference_formula_at_epoch_boundaries() {
        // Reference: lr = base * (1 - epoch / max_epoch) ** 0.9, here with 10 steps per epoch.
        let s = LrSchedule::Poly { power: 0.9 };
        for epoch in 0..20u64 {
            let want = (1.0 - epoch as f64 / 20.0).powf(0.9);
            assert!((s.factor(epoch * 10, 200) - want).abs() < 1e-12);
        }
        assert_eq!(s.factor(200, 200), 0.0);
    }

    #[test]
    fn warmup_cosine_rises_then_falls_to_the_floor() {
        let s = LrSchedule::WarmupCosine { warmup_steps: 4, min_factor: 0.1 };
        let f: Vec<f64> = (0..14).map(|t| s.factor(t, 14)).collect();
        assert_eq!(&f[..4], &[0.25, 0.5, 0.75, 1.0]);
        assert!((f[4] - 1.0).abs() < 1e-12);
        assert!(f[4..].windows(2).all(|w| w[1] <= w[0]));
        // Halfway through the decay the cosine is at the midpoint.
        assert!((s.factor(9, 14) - (0.1 + 0.9 * 0.5)).abs() < 1e-12);
        assert!((s.factor(14, 14) - 0.1).abs() < 1e-12);
        assert!(LrSchedule::WarmupCosine { warmup_steps: 0, min_factor: 2.0 }.validate().is_err());
    }
}
