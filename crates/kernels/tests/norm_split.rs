//! instance_norm against the closed-form instance norm and its gradient, computed in f64 on the
//! host: output and the gradients of x, gamma and beta, on volumes of 4096 and 3·2048 voxels, in f32
//! (the custom ops) and in f64 (candle ops with the two-stage sums and broadcasts of crate `reduce`).

mod common;

use candle_core::{DType, Result, Tensor, Var};
use common::{assert_close, flat, Rng};
use magseg_kernels::instance_norm;

/// Per (n, c) slice of `x (n, c, s)`: y = γ·x̂ + β with x̂ = (x − μ)/√(σ² + ε); for the loss Σ y·r:
/// dβ = Σ r, dγ = Σ r·x̂, dx = γ/√(σ² + ε) · (r − mean r − x̂ · mean(r·x̂)).
#[allow(clippy::type_complexity)]
fn reference(x: &[f32], r: &[f32], g: &[f32], b: &[f32], nc: (usize, usize), eps: f64) -> [Vec<f32>; 4] {
    let (n, c) = nc;
    let s = x.len() / (n * c);
    let (mut y, mut dx, mut dg, mut db) = (vec![0.0; x.len()], vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
    for i in 0..n * c {
        let ch = i % c;
        let xs: Vec<f64> = x[i * s..(i + 1) * s].iter().map(|&v| v as f64).collect();
        let rs: Vec<f64> = r[i * s..(i + 1) * s].iter().map(|&v| v as f64).collect();
        let mu = xs.iter().sum::<f64>() / s as f64;
        let var = xs.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / s as f64;
        let inv = 1.0 / (var + eps).sqrt();
        let xh: Vec<f64> = xs.iter().map(|v| (v - mu) * inv).collect();
        let mean_r = rs.iter().sum::<f64>() / s as f64;
        let mean_rx = rs.iter().zip(&xh).map(|(r, h)| r * h).sum::<f64>() / s as f64;
        let gamma = g[ch] as f64;
        for v in 0..s {
            y[i * s + v] = (gamma * xh[v] + b[ch] as f64) as f32;
            dx[i * s + v] = (gamma * inv * (rs[v] - mean_r - xh[v] * mean_rx)) as f32;
        }
        dg[ch] += rs.iter().zip(&xh).map(|(r, h)| r * h).sum::<f64>() as f32;
        db[ch] += rs.iter().sum::<f64>() as f32;
    }
    [y, dx, dg, db]
}

#[test]
fn two_stage_instance_norm_matches_the_closed_form() -> Result<()> {
    let mut rng = Rng(11);
    for (dims, eps, dtype) in [
        (vec![2usize, 3, 16, 16, 16], 1e-5, DType::F32),
        (vec![1, 2, 3, 32, 64], 1e-3, DType::F32),
        (vec![2, 3, 16, 16, 16], 1e-5, DType::F64),
        (vec![1, 2, 3, 32, 64], 1e-3, DType::F64),
    ] {
        let (n, c) = (dims[0], dims[1]);
        let numel: usize = dims.iter().product();
        // An offset and scale per element keep the mean and variance away from 0 and 1.
        let xv: Vec<f32> =
            rng.vec(numel).iter().enumerate().map(|(i, v)| 3.0 * v + (i % 7) as f32 * 0.1 + 2.0).collect();
        let r = rng.vec(numel);
        let (g, b) = (rng.vec(c), rng.vec(c));
        let x = Var::from_tensor(
            &Tensor::from_vec(xv.clone(), dims.as_slice(), &candle_core::Device::Cpu)?.to_dtype(dtype)?,
        )?;
        let gv = Var::from_tensor(&Tensor::new(g.as_slice(), &candle_core::Device::Cpu)?.to_dtype(dtype)?)?;
        let bv = Var::from_tensor(&Tensor::new(b.as_slice(), &candle_core::Device::Cpu)?.to_dtype(dtype)?)?;
        let y = instance_norm(&x, Some(&gv), Some(&bv), eps)?;
        let rt = Tensor::from_vec(r.clone(), dims.as_slice(), &candle_core::Device::Cpu)?.to_dtype(dtype)?;
        let f = |t: &Tensor| flat(&t.to_dtype(DType::F32).unwrap());
        let grads = (&y * &rt)?.sum_all()?.backward()?;
        let [y_ref, dx_ref, dg_ref, db_ref] = reference(&xv, &r, &g, &b, (n, c), eps);
        let what = format!("{dims:?} {dtype:?}");
        assert_close(&format!("{what} y"), &f(&y), &y_ref, 1e-5);
        assert_close(&format!("{what} dx"), &f(grads.get(&x).unwrap()), &dx_ref, 1e-4);
        assert_close(&format!("{what} dgamma"), &f(grads.get(&gv).unwrap()), &dg_ref, 1e-4);
        assert_close(&format!("{what} dbeta"), &f(grads.get(&bv).unwrap()), &db_ref, 1e-4);
    }
    Ok(())
}
