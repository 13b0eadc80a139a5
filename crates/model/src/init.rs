//! Seeded parameter initialisation: a candle `SimpleBackend` that fills a [`VarMap`] with values
//! drawn from a generator keyed by `(seed, parameter name)`, so a network's initial weights depend
//! only on the seed (candle's CPU generator cannot be seeded).

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::{var_builder::SimpleBackend, Init, VarMap};

/// SplitMix64 step.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of a parameter name.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01B3))
}

/// A uniform value in [0, 1) with 53 random bits.
fn unit(state: &mut u64) -> f64 {
    (splitmix(state) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// The initial values of one parameter.
fn values(init: Init, n: usize, seed: u64, name: &str) -> candle_core::Result<Vec<f32>> {
    let mut state = seed ^ name_hash(name).rotate_left(17);
    Ok(match init {
        Init::Const(c) => vec![c as f32; n],
        Init::Uniform { lo, up } => (0..n).map(|_| (lo + (up - lo) * unit(&mut state)) as f32).collect(),
        Init::Randn { mean, stdev } => (0..n)
            .map(|_| {
                // Box–Muller with u1 in (0, 1].
                let u1 = 1.0 - unit(&mut state);
                let u2 = unit(&mut state);
                (mean + stdev * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
            })
            .collect(),
        Init::Kaiming { .. } => candle_core::bail!("seeded initialisation does not support Kaiming init ({name})"),
    })
}

/// Creates missing variables in a [`VarMap`] from a seeded generator (existing ones are returned as
/// they are, as `VarMap` itself does).
pub(crate) struct SeededInit {
    pub(crate) varmap: VarMap,
    pub(crate) seed: u64,
    /// Hand out detached views of the existing variables (sharing their storage) and create none.
    pub(crate) frozen: bool,
}

impl SimpleBackend for SeededInit {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let mut data = self.varmap.data().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = data.get(name) {
            if v.shape() != &s {
                candle_core::bail!("shape mismatch for {name}: {:?} exists, {s:?} asked for", v.shape());
            }
            return Ok(if self.frozen { v.as_detached_tensor() } else { v.as_tensor().clone() });
        }
        if self.frozen {
            candle_core::bail!("no parameter {name} to freeze");
        }
        let t = Tensor::from_vec(values(h, s.elem_count(), self.seed, name)?, s, dev)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&t)?;
        let t = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("`get_unchecked` is not supported while initialising ({name})")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap.data().lock().unwrap_or_else(|e| e.into_inner()).contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_and_normal_have_the_asked_moments() {
        let n = 200_000;
        let u = values(Init::Uniform { lo: -0.5, up: 1.5 }, n, 3, "a").unwrap();
        assert!(u.iter().all(|&x| (-0.5..1.5).contains(&x)));
        let mean = u.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        let g = values(Init::Randn { mean: 1.0, stdev: 2.0 }, n, 3, "a").unwrap();
        let m = g.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
        let var = g.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / n as f64;
        assert!((m - 1.0).abs() < 0.02 && (var.sqrt() - 2.0).abs() < 0.02, "{m} {var}");
        // Different names and seeds give different streams; the same ones the same values.
        assert_ne!(values(Init::Randn { mean: 0.0, stdev: 1.0 }, 4, 3, "b").unwrap(), g[..4].to_vec());
        assert_eq!(values(Init::Randn { mean: 1.0, stdev: 2.0 }, 4, 3, "a").unwrap(), g[..4].to_vec());
        assert_ne!(values(Init::Randn { mean: 1.0, stdev: 2.0 }, 4, 4, "a").unwrap(), g[..4].to_vec());
    }
}
