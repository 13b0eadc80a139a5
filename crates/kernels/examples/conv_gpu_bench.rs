//! Times conv3d on CUDA device 0 (feature `cuda`) for 2 × 32 → 32 channels at 64³, kernel 3, padding 1,
//! f32: the forward pass, backward-data, backward-weight and forward + backward through autograd, and
//! prints one JSON line (medians in ms, GFLOP/s of the forward). `xtask/peers/torch_conv3d.py` times
//! the same shape with PyTorch/cuDNN; `run.sh` of the GPU bundle prints the ratio.
//!
//! `cargo run --release -p magseg-kernels --features cuda --example conv_gpu_bench [-- REPS]`

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use magseg_kernels::{conv3d, Conv3d, Conv3dBackwardData, Conv3dBackwardWeight, Conv3dConfig, Conv3dGeometry};

/// Median wall time in ms of `reps` runs (each synchronised) after two warm-up runs.
fn time_ms(dev: &Device, reps: usize, mut f: impl FnMut() -> candle_core::Result<()>) -> candle_core::Result<f64> {
    for _ in 0..2 {
        f()?;
    }
    dev.synchronize()?;
    let mut t = Vec::with_capacity(reps);
    for _ in 0..reps {
        let s = Instant::now();
        f()?;
        dev.synchronize()?;
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

fn main() -> candle_core::Result<()> {
    let reps: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let dev = Device::new_cuda(0)?;
    let g = Conv3dGeometry::new(2, 32, 32, [64; 3], [3; 3], [1; 3], [1; 3])?;
    let cfg = Conv3dConfig { stride: g.stride, padding: g.padding };
    let x = Tensor::randn(0f32, 1.0, g.input_shape().to_vec(), &dev)?;
    let w = (Tensor::randn(0f32, 1.0, g.weight_shape().to_vec(), &dev)? * 0.05)?;
    let dy = Tensor::randn(0f32, 1.0, g.output_shape().to_vec(), &dev)?;
    let fwd = time_ms(&dev, reps, || x.apply_op2_no_bwd(&w, &Conv3d { geometry: g }).map(drop))?;
    let bwd_data = time_ms(&dev, reps, || dy.apply_op2_no_bwd(&w, &Conv3dBackwardData { geometry: g }).map(drop))?;
    let bwd_weight = time_ms(&dev, reps, || x.apply_op2_no_bwd(&dy, &Conv3dBackwardWeight { geometry: g }).map(drop))?;
    let (xv, wv) = (Var::from_tensor(&x)?, Var::from_tensor(&w)?);
    let fwd_bwd = time_ms(&dev, reps, || {
        let y = conv3d(&xv, &wv, None, cfg)?;
        (y * &dy)?.sum_all()?.backward().map(drop)
    })?;
    let gflops = |ms: f64| (g.flops() / (ms * 1e-3) / 1e9 * 10.0).round() / 10.0;
    let r = |ms: f64| (ms * 1000.0).round() / 1000.0;
    println!(
        "{{\"shape\":\"2x32x64^3 k3 p1 f32\",\"reps\":{reps},\"fwd_ms\":{},\"bwd_data_ms\":{},\"bwd_weight_ms\":{},\
         \"fwd_bwd_ms\":{},\"fwd_gflops\":{}}}",
        r(fwd),
        r(bwd_data),
        r(bwd_weight),
        r(fwd_bwd),
        gflops(fwd)
    );
    Ok(())
}
