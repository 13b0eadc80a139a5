//! `cargo xtask bench ops`: magseg-kernels' conv3d / conv_transpose3d against PyTorch (oneDNN, 2 threads).
//!
//! Shapes (batch 1, k3 p1 for conv3d): 32→32 @ 64³, 16→16 @ 96³, 64→64 @ 24³, and conv_transpose3d
//! k2s2 64→32 @ 24³. Forward and backward (input and weight gradients, upstream gradient of ones) are
//! timed separately; rounds alternate peer and magseg. Prints GFLOP/s and speed ratios.

use std::process::Command;

use candle_core::{DType, Device, Tensor, Var};
use magseg_kernels::{conv3d, conv_transpose3d, Conv3dConfig};

use super::time_median as time;
use crate::peers;

fn e(err: candle_core::Error) -> String {
    err.to_string()
}

/// (forward s, backward s) of one shape.
fn ours(reps: usize, transpose: bool, ci: usize, co: usize, s: usize) -> Result<(f64, f64), String> {
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (1, ci, s, s, s), &dev).map_err(e)?).map_err(e)?;
    let (wshape, k) = if transpose { ((ci, co, 2, 2, 2), 2) } else { ((co, ci, 3, 3, 3), 3) };
    let w = Var::from_tensor(&Tensor::randn(0f32, 0.1, wshape, &dev).map_err(e)?).map_err(e)?;
    let _ = k;
    let run = || -> Result<Tensor, String> {
        if transpose {
            conv_transpose3d(&x, &w, None, [2, 2, 2]).map_err(e)
        } else {
            conv3d(&x, &w, None, Conv3dConfig { stride: [1; 3], padding: [1; 3] }).map_err(e)
        }
    };
    let fwd = time(reps, run)?;
    let y = run()?;
    let bwd = time(reps, || y.backward().map_err(e))?;
    debug_assert_eq!(y.dtype(), DType::F32);
    Ok((fwd, bwd))
}

/// Run the benchmark.
pub fn run(args: &[String]) -> Result<(), String> {
    let mut reps = 3usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--reps" => reps = it.next().ok_or("--reps needs a value")?.parse().map_err(|e| format!("--reps: {e}"))?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    let py = peers::python(peers::TORCH, "torch")?;
    println!("bench ops: CPU, f32, batch 1, reps {reps}, machine: {}", peers::machine());
    let out = Command::new(&py)
        .arg(peers::root().join("xtask/peers/ops_peer.py"))
        .arg(reps.to_string())
        .output()
        .map_err(|e| format!("running the PyTorch peer: {e}"))?;
    if !out.status.success() {
        return Err(format!("PyTorch peer failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let peer: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("peer output: {e}"))?;
    println!(
        "peer: torch {} ({} threads, oneDNN {})",
        peer["torch"].as_str().unwrap_or("?"),
        peer["threads"],
        peer["mkldnn"]
    );
    let shapes: [(&str, bool, usize, usize, usize); 4] = [
        ("conv3d_c32_s64", false, 32, 32, 64),
        ("conv3d_c16_s96", false, 16, 16, 96),
        ("conv3d_c64_s24", false, 64, 64, 24),
        ("convt_c64_s24", true, 64, 32, 24),
    ];
    for (key, transpose, ci, co, s) in shapes {
        let (f, b) = ours(reps, transpose, ci, co, s)?;
        // Multiply-adds ×2: conv3d over s³ outputs with 27 taps; conv_transpose3d k2s2 over s³ inputs with 8 taps.
        let flops =
            if transpose { 2.0 * (ci * co * 8 * s * s * s) as f64 } else { 2.0 * (ci * co * 27 * s * s * s) as f64 };
        let (pf, pb) = (
            peer[format!("{key}_fwd_s")].as_f64().unwrap_or(f64::NAN),
            peer[format!("{key}_bwd_s")].as_f64().unwrap_or(f64::NAN),
        );
        println!(
            "RESULT {key} fwd: torch {:.1} ms ({:.0} GFLOP/s) magseg {:.1} ms ({:.0} GFLOP/s) ratio {:.2} | bwd: torch {:.1} ms ({:.0} GFLOP/s) magseg {:.1} ms ({:.0} GFLOP/s) ratio {:.2}",
            pf * 1e3,
            flops / pf / 1e9,
            f * 1e3,
            flops / f / 1e9,
            pf / f,
            pb * 1e3,
            2.0 * flops / pb / 1e9,
            b * 1e3,
            2.0 * flops / b / 1e9,
            pb / b
        );
    }
    println!("(ratio = torch time / magseg time: > 1 means magseg is faster; backward = both gradients)");
    Ok(())
}
