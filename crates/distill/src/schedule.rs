//! Modality-subset schedules: which outputs each training step supervises.
//!
//! `Reference` is what the authors' code trains: the fused output of all present modalities and each
//! single modality (intermediate subsets only exist at test time). `Extended` also draws `k` random
//! intermediate subsets (2 ≤ size < M) per step, deterministically from `(seed, step)`.

use serde::{Deserialize, Serialize};

use crate::{DistillError, Result};

/// How the modality subsets of a training step are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SubsetSchedule {
    /// Fused (all modalities) + each single modality.
    #[default]
    Reference,
    /// The reference subsets plus `k` random intermediate subsets per step.
    Extended {
        /// Intermediate subsets drawn per step.
        k: usize,
    },
}

/// A subset as a bit mask over the modalities (bit m = modality m present).
pub type Subset = u32;

/// The modality indices of a subset, ascending.
pub fn members(s: Subset) -> Vec<usize> {
    (0..32).filter(|m| s & (1 << m) != 0).collect()
}

/// SplitMix64: a small, well-mixed deterministic generator.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SubsetSchedule {
    /// The subsets supervised at `step` for `m` modalities: first the full set (the fused output),
    /// then each single modality in order, then (Extended) up to `k` distinct intermediate subsets.
    pub fn subsets(&self, m: usize, seed: u64, step: u64) -> Result<Vec<Subset>> {
        if m == 0 || m > 16 {
            return Err(DistillError::Config(format!("subset schedules need 1 to 16 modalities, got {m}")));
        }
        let full: Subset = (1 << m) - 1;
        let mut out = vec![full];
        out.extend((0..m).map(|i| 1 << i).filter(|s| *s != full));
        if let SubsetSchedule::Extended { k } = *self {
            // Intermediate subsets: popcount in 2..m.
            let pool: Vec<Subset> = (1..full).filter(|s| (2..m as u32).contains(&s.count_ones())).collect();
            let mut state = seed ^ step.wrapping_mul(0xD6E8_FEB8_6659_FD93);
            let mut pool = pool;
            let take = k.min(pool.len());
            // Partial Fisher–Yates: the first `take` entries are a uniform sample without replacement.
            for i in 0..take {
                let j = i + (splitmix(&mut state) % (pool.len() - i) as u64) as usize;
                pool.swap(i, j);
            }
            out.extend_from_slice(&pool[..take]);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_is_fused_plus_singles() {
        let s = SubsetSchedule::Reference.subsets(4, 0, 0).unwrap();
        assert_eq!(s, vec![0b1111, 0b0001, 0b0010, 0b0100, 0b1000]);
        assert_eq!(members(0b1010), vec![1, 3]);
        // One modality: the fused output is the single one, listed once.
        assert_eq!(SubsetSchedule::Reference.subsets(1, 0, 0).unwrap(), vec![1]);
        assert!(SubsetSchedule::Reference.subsets(0, 0, 0).is_err());
    }

    #[test]
    fn extended_adds_distinct_intermediate_subsets_deterministically() {
        let sch = SubsetSchedule::Extended { k: 3 };
        let a = sch.subsets(4, 7, 11).unwrap();
        assert_eq!(a, sch.subsets(4, 7, 11).unwrap());
        assert_eq!(a.len(), 5 + 3);
        let extra = &a[5..];
        assert!(extra.iter().all(|s| (2..4).contains(&s.count_ones())));
        let mut d = extra.to_vec();
        d.sort_unstable();
        d.dedup();
        assert_eq!(d.len(), 3);
        // Different steps draw different subsets at least sometimes; k larger than the pool takes all.
        assert!((0..20).any(|step| sch.subsets(4, 7, step).unwrap() != a));
        assert_eq!(SubsetSchedule::Extended { k: 100 }.subsets(4, 0, 0).unwrap().len(), 5 + 10);
        // Two modalities have no intermediate subset.
        assert_eq!(SubsetSchedule::Extended { k: 2 }.subsets(2, 0, 0).unwrap(), vec![0b11, 0b01, 0b10]);
    }
}
