//! Analytic and finite-difference sanity checks, and error handling on bad input.

use candle_core::{DType, Device, Tensor, Var};
use magseg_distill::{
    dice_ce, feature_mse, kl_distill, magms_loss, magms_loss_stacked, DistillError, KlOptions, LossConfig,
};

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

/// Deterministic pseudo-random values in [-2, 2).
fn pseudo(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let v: Vec<f64> = (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 4.0 - 2.0
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap().to_dtype(dtype).unwrap()
}

fn labels(n: usize, c: u32, spatial: [usize; 3]) -> Tensor {
    let count = n * spatial.iter().product::<usize>();
    let v: Vec<u32> = (0..count as u32).map(|i| (i * 7 + i / 3) % c).collect();
    Tensor::from_vec(v, (n, spatial[0], spatial[1], spatial[2]), &Device::Cpu).unwrap()
}

#[test]
fn kl_is_zero_when_student_equals_teacher() {
    let z = pseudo(&[2, 3, 4, 3, 5], 1, DType::F32);
    for (t, soften) in [(1.0, false), (2.5, true), (1.0, true)] {
        let opts = KlOptions { soften_teacher: soften, detach_teacher: false };
        let kl = scalar(&kl_distill(&z, &z, t, opts).unwrap());
        assert!(kl.abs() < 1e-6, "T={t} soften={soften}: {kl}");
    }
    // Not softened and T != 1: the two distributions differ, so KL > 0.
    let kl = scalar(&kl_distill(&z, &z, 2.5, KlOptions::default()).unwrap());
    assert!(kl > 1e-3, "{kl}");
}

#[test]
fn perfect_confident_prediction_has_small_dice_ce() {
    let y = labels(2, 4, [4, 3, 5]);
    let classes = Tensor::arange(0u32, 4, &Device::Cpu).unwrap().reshape((1, 4, 1, 1, 1)).unwrap();
    let onehot = y.unsqueeze(1).unwrap().broadcast_eq(&classes).unwrap().to_dtype(DType::F32).unwrap();
    let logits = (onehot * 30.0).unwrap();
    let loss = scalar(&dice_ce(&logits, &y).unwrap());
    assert!((0.0..1e-4).contains(&loss), "{loss}");
    // The wrong confident prediction is expensive.
    let wrong = logits.neg().unwrap();
    assert!(scalar(&dice_ce(&wrong, &y).unwrap()) > 10.0);
}

#[test]
fn target_layouts_and_dtypes_agree() {
    let z = pseudo(&[2, 3, 4, 3, 5], 2, DType::F32);
    let y = labels(2, 3, [4, 3, 5]);
    let a = scalar(&dice_ce(&z, &y).unwrap());
    let b = scalar(&dice_ce(&z, &y.to_dtype(DType::I64).unwrap()).unwrap());
    let c = scalar(&dice_ce(&z, &y.to_dtype(DType::U8).unwrap().unsqueeze(1).unwrap()).unwrap());
    assert_eq!(a, b);
    assert_eq!(a, c);
}

#[test]
fn feature_mse_known_value() {
    let dev = Device::Cpu;
    let f = [Tensor::new(&[1f32, 2., 3., 4.], &dev).unwrap(), Tensor::new(&[0f32, 0.], &dev).unwrap()];
    let m = [Tensor::new(&[1f32, 1., 1., 1.], &dev).unwrap(), Tensor::new(&[2f32, 0.], &dev).unwrap()];
    // (0 + 1 + 4 + 9) / 4 + (4 + 0) / 2 = 3.5 + 2
    let v = scalar(&feature_mse(&f, &m).unwrap());
    assert!((v - 5.5).abs() < 1e-6, "{v}");
}

#[test]
fn gradient_matches_finite_differences() {
    let shape = [1, 3, 3, 2, 2];
    let y = labels(1, 3, [3, 2, 2]);
    let z0 = pseudo(&shape, 3, DType::F64);
    let z1 = pseudo(&shape, 4, DType::F64);
    let f1 = vec![pseudo(&[1, 2, 2, 2, 2], 5, DType::F64)];
    let fbar = vec![pseudo(&[1, 2, 2, 2, 2], 6, DType::F64)];
    let cfg = LossConfig { lambda: 0.8, gamma: 0.5, temperature: 2.0, soften_teacher: true, detach_teacher: false };
    let loss = |a: &Tensor, b: &Tensor| -> f64 {
        scalar(&magms_loss(a, std::slice::from_ref(b), std::slice::from_ref(&f1), &fbar, &y, cfg).unwrap().total)
    };
    let v0 = Var::from_tensor(&z0).unwrap();
    let v1 = Var::from_tensor(&z1).unwrap();
    let parts =
        magms_loss(v0.as_tensor(), &[v1.as_tensor().clone()], std::slice::from_ref(&f1), &fbar, &y, cfg).unwrap();
    let grads = parts.total.backward().unwrap();
    let eps = 1e-5;
    for (var, base, which) in [(&v0, &z0, 0), (&v1, &z1, 1)] {
        let g: Vec<f64> = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let flat: Vec<f64> = base.flatten_all().unwrap().to_vec1().unwrap();
        for i in [0, 5, 17, 30, 35] {
            let mut plus = flat.clone();
            plus[i] += eps;
            let mut minus = flat.clone();
            minus[i] -= eps;
            let p = Tensor::from_vec(plus, &shape[..], &Device::Cpu).unwrap();
            let m = Tensor::from_vec(minus, &shape[..], &Device::Cpu).unwrap();
            let fd = if which == 0 {
                (loss(&p, &z1) - loss(&m, &z1)) / (2.0 * eps)
            } else {
                (loss(&z0, &p) - loss(&z0, &m)) / (2.0 * eps)
            };
            assert!(
                (fd - g[i]).abs() <= 1e-6 + 1e-5 * fd.abs(),
                "z{which}[{i}]: analytic {} vs finite difference {fd}",
                g[i]
            );
        }
    }
}

#[test]
fn ablation_skips_distillation_terms() {
    let z0 = pseudo(&[1, 3, 2, 2, 2], 7, DType::F32);
    let z1 = pseudo(&[1, 3, 2, 2, 2], 8, DType::F32);
    let y = labels(1, 3, [2, 2, 2]);
    let parts =
        magms_loss(&z0, std::slice::from_ref(&z1), &[], &[], &y, LossConfig::without_self_distillation()).unwrap();
    assert_eq!((parts.kl, parts.mse), (0.0, 0.0));
    let want = scalar(&dice_ce(&z0, &y).unwrap()) + scalar(&dice_ce(&z1, &y).unwrap());
    assert!((scalar(&parts.total) - want).abs() < 1e-5);
    assert_eq!(parts.dice_ce.len(), 2);
}

#[test]
fn bad_input_is_an_error() {
    let z = pseudo(&[1, 3, 2, 2, 2], 9, DType::F32);
    let y = labels(1, 3, [2, 2, 2]);
    // Shape mismatches.
    let small = pseudo(&[1, 3, 2, 2, 1], 9, DType::F32);
    assert!(matches!(dice_ce(&small, &y), Err(DistillError::Shape(_))));
    assert!(matches!(dice_ce(&z.flatten_all().unwrap(), &y), Err(DistillError::Shape(_))));
    assert!(matches!(kl_distill(&z, &small, 1.0, KlOptions::default()), Err(DistillError::Shape(_))));
    assert!(matches!(feature_mse(std::slice::from_ref(&z), std::slice::from_ref(&small)), Err(DistillError::Shape(_))));
    assert!(matches!(feature_mse(std::slice::from_ref(&z), &[]), Err(DistillError::Shape(_))));
    assert!(matches!(
        magms_loss(&z, std::slice::from_ref(&small), &[], &[], &y, LossConfig::default()),
        Err(DistillError::Shape(_))
    ));
    assert!(matches!(
        magms_loss(&z, std::slice::from_ref(&z), &[], &[], &y, LossConfig::default()),
        Err(DistillError::Shape(_))
    ));
    // Labels and dtypes.
    let big = (y.to_dtype(DType::I64).unwrap() + 3.0).unwrap();
    assert!(matches!(dice_ce(&z, &big), Err(DistillError::Label(_))));
    let neg = (y.to_dtype(DType::I64).unwrap() - 1.0).unwrap();
    assert!(matches!(dice_ce(&z, &neg), Err(DistillError::Label(_))));
    let float_target = y.to_dtype(DType::F32).unwrap();
    assert!(matches!(dice_ce(&z, &float_target), Err(DistillError::DType(_))));
    // Configuration.
    assert!(matches!(kl_distill(&z, &z, 0.0, KlOptions::default()), Err(DistillError::Config(_))));
    let cfg = LossConfig { lambda: -1.0, ..LossConfig::default() };
    assert!(matches!(magms_loss(&z, &[], &[], &[], &y, cfg), Err(DistillError::Config(_))));
}

/// The feature MSE of the stacked loss (one broadcast difference per level) against one
/// [`feature_mse`] per modality: value and the gradients of every feature map, the mean included.
#[test]
fn stacked_feature_mse_matches_one_term_per_modality() {
    let y = labels(2, 3, [2, 3, 2]);
    let z: Vec<Tensor> = (0..3).map(|k| pseudo(&[2, 3, 2, 3, 2], 20 + k, DType::F32)).collect();
    let level_shapes: [&[usize]; 2] = [&[2, 4, 2, 3, 2], &[2, 8, 1, 1, 1]];
    let vars = |seed: u64| -> Vec<Var> {
        level_shapes
            .iter()
            .enumerate()
            .map(|(l, s)| Var::from_tensor(&pseudo(s, seed + l as u64, DType::F32)).unwrap())
            .collect()
    };
    let (fbar, f1, f2) = (vars(30), vars(40), vars(50));
    let t = |v: &[Var]| -> Vec<Tensor> { v.iter().map(|v| v.as_tensor().clone()).collect() };
    let cfg = LossConfig { lambda: 0.0, gamma: 0.7, ..LossConfig::default() };
    let parts = magms_loss(&z[0], &z[1..], &[t(&f1), t(&f2)], &t(&fbar), &y, cfg).unwrap();
    let mse = (feature_mse(&t(&f1), &t(&fbar)).unwrap() + feature_mse(&t(&f2), &t(&fbar)).unwrap()).unwrap();
    assert!((parts.mse - scalar(&mse)).abs() < 1e-6 * scalar(&mse), "{} vs {}", parts.mse, scalar(&mse));
    let (got, want) = (parts.total.backward().unwrap(), mse.affine(0.7, 0.0).unwrap().backward().unwrap());
    for v in fbar.iter().chain(&f1).chain(&f2) {
        let g: Vec<f32> = got.get(v.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let w: Vec<f32> = want.get(v.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        for (a, b) in g.iter().zip(&w) {
            assert!((a - b).abs() <= 1e-6 + 1e-5 * b.abs(), "{a} vs {b}");
        }
    }
    // The stacked entry point itself, and its errors.
    let logits = Tensor::cat(&z, 0).unwrap();
    let stack = |l: usize| Tensor::cat(&[fbar[l].as_tensor(), f1[l].as_tensor(), f2[l].as_tensor()], 0).unwrap();
    let feats = [stack(0), stack(1)];
    let direct = magms_loss_stacked(&logits, 3, &feats, &y, cfg).unwrap();
    assert_eq!((direct.mse, direct.dice_ce.clone()), (parts.mse, parts.dice_ce.clone()));
    assert!(matches!(magms_loss_stacked(&logits, 2, &feats, &y, cfg), Err(DistillError::Shape(_))));
    assert!(matches!(magms_loss_stacked(&logits, 3, &[], &y, cfg), Err(DistillError::Shape(_))));
    let short = [feats[0].narrow(0, 0, 4).unwrap()];
    assert!(matches!(magms_loss_stacked(&logits, 3, &short, &y, cfg), Err(DistillError::Shape(_))));
}
