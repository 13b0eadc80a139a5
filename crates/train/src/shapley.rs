//! Modality importance as Shapley values: how much each modality contributes to a score (e.g. Dice)
//! averaged over every order in which the modalities could be added.
//!
//! The players are the M modalities; a coalition is a subset mask (`u32`, bit i set = modality i
//! present). The characteristic function `v(mask)` is the score of the model given that subset,
//! with `v(∅) = 0` by definition.

/// The largest number of players [`shapley`] accepts (2^16 subsets).
pub const MAX_PLAYERS: usize = 16;

/// The Shapley value of each of `m` players under the characteristic function `values`.
///
/// `values(mask)` is called once for every non-empty mask below `1 << m` (never for `0`: the empty
/// coalition is worth 0 by definition). Returns φ_i = Σ_{S ⊆ N∖{i}} |S|!(M−|S|−1)!/M! ·
/// (v(S∪{i}) − v(S)) for `i` in `0..m`; the values add up to v(N) (efficiency).
///
/// A NaN returned by `values` for any mask propagates: every mask takes part in every player's sum,
/// so one NaN value makes all of the results NaN. Callers guarantee `1 ≤ m ≤ 16`
/// ([`MAX_PLAYERS`]); outside that range (`m == 0` or `m > 16`) the result is an empty `Vec` and
/// `values` is not called.
pub fn shapley(values: &dyn Fn(u32) -> f64, m: usize) -> Vec<f64> {
    if m == 0 || m > MAX_PLAYERS {
        return Vec::new();
    }
    let n_masks = 1usize << m;
    // v(∅) = 0; every other mask is evaluated exactly once.
    let v: Vec<f64> = (0..n_masks).map(|mask| if mask == 0 { 0.0 } else { values(mask as u32) }).collect();
    // factorial[k] = k! (exact in f64 up to 16! ≈ 2.1e13).
    let mut factorial = vec![1.0f64; m + 1];
    for k in 1..=m {
        factorial[k] = factorial[k - 1] * k as f64;
    }
    // weight[s] = s!(M−s−1)!/M! for a coalition of size s not containing the player.
    let weight: Vec<f64> = (0..m).map(|s| factorial[s] * factorial[m - s - 1] / factorial[m]).collect();
    (0..m)
        .map(|i| {
            let bit = 1usize << i;
            (0..n_masks).filter(|s| s & bit == 0).map(|s| weight[s.count_ones() as usize] * (v[s | bit] - v[s])).sum()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn additive_game_gives_each_player_its_own_worth() {
        let a = [0.3, -0.1, 0.75, 0.05];
        let v = |mask: u32| (0..4).filter(|i| mask & (1 << i) != 0).map(|i| a[i]).sum::<f64>();
        let phi = shapley(&v, 4);
        assert_eq!(phi.len(), 4);
        for (p, want) in phi.iter().zip(a) {
            assert!(close(*p, want), "{p} vs {want}");
        }
    }

    #[test]
    fn symmetric_players_get_equal_values() {
        // Players 0 and 2 are interchangeable: v depends on them only through how many are present.
        let v = |mask: u32| {
            let sym = (mask & 1) + ((mask >> 2) & 1);
            let p1 = (mask >> 1) & 1;
            0.4 * sym as f64 + 0.25 * p1 as f64 + 0.1 * (sym * p1) as f64 + if sym == 2 { 0.3 } else { 0.0 }
        };
        let phi = shapley(&v, 3);
        assert!(close(phi[0], phi[2]), "{phi:?}");
        assert!(!close(phi[0], phi[1]), "{phi:?}");
    }

    #[test]
    fn unanimity_game_splits_evenly() {
        for m in 1..=6usize {
            let full = (1u32 << m) - 1;
            let v = move |mask: u32| if mask == full { 1.0 } else { 0.0 };
            let phi = shapley(&v, m);
            assert_eq!(phi.len(), m);
            for p in &phi {
                assert!(close(*p, 1.0 / m as f64), "m = {m}: {phi:?}");
            }
        }
    }

    #[test]
    fn efficiency_values_sum_to_the_grand_coalition() {
        let m = 5;
        let v = |mask: u32| {
            let c = mask.count_ones() as f64;
            c * c / 7.0 + if mask & 0b00101 == 0b00101 { 0.2 } else { 0.0 } - 0.05 * ((mask >> 3) & 1) as f64
                + 0.013 * (mask % 5) as f64
        };
        let phi = shapley(&v, m);
        let total: f64 = phi.iter().sum();
        assert!(close(total, v(0b11111)), "{total} vs {}", v(0b11111));
    }

    #[test]
    fn two_player_hand_computed_example() {
        let v = |mask: u32| match mask {
            0b01 => 0.6,
            0b10 => 0.2,
            0b11 => 0.9,
            _ => f64::NAN,
        };
        let phi = shapley(&v, 2);
        assert!(close(phi[0], 0.65), "{phi:?}");
        assert!(close(phi[1], 0.25), "{phi:?}");
    }

    #[test]
    fn empty_mask_is_never_evaluated() {
        // A NaN at mask 0 would poison every result if it were used.
        let v = |mask: u32| if mask == 0 { f64::NAN } else { mask.count_ones() as f64 };
        let phi = shapley(&v, 3);
        assert!(phi.iter().all(|p| close(*p, 1.0)), "{phi:?}");
    }

    #[test]
    fn nan_values_propagate() {
        let v = |mask: u32| if mask == 0b10 { f64::NAN } else { 1.0 };
        let phi = shapley(&v, 2);
        assert!(phi.iter().all(|p| p.is_nan()), "{phi:?}");
    }

    #[test]
    fn out_of_range_player_counts_give_an_empty_result() {
        let v = |_: u32| 1.0;
        assert!(shapley(&v, 0).is_empty());
        assert!(shapley(&v, MAX_PLAYERS + 1).is_empty());
        assert_eq!(shapley(&v, 1), vec![1.0]);
    }
}
