//! bf16 on the CPU: conv3d and conv_transpose3d take bf16 tensors (computed in f32, result rounded to
//! bf16) and their gradients flow through candle autograd in bf16. Each result is compared with the
//! f32 computation on the same bf16-rounded inputs: `|bf16 − f32| ≤ 1e-2 · max |f32|` per tensor
//! (one bf16 rounding of the result is ≤ 2⁻⁹ relative; gradients also see the bf16 rounding of the
//! output gradient and of candle's bf16 elementwise products, hence the margin). The bias gradient, a
//! sum over the batch and voxels, is accumulated in f32 by `add_bias` (candle's own bf16 sum was off
//! by up to ~5 %) and meets the same bound.

mod common;

use candle_core::{DType, Tensor, Var};
use common::{flat, Rng};
use magseg_kernels::{conv3d, conv_transpose3d, Conv3dConfig};

/// Relative tolerance, of the largest |value| of the f32 tensor.
const TOL: f32 = 1e-2;

fn assert_close(what: &str, f32_ref: &Tensor, bf: &Tensor) {
    assert_eq!(bf.dtype(), DType::BF16, "{what}: result dtype");
    assert_eq!(f32_ref.dims(), bf.dims(), "{what}: shapes differ");
    let a = flat(f32_ref);
    let b = flat(&bf.to_dtype(DType::F32).unwrap());
    let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-20);
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max) / scale;
    assert!(worst <= TOL, "{what}: max |bf16 − f32| / max |f32| = {worst:e} > {TOL:e}");
}

/// Output and gradients (x, w, bias) of `sum(op(x, w, b) · r)`, on tensors of dtype `dt`.
fn run(transpose: bool, cfg: Conv3dConfig, data: &[Tensor; 4], dt: DType) -> [Tensor; 4] {
    let v = |t: &Tensor| Var::from_tensor(&t.to_dtype(dt).unwrap()).unwrap();
    let (x, w, b) = (v(&data[0]), v(&data[1]), v(&data[2]));
    let y = if transpose {
        conv_transpose3d(&x, &w, Some(&b), cfg.stride).unwrap()
    } else {
        conv3d(&x, &w, Some(&b), cfg).unwrap()
    };
    let r = data[3].to_dtype(dt).unwrap();
    let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let g = |t: &Var| grads.get(t).expect("gradient present").clone();
    [y, g(&x), g(&w), g(&b)]
}

fn check(name: &str, transpose: bool, xd: &[usize], wd: &[usize], cfg: Conv3dConfig) {
    let mut rng = Rng(0xB16 ^ xd.iter().product::<usize>() as u64);
    // Round the inputs to bf16 once: both runs see the same values.
    let round = |t: Tensor| t.to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap();
    let x = round(rng.tensor(xd));
    let w = round(rng.tensor(wd));
    let b = round(rng.tensor(&[if transpose { wd[1] } else { wd[0] }]));
    let y0 = if transpose { conv_transpose3d(&x, &w, None, cfg.stride) } else { conv3d(&x, &w, None, cfg) };
    let r = round(rng.tensor(y0.unwrap().dims()));
    let data = [x, w, b, r];
    let reference = run(transpose, cfg, &data, DType::F32);
    let bf = run(transpose, cfg, &data, DType::BF16);
    for (i, what) in ["output", "input gradient", "weight gradient", "bias gradient"].iter().enumerate() {
        assert_close(&format!("{name}: {what}"), &reference[i], &bf[i]);
    }
    assert_eq!(bf[3].dtype(), DType::BF16, "{name}: bias gradient dtype");
}

#[test]
fn conv3d_bf16_matches_f32_with_gradients() {
    let c = |s, p| Conv3dConfig { stride: [s; 3], padding: [p; 3] };
    check("k3 s1 p1 3→5", false, &[2, 3, 7, 6, 5], &[5, 3, 3, 3, 3], c(1, 1));
    check("k3 s2 p0 4→2", false, &[1, 4, 9, 8, 7], &[2, 4, 3, 3, 3], c(2, 0));
    check("k1 16→8", false, &[2, 16, 5, 4, 3], &[8, 16, 1, 1, 1], c(1, 0));
}

#[test]
fn conv_transpose3d_bf16_matches_f32_with_gradients() {
    let c = Conv3dConfig { stride: [2; 3], padding: [0; 3] };
    check("transpose k2 s2 6→3", true, &[2, 6, 3, 4, 5], &[6, 3, 2, 2, 2], c);
}

#[test]
fn bf16_result_is_the_rounded_f32_result() {
    // The forward pass alone: exactly the f32 result on the same inputs, rounded to bf16.
    let mut rng = Rng(77);
    let x = rng.tensor(&[1, 2, 5, 5, 5]).to_dtype(DType::BF16).unwrap();
    let w = rng.tensor(&[3, 2, 3, 3, 3]).to_dtype(DType::BF16).unwrap();
    let cfg = Conv3dConfig { stride: [1; 3], padding: [1; 3] };
    let y = conv3d(&x, &w, None, cfg).unwrap();
    let yf = conv3d(&x.to_dtype(DType::F32).unwrap(), &w.to_dtype(DType::F32).unwrap(), None, cfg).unwrap();
    assert_eq!(
        flat(&y.to_dtype(DType::F32).unwrap()),
        flat(&yf.to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap())
    );
}

/// Output and gradients (x, γ, β) of `sum(norm(x) · r)` for a bf16 `x` (and `r`) with f32 γ, β:
/// `norm` either the instance norm on bf16 directly or widened to f32 and rounded back.
fn instance_norm_run(widen: bool, data: &[Tensor; 4]) -> [Tensor; 4] {
    let x = Var::from_tensor(&data[0].to_dtype(DType::BF16).unwrap()).unwrap();
    let (g, b) = (Var::from_tensor(&data[1]).unwrap(), Var::from_tensor(&data[2]).unwrap());
    let y = if widen {
        let y = magseg_kernels::instance_norm(&x.to_dtype(DType::F32).unwrap(), Some(&g), Some(&b), 1e-5).unwrap();
        y.to_dtype(DType::BF16).unwrap()
    } else {
        magseg_kernels::instance_norm(&x, Some(&g), Some(&b), 1e-5).unwrap()
    };
    let r = data[3].to_dtype(DType::BF16).unwrap();
    let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let grad = |t: &Var| grads.get(t).expect("gradient present").clone();
    [y, grad(&x), grad(&g), grad(&b)]
}

/// The instance norm reads bf16 as f32 and rounds its output and input gradient once: bit for bit
/// what widening the input to f32, normalising and rounding the result gives (values, the input's
/// gradient in bf16, γ's and β's in f32), without the two conversions.
#[test]
fn instance_norm_on_bf16_equals_the_widened_f32_norm() {
    for dims in [[2usize, 3, 4, 5, 6], [1, 2, 40, 30, 20]] {
        let mut rng = Rng(0x1B16 ^ dims.iter().product::<usize>() as u64);
        let data = [rng.tensor(&dims), rng.tensor(&dims[1..2]), rng.tensor(&dims[1..2]), rng.tensor(&dims)];
        let (direct, widened) = (instance_norm_run(false, &data), instance_norm_run(true, &data));
        for (i, what) in ["output", "input gradient", "gamma gradient", "beta gradient"].iter().enumerate() {
            assert_eq!(direct[i].dtype(), widened[i].dtype(), "{dims:?} {what}: dtype");
            assert_eq!(direct[i].dtype(), if i < 2 { DType::BF16 } else { DType::F32 }, "{dims:?} {what}: dtype");
            let (a, b) =
                (flat(&direct[i].to_dtype(DType::F32).unwrap()), flat(&widened[i].to_dtype(DType::F32).unwrap()));
            assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()), "{dims:?} {what}: not bit-identical");
        }
    }
}
