//! `linear` and `self_attention` against the same layers composed from candle ops (the ViT's code
//! before they became custom ops: `candle_nn::Linear` + `add_bias`, MONAI's SABlock as reshapes,
//! matmuls and a softmax): values and every gradient through autograd, in f32 and bf16, with and
//! without a bias, for 2-D and 3-D inputs and several head counts.

mod common;

use candle_core::{DType, Device, Module, Tensor, Var};
use common::{close, Rng};

/// The layer composed from candle ops: `candle_nn::Linear` (no bias) and `add_bias`.
fn linear_reference(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Tensor {
    let y = candle_nn::Linear::new(w.clone(), None).forward(x).unwrap();
    match b {
        Some(b) => magseg_kernels::add_bias(&y, b, y.rank() - 1).unwrap(),
        None => y,
    }
}

/// MONAI's SABlock core composed from candle ops.
fn attention_reference(qkv: &Tensor, heads: usize) -> Tensor {
    let (b, n, h3) = qkv.dims3().unwrap();
    let d = h3 / 3 / heads;
    let t = qkv.reshape((b, n, 3, heads, d)).unwrap().permute((2, 0, 3, 1, 4)).unwrap();
    let parts: Vec<Tensor> = (0..3).map(|i| t.get(i).unwrap().contiguous().unwrap()).collect();
    let (q, k, v) = (&parts[0], &parts[1], &parts[2]);
    let s = (q.matmul(&k.t().unwrap().contiguous().unwrap()).unwrap() * (d as f64).powf(-0.5)).unwrap();
    let p = candle_nn::ops::softmax(&s.to_dtype(DType::F32).unwrap(), candle_core::D::Minus1).unwrap();
    let o = p.to_dtype(v.dtype()).unwrap().matmul(v).unwrap();
    o.transpose(1, 2).unwrap().reshape((b, n, heads * d)).unwrap()
}

/// `f(vars)`, and the gradients of `Σ f·r` for each of `inputs` (as variables), `r` fixed.
fn value_and_grads(inputs: &[&Tensor], r: &Tensor, f: &dyn Fn(&[Tensor]) -> Tensor) -> Vec<Tensor> {
    let vars: Vec<Var> = inputs.iter().map(|t| Var::from_tensor(t).unwrap()).collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&ts);
    let loss = (y.to_dtype(DType::F32).unwrap() * r).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    std::iter::once(y).chain(vars.iter().map(|v| grads.get(v).unwrap().clone())).collect()
}

#[test]
fn linear_values_and_gradients_match_the_composed_layer() {
    let mut rng = Rng(0x11EA);
    for (xdims, n, bias, dtype, tol) in [
        (vec![2usize, 5, 24], 12usize, Some(DType::F32), DType::F32, 1e-6),
        (vec![7, 24], 40, Some(DType::F32), DType::F32, 1e-6),
        (vec![1, 9, 16], 48, None, DType::F32, 1e-6),
        (vec![2, 5, 24], 12, Some(DType::F32), DType::BF16, 1e-2),
        (vec![3, 8, 32], 16, None, DType::BF16, 1e-2),
        (vec![3, 8, 32], 16, Some(DType::BF16), DType::BF16, 1e-2),
    ] {
        let k = *xdims.last().unwrap();
        let x = rng.tensor(&xdims).to_dtype(dtype).unwrap();
        let w = rng.tensor(&[n, k]).affine(0.3, 0.0).unwrap().to_dtype(dtype).unwrap();
        let b = bias.map(|bt| rng.tensor(&[n]).to_dtype(bt).unwrap());
        let mut ydims = xdims.clone();
        *ydims.last_mut().unwrap() = n;
        let r = rng.tensor(&ydims);
        let inputs: Vec<&Tensor> = [Some(&x), Some(&w), b.as_ref()].into_iter().flatten().collect();
        let ours = value_and_grads(&inputs, &r, &|v| magseg_kernels::linear(&v[0], &v[1], v.get(2)).unwrap());
        let reference = value_and_grads(&inputs, &r, &|v| linear_reference(&v[0], &v[1], v.get(2)));
        for (i, what) in ["y", "dx", "dw", "db"].iter().enumerate().take(ours.len()) {
            close(&format!("{xdims:?}→{n} {dtype:?} bias {bias:?}: {what}"), &ours[i], &reference[i], tol);
        }
        if dtype == DType::F32 {
            // The forward pass runs the very storage calls of the composed layer.
            assert_eq!(common::flat(&ours[0]), common::flat(&reference[0]), "{xdims:?} forward bit-identical");
        }
    }
}

#[test]
fn attention_values_and_gradients_match_the_composed_block() {
    let mut rng = Rng(0xA77E);
    for (b, n, heads, d, dtype, tol) in [
        (1usize, 8usize, 12usize, 64usize, DType::F32, 2e-6),
        (2, 7, 4, 6, DType::F32, 2e-6),
        (1, 27, 1, 16, DType::F32, 2e-6),
        (2, 7, 4, 6, DType::BF16, 2e-2),
        (1, 8, 12, 64, DType::BF16, 2e-2),
    ] {
        // Spread-out scores, so that the softmax is far from uniform.
        let qkv = rng.tensor(&[b, n, 3 * heads * d]).affine(1.5, 0.0).unwrap().to_dtype(dtype).unwrap();
        let r = rng.tensor(&[b, n, heads * d]);
        let ours = value_and_grads(&[&qkv], &r, &|v| magseg_kernels::self_attention(&v[0], heads).unwrap());
        let reference = value_and_grads(&[&qkv], &r, &|v| attention_reference(&v[0], heads));
        for (i, what) in ["y", "dqkv"].iter().enumerate() {
            close(&format!("({b}, {n}, 3·{heads}·{d}) {dtype:?}: {what}"), &ours[i], &reference[i], tol);
        }
    }
}

#[test]
fn bad_arguments_are_errors() {
    let dev = Device::Cpu;
    let x = Tensor::zeros((2, 3, 8), DType::F32, &dev).unwrap();
    let w = Tensor::zeros((4, 8), DType::F32, &dev).unwrap();
    assert!(magseg_kernels::linear(&x, &Tensor::zeros((4, 7), DType::F32, &dev).unwrap(), None).is_err());
    assert!(magseg_kernels::linear(&x, &w, Some(&Tensor::zeros(5, DType::F32, &dev).unwrap())).is_err());
    assert!(magseg_kernels::linear(&x, &w.to_dtype(DType::BF16).unwrap(), None).is_err());
    assert!(magseg_kernels::linear(&x, &w, None).is_ok());
    let qkv = Tensor::zeros((1, 4, 24), DType::F32, &dev).unwrap();
    assert!(magseg_kernels::self_attention(&qkv, 3).is_err(), "24 is not a multiple of 3 × 3 heads");
    assert!(magseg_kernels::self_attention(&qkv, 0).is_err());
    assert!(magseg_kernels::self_attention(&qkv.reshape((4, 24)).unwrap(), 2).is_err());
    assert_eq!(magseg_kernels::self_attention(&qkv, 4).unwrap().dims(), &[1, 4, 8]);
}

#[test]
fn other_dtypes_take_the_composed_path() {
    let mut rng = Rng(0xF64);
    let x = rng.tensor(&[2, 3, 8]).to_dtype(DType::F64).unwrap();
    let w = rng.tensor(&[4, 8]).to_dtype(DType::F64).unwrap();
    let b = rng.tensor(&[4]).to_dtype(DType::F64).unwrap();
    close("f64 linear", &magseg_kernels::linear(&x, &w, Some(&b)).unwrap(), &linear_reference(&x, &w, Some(&b)), 1e-12);
    let qkv = rng.tensor(&[1, 5, 24]).to_dtype(DType::F64).unwrap();
    close("f64 attention", &magseg_kernels::self_attention(&qkv, 2).unwrap(), &attention_reference(&qkv, 2), 1e-6);
}
