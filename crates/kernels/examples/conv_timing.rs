//! Times conv3d / conv_transpose3d (forward, backward-data, backward-weight) and instance_norm on
//! the CPU for the shapes of the kernels issue; prints ms and GFLOP/s next to PyTorch's numbers.
//!
//! `cargo run --release -p magseg-kernels --example conv_timing [-- REPS [ONLY]]`: ONLY keeps the
//! rows whose name contains it ("64³", "transpose", "instance", "autograd").
//!
//! With glibc's default `malloc` every buffer over 32 MiB is a fresh `mmap` whose page faults are
//! paid inside the timed region (as PyTorch pays them); `MALLOC_MMAP_THRESHOLD_=4294967296
//! MALLOC_TRIM_THRESHOLD_=8589934592` in the environment shows the times without them.

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use magseg_kernels::{
    conv3d, conv_transpose3d, instance_norm, Conv3d, Conv3dBackwardData, Conv3dBackwardWeight, Conv3dConfig,
    Conv3dGeometry,
};

/// Median wall time in ms of `reps` runs after one warm-up run.
fn time_ms(reps: usize, mut f: impl FnMut() -> candle_core::Result<Tensor>) -> f64 {
    f().expect("warm-up run");
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            let out = f().expect("timed run");
            drop(out);
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn randn(dims: &[usize]) -> candle_core::Result<Tensor> {
    Tensor::randn(0f32, 1f32, dims, &Device::Cpu)
}

struct Row {
    name: &'static str,
    fwd: f64,
    bwd_data: f64,
    bwd_weight: f64,
    flops: f64,
    torch_fwd: Option<f64>,
    torch_fwd_bwd: Option<f64>,
}

fn print_row(r: &Row) {
    let g = |ms: f64, fl: f64| fl / ms / 1e6;
    let bwd = r.bwd_data + r.bwd_weight;
    let ratio = |torch: Option<f64>, ours: f64| torch.map_or("      -".to_string(), |t| format!("{:6.2}×", t / ours));
    println!(
        "{:<34} {:>8.1} {:>7.1} {} | {:>8.1} {:>8.1} {:>8.1} {:>7.1} {}",
        r.name,
        r.fwd,
        g(r.fwd, r.flops),
        ratio(r.torch_fwd, r.fwd),
        r.bwd_data,
        r.bwd_weight,
        bwd,
        g(bwd, 2.0 * r.flops),
        ratio(r.torch_fwd_bwd.map(|t| t - r.torch_fwd.unwrap_or(0.0)), bwd),
    );
}

fn conv_row(
    name: &'static str,
    reps: usize,
    ch: usize,
    size: usize,
    torch: (Option<f64>, Option<f64>),
) -> candle_core::Result<Row> {
    let g = Conv3dGeometry::new(1, ch, ch, [size; 3], [3; 3], [1; 3], [1; 3])?;
    let x = randn(&g.input_shape())?;
    let w = randn(&g.weight_shape())?;
    let dy = randn(&g.output_shape())?;
    let cfg = Conv3dConfig { stride: [1; 3], padding: [1; 3] };
    Ok(Row {
        name,
        fwd: time_ms(reps, || conv3d(&x, &w, None, cfg)),
        bwd_data: time_ms(reps, || dy.apply_op2_no_bwd(&w, &Conv3dBackwardData::new(g))),
        bwd_weight: time_ms(reps, || x.apply_op2_no_bwd(&dy, &Conv3dBackwardWeight::new(g))),
        flops: g.flops(),
        torch_fwd: torch.0,
        torch_fwd_bwd: torch.1,
    })
}

fn main() -> candle_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let reps: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let only = args.get(2).cloned().unwrap_or_default();
    let want = |name: &str| name.contains(only.as_str());
    println!(
        "rayon threads: {}, median of {reps} runs (ms); torch = PyTorch 2.15 oneDNN, 2 threads",
        rayon::current_num_threads()
    );
    println!(
        "{:<34} {:>8} {:>7} {:>8} | {:>8} {:>8} {:>8} {:>7} {:>8}",
        "shape", "fwd ms", "GFLOP/s", "vs torch", "bwd-data", "bwd-wt", "bwd ms", "GFLOP/s", "vs torch"
    );
    let convs = [
        ("conv3d 32→32 64³ k3 p1", 32, 64, (Some(105.0), Some(629.0))),
        ("conv3d 16→16 96³ k3 p1", 16, 96, (Some(114.0), None)),
        ("conv3d 64→64 24³ k3 p1", 64, 24, (Some(17.0), None)),
    ];
    for (name, ch, size, torch) in convs {
        if want(name) {
            print_row(&conv_row(name, reps, ch, size, torch)?);
        }
    }

    // conv_transpose3d k2 s2 64→32 at 24³ (output 48³): the geometry is that of the conv3d
    // 32→64 k2 s2 on 48³ whose backward-data pass it is.
    let name = "conv_transpose3d 64→32 24³ k2 s2";
    if want(name) {
        let g = Conv3dGeometry::new(1, 32, 64, [48; 3], [2; 3], [2; 3], [0; 3])?;
        let x = randn(&[1, 64, 24, 24, 24])?;
        let w = randn(&[64, 32, 2, 2, 2])?;
        let dy = randn(&[1, 32, 48, 48, 48])?;
        print_row(&Row {
            name,
            fwd: time_ms(reps, || conv_transpose3d(&x, &w, None, [2; 3])),
            bwd_data: time_ms(reps, || dy.apply_op2_no_bwd(&w, &Conv3d::new(g))),
            bwd_weight: time_ms(reps, || dy.apply_op2_no_bwd(&x, &Conv3dBackwardWeight::new(g))),
            flops: g.flops(),
            torch_fwd: Some(27.0),
            torch_fwd_bwd: None,
        });
    }

    let r = randn(&[1, 32, 64, 64, 64])?;
    if want("autograd") {
        // Whole autograd step for the first shape: forward + both gradients through candle.
        let x = Var::from_tensor(&randn(&[1, 32, 64, 64, 64])?)?;
        let w = Var::from_tensor(&randn(&[32, 32, 3, 3, 3])?)?;
        let cfg = Conv3dConfig { stride: [1; 3], padding: [1; 3] };
        let step = time_ms(reps, || {
            let y = conv3d(x.as_tensor(), w.as_tensor(), None, cfg)?;
            let grads = (y * &r)?.sum_all()?.backward()?;
            Ok(grads.get(&w).cloned().unwrap_or(r.clone()))
        });
        println!("conv3d 32→32 64³ autograd fwd+bwd (incl. y·r, sum): {step:.1} ms (torch 629 ms)");
    }

    if want("instance") {
        let x = Var::from_tensor(&randn(&[1, 32, 64, 64, 64])?)?;
        let gamma = Var::from_tensor(&randn(&[32])?)?;
        let beta = Var::from_tensor(&randn(&[32])?)?;
        let norm = || instance_norm(x.as_tensor(), Some(gamma.as_tensor()), Some(beta.as_tensor()), 1e-5);
        let fwd = time_ms(reps, norm);
        let fwd_bwd = time_ms(reps, || {
            let grads = (norm()? * &r)?.sum_all()?.backward()?;
            Ok(grads.get(&x).cloned().unwrap_or(r.clone()))
        });
        println!("instance_norm 32ch 64³ affine: forward {fwd:.1} ms, forward+backward {fwd_bwd:.1} ms");
    }
    Ok(())
}
