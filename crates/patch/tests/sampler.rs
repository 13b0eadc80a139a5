//! Patch sampling: determinism, foreground bias, augmentation alignment, size errors.

mod common;

use common::{functional_case, label_of, sparse_case};
use magseg_patch::{AugmentConfig, PatchError, PatchSampler, Rng, SamplerConfig};

fn sampler(patch: [usize; 3], pos: f32, neg: f32, augment: AugmentConfig) -> PatchSampler {
    PatchSampler::new(SamplerConfig { patch, pos, neg, augment }).unwrap()
}

#[test]
fn same_seed_same_patches() {
    let case = sparse_case([20, 18, 16], [10, 9, 8]);
    let s = sampler([8, 8, 8], 1.0, 1.0, AugmentConfig::default());
    let draw = |seed| {
        let mut rng = Rng::new(seed);
        (0..20).map(|_| s.sample(&case, &mut rng).unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(draw(5), draw(5));
    assert_ne!(draw(5), draw(6));
}

#[test]
fn positive_only_always_contains_foreground() {
    let case = sparse_case([30, 28, 26], [20, 5, 17]);
    let s = sampler([8, 6, 10], 1.0, 0.0, AugmentConfig::default());
    let mut rng = Rng::new(1);
    for _ in 0..200 {
        let p = s.sample(&case, &mut rng).unwrap();
        assert_eq!(p.image.len(), 2 * 8 * 6 * 10);
        assert!(p.labels.iter().any(|&l| l != 0), "patch at {:?} has no foreground", p.origin);
    }
}

#[test]
fn negative_only_centres_in_brain_background() {
    let case = sparse_case([30, 28, 26], [20, 5, 17]);
    let s = sampler([1, 1, 1], 0.0, 1.0, AugmentConfig::none());
    let mut rng = Rng::new(2);
    for _ in 0..200 {
        let p = s.sample(&case, &mut rng).unwrap();
        assert_eq!(p.labels, vec![0]);
        assert!(p.image[0] != 0.0 || p.image[1] != 0.0);
    }
}

#[test]
fn unaugmented_crop_matches_source() {
    let case = functional_case([12, 10, 9], 2);
    let s = sampler([4, 5, 3], 1.0, 1.0, AugmentConfig::none());
    let mut rng = Rng::new(3);
    for _ in 0..20 {
        let p = s.sample(&case, &mut rng).unwrap();
        let [oi, oj, ok] = p.origin;
        let mut at = 0;
        for c in 0..2 {
            for k in 0..3 {
                for j in 0..5 {
                    for i in 0..4 {
                        assert_eq!(p.image[at], common::value(oi + i, oj + j, ok + k, c));
                        at += 1;
                    }
                }
            }
        }
    }
}

#[test]
fn augmentations_keep_image_and_labels_aligned() {
    let case = functional_case([16, 16, 16], 2);
    let always = AugmentConfig { flip_p: 0.5, rot90_p: 1.0, scale_p: 0.0, shift_p: 0.0, ..AugmentConfig::default() };
    for patch in [[8, 8, 8], [8, 8, 5], [6, 7, 7]] {
        let s = sampler(patch, 1.0, 1.0, always.clone());
        let mut rng = Rng::new(4);
        for _ in 0..50 {
            let p = s.sample(&case, &mut rng).unwrap();
            let n: usize = patch.iter().product();
            for v in 0..n {
                assert_eq!(p.labels[v], label_of(p.image[v]));
                // Channel 1 moved exactly like channel 0.
                assert_eq!(p.image[v + n], p.image[v] + 1_000_000.0);
            }
            let mut sorted: Vec<u64> = p.image[..n].iter().map(|&v| v as u64).collect();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), n, "augmentation must permute voxels");
        }
    }
}

#[test]
fn full_flip_reverses_axes() {
    let case = functional_case([4, 3, 2], 1);
    let flip = AugmentConfig { flip_p: 1.0, ..AugmentConfig::none() };
    let s = sampler([4, 3, 2], 1.0, 1.0, flip);
    let p = s.sample(&case, &mut Rng::new(0)).unwrap();
    let mut expected = case.image.clone();
    expected.reverse();
    assert_eq!(p.image, expected);
}

#[test]
fn intensity_changes_skip_zero_background() {
    let case = sparse_case([10, 10, 10], [5, 5, 5]);
    let aug = AugmentConfig { scale_p: 1.0, scale: 0.1, shift_p: 1.0, shift: 0.1, ..AugmentConfig::none() };
    let s = sampler([10, 10, 10], 1.0, 1.0, aug);
    let p = s.sample(&case, &mut Rng::new(9)).unwrap();
    for (a, b) in p.image.iter().zip(&case.image) {
        assert_eq!(*a == 0.0, *b == 0.0);
        if *b != 0.0 {
            assert!((a - b).abs() <= 0.1 * b.abs() + 0.1 + 1e-5);
        }
    }
    assert_ne!(p.image, case.image);
}

#[test]
fn patch_larger_than_volume_is_an_error() {
    let case = functional_case([8, 8, 8], 1);
    let s = sampler([8, 9, 8], 1.0, 1.0, AugmentConfig::none());
    let err = s.sample(&case, &mut Rng::new(0)).unwrap_err();
    assert!(matches!(err, PatchError::TooLarge { patch: [8, 9, 8], dims: [8, 8, 8] }));
    // Exactly the volume size works.
    assert!(sampler([8, 8, 8], 1.0, 1.0, AugmentConfig::none()).sample(&case, &mut Rng::new(0)).is_ok());
}

#[test]
fn bad_configs_rejected() {
    let mk = |patch, pos, neg| PatchSampler::new(SamplerConfig { patch, pos, neg, augment: AugmentConfig::none() });
    assert!(mk([0, 4, 4], 1.0, 1.0).is_err());
    assert!(mk([4, 4, 4], 0.0, 0.0).is_err());
    assert!(mk([4, 4, 4], -1.0, 1.0).is_err());
    assert!(mk([4, 4, 4], f32::NAN, 1.0).is_err());
    assert!(magseg_patch::CaseData::new("x", [2, 2, 2], 1, vec![0.0; 7], vec![0; 8]).is_err());
}
