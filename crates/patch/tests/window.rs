//! Sliding-window grid, Gaussian importance and blending.

use magseg_patch::{gaussian_importance, window_grid, Accumulator, PatchError};

fn axis_starts(grid: &[[usize; 3]], a: usize) -> Vec<usize> {
    let mut s: Vec<usize> = grid.iter().map(|g| g[a]).collect();
    s.sort_unstable();
    s.dedup();
    s
}

#[test]
fn grid_matches_monai_examples() {
    let g = window_grid([240, 240, 155], [96, 96, 96], 0.5).unwrap();
    assert_eq!(axis_starts(&g, 0), vec![0, 48, 96, 144]);
    // 155: step 48, starts 0, 48, then 96 would end at 192 ≥ 155 → moved back to 59.
    assert_eq!(axis_starts(&g, 2), vec![0, 48, 59]);
    assert_eq!(g.len(), 4 * 4 * 3);
    // MONAI order: first axis slowest, last fastest.
    assert_eq!(&g[..4], &[[0, 0, 0], [0, 0, 48], [0, 0, 59], [0, 48, 0]]);
    // Window equal to the volume: a single start; overlap 0 tiles exactly.
    assert_eq!(window_grid([96, 64, 10], [96, 32, 10], 0.0).unwrap().len(), 2);
    // Overlap 0.25 of 128 → step 96 (MONAI truncates).
    let g = window_grid([300, 128, 128], [128, 128, 128], 0.25).unwrap();
    assert_eq!(axis_starts(&g, 0), vec![0, 96, 172]);
}

#[test]
fn windows_cover_every_voxel() {
    for (dims, win, ov) in
        [([37, 20, 11], [8, 7, 11], 0.5), ([50, 9, 13], [16, 4, 5], 0.3), ([5, 5, 5], [1, 2, 3], 0.9)]
    {
        let grid = window_grid(dims, win, ov).unwrap();
        let mut hit = vec![false; dims.iter().product()];
        for s in &grid {
            for k in 0..win[2] {
                for j in 0..win[1] {
                    for i in 0..win[0] {
                        hit[s[0] + i + dims[0] * (s[1] + j + dims[1] * (s[2] + k))] = true;
                    }
                }
            }
        }
        assert!(hit.iter().all(|h| *h), "{dims:?} {win:?} {ov}");
    }
}

#[test]
fn grid_errors() {
    assert!(matches!(window_grid([64, 64, 40], [64, 64, 48], 0.5), Err(PatchError::TooLarge { .. })));
    assert!(window_grid([64, 64, 64], [32, 32, 32], 1.0).is_err());
    assert!(window_grid([64, 64, 64], [32, 32, 32], -0.1).is_err());
    assert!(window_grid([64, 64, 64], [0, 32, 32], 0.5).is_err());
}

#[test]
fn gaussian_is_peaked_normalised_and_positive() {
    let w = [16, 12, 9];
    let g = gaussian_importance(w, 0.125);
    assert_eq!(g.len(), 16 * 12 * 9);
    let centre = 8 + 16 * (6 + 12 * 4);
    assert_eq!(g[centre], 1.0);
    assert!(g.iter().all(|v| *v > 0.0 && *v <= 1.0));
    // σ = 2 along i: one voxel off the centre is exp(−1/8).
    let expected = (-1.0f32 / 8.0).exp();
    assert!((g[centre + 1] - expected).abs() < 1e-6);
    assert!(g[centre - 8] < g[centre - 4]);
    // Symmetric around the centre where both sides exist.
    assert!((g[centre + 3] - g[centre - 3]).abs() < 1e-7);
}

#[test]
fn blending_constant_predictions_gives_the_constant() {
    let (dims, win) = ([30, 25, 17], [12, 10, 8]);
    let imp = gaussian_importance(win, 0.125);
    let mut acc = Accumulator::new(2, dims, win, imp).unwrap();
    let wn: usize = win.iter().product();
    let mut pred = vec![0.25f32; wn];
    pred.extend(std::iter::repeat_n(-3.5f32, wn));
    for s in window_grid(dims, win, 0.5).unwrap() {
        acc.add(s, &pred).unwrap();
    }
    let out = acc.finish().unwrap();
    let n: usize = dims.iter().product();
    assert!(out[..n].iter().all(|v| (v - 0.25).abs() < 1e-5));
    assert!(out[n..].iter().all(|v| (v + 3.5).abs() < 1e-5));
}

#[test]
fn blending_reassembles_a_position_dependent_field() {
    // When every window predicts the true field, any weighting gives the field back.
    let (dims, win) = ([20, 14, 9], [8, 8, 4]);
    let field = |i: usize, j: usize, k: usize| (i + 30 * j + 500 * k) as f32;
    let mut acc = Accumulator::new(1, dims, win, gaussian_importance(win, 0.125)).unwrap();
    for s in window_grid(dims, win, 0.5).unwrap() {
        let mut pred = Vec::new();
        for k in 0..win[2] {
            for j in 0..win[1] {
                for i in 0..win[0] {
                    pred.push(field(s[0] + i, s[1] + j, s[2] + k));
                }
            }
        }
        acc.add(s, &pred).unwrap();
    }
    let out = acc.finish().unwrap();
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                let v = out[i + dims[0] * (j + dims[1] * k)];
                assert!((v - field(i, j, k)).abs() <= 1e-3 * field(i, j, k).max(1.0));
            }
        }
    }
}

#[test]
fn accumulator_errors() {
    let win = [4, 4, 4];
    assert!(Accumulator::new(1, [8, 8, 8], win, vec![1.0; 63]).is_err());
    assert!(Accumulator::new(1, [3, 8, 8], win, vec![1.0; 64]).is_err());
    let mut acc = Accumulator::new(1, [8, 8, 8], win, vec![1.0; 64]).unwrap();
    assert!(acc.add([5, 0, 0], &[0.0; 64]).is_err());
    assert!(acc.add([0, 0, 0], &[0.0; 10]).is_err());
    acc.add([0, 0, 0], &[1.0; 64]).unwrap();
    // Most voxels were never covered.
    assert!(acc.finish().is_err());
}
