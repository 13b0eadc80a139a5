//! EDT tests: brute-force comparison on random anisotropic masks, analytic cases, input errors.

mod common;

use common::{brute_edt_sq, close, idx, Rng};
use magseg_metrics::{edt, edt_squared, Grid, MetricsError};

const ANISO: [f64; 3] = [1.0, 0.8, 2.5];

fn check_against_brute(features: &[bool], grid: &Grid) {
    let got = edt_squared(features, grid).unwrap();
    let want = brute_edt_sq(features, grid);
    for (v, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(close(f64::from(*g), *w, 1e-5), "voxel {v} of {:?}: got {g}, want {w}", grid.dims);
    }
    let plain = edt(features, grid).unwrap();
    for (p, g) in plain.iter().zip(&got) {
        assert!(close(f64::from(*p), f64::from(*g).sqrt(), 1e-6));
    }
}

#[test]
fn random_masks_match_brute_force() {
    let mut rng = Rng::new(1);
    let shapes = [[9, 7, 5], [16, 11, 6], [1, 13, 7], [12, 1, 9], [10, 8, 1], [1, 1, 17], [23, 5, 3]];
    for (t, dims) in shapes.iter().enumerate() {
        for p in [0.003, 0.02, 0.1, 0.5] {
            let grid = Grid::new(*dims, ANISO);
            let n = dims.iter().product();
            let mut mask = rng.mask(n, p);
            if t % 2 == 0 && !mask.iter().any(|b| *b) {
                mask[rng.below(n)] = true;
            }
            check_against_brute(&mask, &grid);
        }
    }
    // Another anisotropy, larger and sparse: long envelopes along every axis.
    let grid = Grid::new([20, 18, 14], [0.5, 1.5, 1.1]);
    for p in [0.001, 0.01] {
        check_against_brute(&rng.mask(20 * 18 * 14, p), &grid);
    }
}

#[test]
fn single_point_is_the_euclidean_norm() {
    let grid = Grid::new([11, 9, 7], ANISO);
    let mut f = vec![false; 11 * 9 * 7];
    f[idx(grid.dims, 3, 4, 2)] = true;
    let d = edt(&f, &grid).unwrap();
    for k in 0..7 {
        for j in 0..9 {
            for i in 0..11 {
                let dx = [(i as f64 - 3.0) * 1.0, (j as f64 - 4.0) * 0.8, (k as f64 - 2.0) * 2.5];
                let want = (dx[0] * dx[0] + dx[1] * dx[1] + dx[2] * dx[2]).sqrt();
                let got = f64::from(d[idx(grid.dims, i, j, k)]);
                assert!(close(got, want, 1e-6), "({i},{j},{k}): {got} vs {want}");
            }
        }
    }
}

#[test]
fn planes_give_distance_along_their_normal() {
    let dims = [8, 10, 12];
    let grid = Grid::new(dims, ANISO);
    for axis in 0..3 {
        let at = 3;
        let f: Vec<bool> = (0..dims.iter().product()).map(|v| common::coords(dims, v)[axis] == at).collect();
        let d = edt(&f, &grid).unwrap();
        for (v, got) in d.iter().enumerate() {
            let want = (common::coords(dims, v)[axis] as f64 - at as f64).abs() * ANISO[axis];
            assert!(close(f64::from(*got), want, 1e-6), "axis {axis} voxel {v}: {got} vs {want}");
        }
    }
}

#[test]
fn no_feature_is_infinite_and_all_features_zero() {
    let grid = Grid::new([5, 4, 3], ANISO);
    assert!(edt(&[false; 60], &grid).unwrap().iter().all(|d| *d == f32::INFINITY));
    assert!(edt_squared(&[true; 60], &grid).unwrap().iter().all(|d| *d == 0.0));
    assert!(edt(&[], &Grid::new([0, 4, 3], ANISO)).unwrap().is_empty());
}

#[test]
fn bad_input_is_an_error() {
    let grid = Grid::new([5, 4, 3], ANISO);
    assert!(matches!(edt(&[false; 59], &grid), Err(MetricsError::LengthMismatch { got: 59, expected: 60, .. })));
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let g = Grid::new([5, 4, 3], [1.0, bad, 1.0]);
        assert!(matches!(edt_squared(&[false; 60], &g), Err(MetricsError::InvalidGrid(_))));
    }
    let huge = Grid::new([usize::MAX, 2, 2], [1.0; 3]);
    assert!(matches!(edt(&[], &huge), Err(MetricsError::InvalidGrid(_))));
}
