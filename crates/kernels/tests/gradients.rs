//! Finite-difference gradient checks (central differences, step 1e-2, relative tolerance 1e-2)
//! of conv3d (input, weight, bias), conv_transpose3d and instance_norm on tiny shapes.

mod common;

use candle_core::{Device, Tensor, Var};
use common::{flat, Rng};
use magseg_kernels::{conv3d, conv_transpose3d, instance_norm, Conv3dConfig};

const STEP: f32 = 1e-2;
const TOL: f32 = 1e-2;

/// Checks the autograd gradient of `loss(vars)` with respect to every element of every var.
fn check_fd(name: &str, vars: &[Var], loss: impl Fn(&[Tensor]) -> Tensor) {
    let base: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let grads = loss(&base).backward().unwrap();
    for (vi, v) in vars.iter().enumerate() {
        let analytic = flat(grads.get(v).expect("gradient present"));
        let values = flat(v);
        let scale = analytic.iter().fold(0.0f32, |m, g| m.max(g.abs())).max(1e-3);
        for i in 0..values.len() {
            let eval = |delta: f32| {
                let mut vals = values.clone();
                vals[i] += delta;
                let mut ts = base.clone();
                ts[vi] = Tensor::from_vec(vals, v.dims(), &Device::Cpu).unwrap();
                loss(&ts).to_scalar::<f32>().unwrap()
            };
            let fd = (eval(STEP) - eval(-STEP)) / (2.0 * STEP);
            let an = analytic[i];
            assert!(
                (fd - an).abs() <= TOL * an.abs().max(fd.abs()) + TOL * 0.1 * scale,
                "{name}: var {vi} element {i}: finite difference {fd} vs autograd {an}"
            );
        }
    }
}

/// `sum(y · r)` for a fixed random `r` shaped like `y`.
fn weighted_sum(y: &Tensor, seed: u64) -> Tensor {
    let r = Rng(seed).tensor(y.dims());
    (y * r).unwrap().sum_all().unwrap()
}

#[test]
fn conv3d_gradients_match_finite_differences() {
    let mut rng = Rng(1);
    for (stride, pad, k) in [([1; 3], [1; 3], [3, 3, 3]), ([2, 1, 2], [0, 1, 1], [2, 3, 1])] {
        let x = Var::from_tensor(&rng.tensor(&[2, 2, 4, 3, 5])).unwrap();
        let w = Var::from_tensor(&rng.tensor(&[3, 2, k[0], k[1], k[2]])).unwrap();
        let b = Var::from_tensor(&rng.tensor(&[3])).unwrap();
        let cfg = Conv3dConfig { stride, padding: pad };
        check_fd("conv3d", &[x, w, b], |t| weighted_sum(&conv3d(&t[0], &t[1], Some(&t[2]), cfg).unwrap(), 7));
    }
}

#[test]
fn conv_transpose3d_gradients_match_finite_differences() {
    let mut rng = Rng(2);
    for (stride, k) in [([2; 3], [2; 3]), ([2, 1, 3], [3, 2, 2])] {
        let x = Var::from_tensor(&rng.tensor(&[2, 3, 2, 3, 2])).unwrap();
        let w = Var::from_tensor(&rng.tensor(&[3, 2, k[0], k[1], k[2]])).unwrap();
        let b = Var::from_tensor(&rng.tensor(&[2])).unwrap();
        check_fd("conv_transpose3d", &[x, w, b], |t| {
            weighted_sum(&conv_transpose3d(&t[0], &t[1], Some(&t[2]), stride).unwrap(), 8)
        });
    }
}

#[test]
fn instance_norm_gradients_match_finite_differences() {
    let mut rng = Rng(3);
    let x = Var::from_tensor(&rng.tensor(&[2, 3, 3, 2, 4]).affine(2.0, 0.0).unwrap()).unwrap();
    let gamma = Var::from_tensor(&rng.tensor(&[3])).unwrap();
    let beta = Var::from_tensor(&rng.tensor(&[3])).unwrap();
    check_fd("instance_norm affine", &[x.clone(), gamma, beta], |t| {
        weighted_sum(&instance_norm(&t[0], Some(&t[1]), Some(&t[2]), 1e-5).unwrap(), 9)
    });
    check_fd("instance_norm plain", &[x], |t| weighted_sum(&instance_norm(&t[0], None, None, 1e-5).unwrap(), 10));
}

#[test]
fn instance_norm_normalises_each_instance() {
    let x = Rng(4).tensor(&[2, 3, 4, 5, 6]).affine(3.0, 1.5).unwrap();
    let y = instance_norm(&x, None, None, 1e-5).unwrap();
    let y = y.reshape((6, 120)).unwrap();
    for row in y.to_vec2::<f32>().unwrap() {
        let mean = row.iter().sum::<f32>() / 120.0;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 120.0;
        assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3, "mean {mean} var {var}");
    }
}
