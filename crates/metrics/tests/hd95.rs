//! Surface-distance metric tests: analytic HD95/HD/ASSD cases, MONAI vs pooled on a one-sided error,
//! cropping against no cropping and against brute force, percentile, input errors.

mod common;

use common::{brute_directed, close, cuboid, np_percentile, sphere, Rng};
use magseg_metrics::{
    compare_masks, percentile, surface_distances, surface_distances_uncropped, Connectivity, EvalOptions, Grid,
    Hd95Convention, MetricsError,
};

const ANISO: [f64; 3] = [1.0, 0.8, 2.5];

fn opts(hd95: Hd95Convention, connectivity: Connectivity) -> EvalOptions {
    EvalOptions { hd95, connectivity, ..EvalOptions::default() }
}

#[test]
fn concentric_spheres_are_about_two_apart() {
    let grid = Grid::unit([40, 40, 40]);
    let c = [19.5, 20.0, 19.7];
    let (a, b) = (sphere(&grid, c, 10.0), sphere(&grid, c, 12.0));
    for conv in [Hd95Convention::Monai, Hd95Convention::Pooled] {
        let m = compare_masks(&a, &b, &grid, &opts(conv, Connectivity::Six)).unwrap();
        assert!((1.5..=3.0).contains(&m.hd95), "{conv:?}: {m:?}");
        assert!((m.assd - 2.0).abs() < 0.4, "{m:?}");
        assert!(m.hd <= 3.5 && m.note.is_none());
        let want = 2.0 * 10f64.powi(3) / (10f64.powi(3) + 12f64.powi(3));
        assert!((m.dice - want).abs() < 0.02, "{} vs {want}", m.dice);
    }
}

#[test]
fn separated_slabs_are_exactly_k_apart_with_anisotropy() {
    let dims = [12, 9, 7];
    let grid = Grid::new(dims, ANISO);
    for axis in 0..3 {
        for k in 1..4 {
            let slab = |at: usize| -> Vec<bool> {
                (0..dims.iter().product()).map(|v| common::coords(dims, v)[axis] == at).collect()
            };
            let (a, b) = (slab(1), slab(1 + k));
            let want = k as f64 * ANISO[axis];
            for conv in [Hd95Convention::Monai, Hd95Convention::Pooled] {
                let m = compare_masks(&a, &b, &grid, &opts(conv, Connectivity::Six)).unwrap();
                for v in [m.hd95, m.hd, m.assd] {
                    assert!(close(v, want, 1e-6), "axis {axis} k {k}: {m:?}");
                }
                assert_eq!(m.dice, 0.0);
            }
        }
    }
}

#[test]
fn shifted_cube_has_hausdorff_k_and_matches_brute_force() {
    let grid = Grid::new([24, 16, 14], ANISO);
    for k in [1usize, 2, 3, 5] {
        let a = cuboid(&grid, [4, 3, 3], [12, 11, 10]);
        let b = cuboid(&grid, [4 + k, 3, 3], [12 + k, 11, 10]);
        for c in [Connectivity::Six, Connectivity::TwentySix] {
            let d = surface_distances(&a, &b, &grid, c).unwrap();
            assert!(close(d.hd(), k as f64 * ANISO[0], 1e-6), "k {k}: {}", d.hd());
            let (ab, ba) = (brute_directed(&a, &b, &grid, c), brute_directed(&b, &a, &grid, c));
            let monai = np_percentile(&ab, 95.0).max(np_percentile(&ba, 95.0));
            let pooled = np_percentile(&[ab.clone(), ba.clone()].concat(), 95.0);
            assert!(close(d.hd95(Hd95Convention::Monai), monai, 1e-6));
            assert!(close(d.hd95(Hd95Convention::Pooled), pooled, 1e-6));
            let inter = (8 - k.min(8)) as f64 / 8.0;
            let m = compare_masks(&a, &b, &grid, &opts(Hd95Convention::Monai, c)).unwrap();
            assert!(close(m.dice, inter, 1e-12), "dice {} vs {inter}", m.dice);
        }
    }
}

#[test]
fn one_sided_false_positive_separates_the_conventions() {
    // Prediction = reference grown by one voxel + two distant blobs; the blobs are more than 5 % of the
    // prediction's surface but less than 5 % of both surfaces together.
    let grid = Grid::unit([64, 40, 40]);
    let reference = sphere(&grid, [18.0, 20.0, 20.0], 10.0);
    let mut pred = sphere(&grid, [18.0, 20.0, 20.0], 11.0);
    for blob in [sphere(&grid, [55.0, 20.0, 20.0], 2.5), sphere(&grid, [55.0, 32.0, 10.0], 2.0)] {
        pred.iter_mut().zip(&blob).for_each(|(p, b)| *p |= *b);
    }
    let d = surface_distances(&pred, &reference, &grid, Connectivity::Six).unwrap();
    let (monai, pooled) = (d.hd95(Hd95Convention::Monai), d.hd95(Hd95Convention::Pooled));
    let (ab, ba) = (
        brute_directed(&pred, &reference, &grid, Connectivity::Six),
        brute_directed(&reference, &pred, &grid, Connectivity::Six),
    );
    assert_eq!(d.pred_to_ref.len(), ab.len());
    assert!(close(monai, np_percentile(&ab, 95.0).max(np_percentile(&ba, 95.0)), 1e-9));
    assert!(close(pooled, np_percentile(&[ab, ba].concat(), 95.0), 1e-9));
    let far = d.pred_to_ref.iter().filter(|x| **x > 10.0).count() as f64;
    let (np, nr) = (d.pred_to_ref.len() as f64, d.ref_to_pred.len() as f64);
    assert!(far / np > 0.05 && far / (np + nr) < 0.05, "{far} of {np} + {nr}");
    assert!(monai > 3.0 * pooled, "monai {monai} pooled {pooled}");
    assert!(monai > 20.0 && pooled < 3.0, "monai {monai} pooled {pooled}");
}

#[test]
fn cropping_is_exact_and_matches_brute_force() {
    let mut rng = Rng::new(11);
    for (t, dims) in [[14, 12, 9], [9, 15, 11], [18, 7, 6]].into_iter().enumerate() {
        let grid = Grid::new(dims, if t == 1 { [0.5, 1.5, 1.0] } else { ANISO });
        let n: usize = dims.iter().product();
        for trial in 0..6 {
            // Random blobs in a random sub-box, sometimes touching the grid border.
            let sub = |rng: &mut Rng| -> Vec<bool> {
                let lo: Vec<usize> = dims.iter().map(|d| rng.below(d / 2 + 1)).collect();
                let hi: Vec<usize> = dims.iter().zip(&lo).map(|(d, l)| (l + 2 + rng.below(*d)).min(*d)).collect();
                let dense = 0.4 + 0.5 * rng.unit();
                (0..n)
                    .map(|v| {
                        let c = common::coords(dims, v);
                        (0..3).all(|a| (lo[a]..hi[a]).contains(&c[a])) && rng.unit() < dense
                    })
                    .collect()
            };
            let (a, b) = (sub(&mut rng), sub(&mut rng));
            if !a.iter().any(|x| *x) || !b.iter().any(|x| *x) {
                continue;
            }
            for c in [Connectivity::Six, Connectivity::TwentySix] {
                let cropped = surface_distances(&a, &b, &grid, c).unwrap();
                let full = surface_distances_uncropped(&a, &b, &grid, c).unwrap();
                let brute = (brute_directed(&a, &b, &grid, c), brute_directed(&b, &a, &grid, c));
                // The lists are multisets (order unspecified): compare them sorted.
                let sorted = |v: &Vec<f64>| {
                    let mut v = v.clone();
                    v.sort_by(f64::total_cmp);
                    v
                };
                for (x, (y, z)) in [
                    (sorted(&cropped.pred_to_ref), (sorted(&full.pred_to_ref), sorted(&brute.0))),
                    (sorted(&cropped.ref_to_pred), (sorted(&full.ref_to_pred), sorted(&brute.1))),
                ] {
                    assert_eq!(x.len(), y.len(), "{dims:?} trial {trial}");
                    assert_eq!(x.len(), z.len());
                    for ((p, q), r) in x.iter().zip(&y).zip(&z) {
                        assert!(close(*p, *q, 1e-6) && close(*p, *r, 1e-5), "{p} {q} {r}");
                    }
                }
                for conv in [Hd95Convention::Monai, Hd95Convention::Pooled] {
                    assert!(close(cropped.hd95(conv), full.hd95(conv), 1e-6));
                }
                assert!(close(cropped.assd(), full.assd(), 1e-6));
            }
        }
    }
}

#[test]
fn percentile_is_numpys_linear() {
    let mut rng = Rng::new(3);
    for n in [1usize, 2, 3, 7, 20, 21, 100, 101] {
        let x: Vec<f64> = (0..n).map(|_| (rng.unit() * 50.0).round() / 4.0).collect();
        for q in [0.0, 5.0, 50.0, 95.0, 99.0, 100.0] {
            assert!(close(percentile(&x, q), np_percentile(&x, q), 1e-12), "n {n} q {q}");
        }
    }
    // numpy: np.percentile([1, 2, 3, 4], 95) = 3.85; np.percentile(range(21), 95) = 19.0
    assert!(close(percentile(&[4.0, 1.0, 3.0, 2.0], 95.0), 3.85, 1e-12));
    assert_eq!(percentile(&(0..21).map(f64::from).collect::<Vec<_>>(), 95.0), 19.0);
    assert!(percentile(&[], 95.0).is_nan());
}

#[test]
fn length_mismatch_and_bad_options_are_errors() {
    let grid = Grid::unit([4, 4, 4]);
    let (a, b) = (vec![true; 64], vec![true; 63]);
    assert!(matches!(
        compare_masks(&a, &b, &grid, &EvalOptions::default()),
        Err(MetricsError::LengthMismatch { what: "reference", got: 63, expected: 64, .. })
    ));
    assert!(surface_distances(&b, &a, &grid, Connectivity::Six).is_err());
    assert!(matches!(magseg_metrics::dice(&a, &b), Err(MetricsError::MaskLengths { pred: 64, reference: 63 })));
    let bad = EvalOptions { empty_penalty_mm: f64::NAN, ..EvalOptions::default() };
    assert!(matches!(compare_masks(&a, &a, &grid, &bad), Err(MetricsError::InvalidOption(_))));
    let neg = EvalOptions { empty_penalty_mm: -1.0, ..EvalOptions::default() };
    assert!(compare_masks(&a, &a, &grid, &neg).is_err());
}
