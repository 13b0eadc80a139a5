//! `instance_norm_leaky_relu` (the activation fused into the norm's passes) against the two ops it
//! replaces, `leaky_relu(instance_norm(x))`, on the CPU: bit for bit in f32 (output and the gradients
//! of x, γ and β), and in bf16 bit for bit what the pair gives in f32 on the widened input, rounded
//! once; with and without γ/β, on slices of one and several CPU runs, with values at exactly 0.

mod common;

use candle_core::{DType, Tensor, Var};
use common::{flat, Rng};
use magseg_kernels::{instance_norm, instance_norm_leaky_relu, leaky_relu};

/// Output and gradients (x, γ, β) of `sum(f(x) · r)`; `fused` picks the fused op or the pair, `dtype`
/// the activations' dtype (γ, β stay f32); a bf16 pair runs in f32 on the widened input.
fn run(fused: bool, affine: bool, slope: f64, data: &[Tensor; 4], dtype: DType) -> Vec<Tensor> {
    let x = Var::from_tensor(&data[0].to_dtype(dtype).unwrap()).unwrap();
    let (g, b) = (Var::from_tensor(&data[1]).unwrap(), Var::from_tensor(&data[2]).unwrap());
    let (gamma, beta) = if affine { (Some(g.as_tensor()), Some(b.as_tensor())) } else { (None, None) };
    let y = if fused {
        instance_norm_leaky_relu(&x, gamma, beta, 1e-5, slope).unwrap()
    } else {
        let wide = x.to_dtype(DType::F32).unwrap();
        let y = leaky_relu(&instance_norm(&wide, gamma, beta, 1e-5).unwrap(), slope).unwrap();
        y.to_dtype(dtype).unwrap()
    };
    let r = data[3].to_dtype(dtype).unwrap();
    let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let mut out = vec![y, grads.get(&x).expect("x gradient").clone()];
    if affine {
        out.push(grads.get(&g).expect("gamma gradient").clone());
        out.push(grads.get(&b).expect("beta gradient").clone());
    }
    out
}

#[test]
fn fused_norm_and_leaky_relu_equal_the_pair() {
    for (dims, affine, slope) in
        [([2usize, 3, 4, 5, 6], true, 0.2), ([1, 2, 40, 30, 20], false, 0.01), ([2, 2, 3, 8, 8], true, 0.01)]
    {
        let mut rng = Rng(0x4E4C ^ dims.iter().product::<usize>() as u64);
        let mut x = rng.tensor(&dims);
        // With β = 0 and a symmetric slice, the normalised value 0 occurs exactly: the activation's
        // derivative there is the slope, on both sides.
        if !affine {
            let n = dims.iter().product::<usize>();
            let v: Vec<f32> = (0..n).map(|i| [-1.0, 0.0, 1.0][i % 3]).collect();
            x = Tensor::from_vec(v, &dims, x.device()).unwrap();
        }
        let data = [x, rng.tensor(&dims[1..2]), rng.tensor(&dims[1..2]), rng.tensor(&dims)];
        for dtype in [DType::F32, DType::BF16] {
            let (a, b) = (run(true, affine, slope, &data, dtype), run(false, affine, slope, &data, dtype));
            for (i, (p, q)) in a.iter().zip(&b).enumerate() {
                let what = ["output", "x gradient", "gamma gradient", "beta gradient"][i];
                assert_eq!(p.dtype(), q.dtype(), "{dims:?} {dtype:?} {what}: dtype");
                let (p, q) = (flat(&p.to_dtype(DType::F32).unwrap()), flat(&q.to_dtype(DType::F32).unwrap()));
                let same = p.iter().zip(&q).all(|(u, v)| u.to_bits() == v.to_bits());
                assert!(same, "{dims:?} {dtype:?} slope {slope} {what}: not bit-identical");
            }
        }
    }
}

#[test]
fn a_non_finite_slope_is_an_error() {
    let x = Rng(1).tensor(&[1, 2, 3, 3, 3]);
    assert!(instance_norm_leaky_relu(&x, None, None, 1e-5, f64::NAN).is_err());
}
