//! The row-wise ops against candle_nn's composed versions (independent implementations of PyTorch's
//! formulas): `layer_norm` against `layer_norm_slow` (values and the gradients of x, γ and β through
//! autograd), `softmax_last` against `softmax(…, D::Minus1)` (values and input gradient), on rows of
//! several lengths, in f32 and (through the fallback) f64.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{close, Rng};

#[test]
fn values_and_gradients_match_candle_nn_layer_norm_slow() {
    let mut rng = Rng(0x1A7E);
    for (dims, dtype, tol) in [
        (vec![2usize, 5, 768], DType::F32, 2e-5),
        (vec![3, 7], DType::F32, 2e-5),
        (vec![1, 300], DType::F32, 2e-5),
        (vec![4, 33], DType::F64, 1e-12),
    ] {
        let h = *dims.last().unwrap();
        // Rows with an offset and a spread, so that the mean and the variance both matter.
        let x = (rng.tensor(&dims).affine(2.0, 0.5).unwrap()).to_dtype(dtype).unwrap();
        let gamma = rng.tensor(&[h]).affine(0.5, 1.0).unwrap().to_dtype(dtype).unwrap();
        let beta = rng.tensor(&[h]).to_dtype(dtype).unwrap();
        let r = rng.tensor(&dims).to_dtype(dtype).unwrap();
        let run = |f: &dyn Fn(&Tensor, &Tensor, &Tensor) -> Tensor| {
            let (x, g, b) =
                (Var::from_tensor(&x).unwrap(), Var::from_tensor(&gamma).unwrap(), Var::from_tensor(&beta).unwrap());
            let y = f(&x, &g, &b);
            let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            [y, grads.get(&x).unwrap().clone(), grads.get(&g).unwrap().clone(), grads.get(&b).unwrap().clone()]
        };
        let ours = run(&|x, g, b| magseg_kernels::layer_norm(x, g, b, 1e-5).unwrap());
        let reference = run(&|x, g, b| candle_nn::ops::layer_norm_slow(x, g, b, 1e-5).unwrap());
        for (i, what) in ["y", "dx", "dgamma", "dbeta"].iter().enumerate() {
            close(&format!("{dims:?} {dtype:?} {what}"), &ours[i], &reference[i], tol);
        }
    }
}

#[test]
fn bad_shapes_are_errors() {
    let x = Tensor::zeros((2, 4), DType::F32, &Device::Cpu).unwrap();
    let ok = Tensor::ones(4, DType::F32, &Device::Cpu).unwrap();
    let short = Tensor::ones(3, DType::F32, &Device::Cpu).unwrap();
    assert!(magseg_kernels::layer_norm(&x, &short, &ok, 1e-5).is_err());
    assert!(magseg_kernels::layer_norm(&x, &ok, &ok, -1.0).is_err());
    // A constant row normalises to β (variance 0, eps keeps it finite).
    let y = magseg_kernels::layer_norm(&x, &ok, &ok, 1e-5).unwrap();
    assert_eq!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), vec![1.0; 8]);
}

#[test]
fn softmax_matches_candle_nn_softmax() {
    let mut rng = Rng(0x50F7);
    for (dims, dtype, tol) in [
        (vec![2usize, 12, 216, 216], DType::F32, 1e-6),
        (vec![3, 1], DType::F32, 1e-6),
        (vec![5, 700], DType::F32, 1e-6),
        (vec![4, 9], DType::F64, 1e-14),
    ] {
        // Logits spread over ±8, so that the shift by the row maximum matters.
        let x = rng.tensor(&dims).affine(8.0, 0.0).unwrap().to_dtype(dtype).unwrap();
        let r = rng.tensor(&dims).to_dtype(dtype).unwrap();
        let run = |f: &dyn Fn(&Tensor) -> Tensor| {
            let v = Var::from_tensor(&x).unwrap();
            let y = f(&v);
            let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            [y, g.get(&v).unwrap().clone()]
        };
        let ours = run(&|x| magseg_kernels::softmax_last(x).unwrap());
        let reference = run(&|x| candle_nn::ops::softmax(x, candle_core::D::Minus1).unwrap());
        close(&format!("softmax {dims:?} {dtype:?} y"), &ours[0], &reference[0], tol);
        close(&format!("softmax {dims:?} {dtype:?} dx"), &ours[1], &reference[1], tol);
    }
}
