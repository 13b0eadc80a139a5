//! `cargo xtask bench model`: UNETR and MAG-MS forward passes on CPU against MONAI / the PyTorch
//! reference arrangement (2 threads), default sizes (feature 16, hidden 768, 12 layers), 96³.
//!
//! UNETR: 4 input channels. MAG-MS: 4 single-channel UNETR encoders with fusion convs, mean fusion,
//! shared decoder, all 4 modalities present (inference: fused logits only). Weights are random on
//! both sides; only time is compared. Peer first, then magseg, median of `--reps`.

use std::process::Command;

use candle_core::{Device, Tensor};
use magseg_model::{MagMs, MagMsConfig, Unetr, UnetrConfig};

use super::time_median as time;
use crate::peers;

fn e(err: impl std::fmt::Display) -> String {
    err.to_string()
}

/// Run the benchmark.
pub fn run(args: &[String]) -> Result<(), String> {
    let (mut reps, mut roi) = (3usize, 96usize);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--reps" => reps = val()?.parse().map_err(|e| format!("--reps: {e}"))?,
            "--roi" => roi = val()?.parse().map_err(|e| format!("--roi: {e}"))?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    let py = peers::python(peers::TORCH, "torch, monai")?;
    println!("bench model: CPU, f32, batch 1, {roi}³, reps {reps}, machine: {}", peers::machine());
    let out = Command::new(&py)
        .arg(peers::root().join("xtask/peers/model_peer.py"))
        .args([reps.to_string(), roi.to_string()])
        .output()
        .map_err(|e| format!("running the MONAI peer: {e}"))?;
    if !out.status.success() {
        return Err(format!("MONAI peer failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let peer: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("peer output: {e}"))?;
    println!("peer: torch {} ({} threads)", peer["torch"].as_str().unwrap_or("?"), peer["threads"]);
    let dev = Device::Cpu;

    let cfg = UnetrConfig { img_size: [roi; 3], ..UnetrConfig::default() };
    let unetr = Unetr::new(cfg, &dev).map_err(e)?;
    let x = Tensor::randn(0f32, 1.0, (1, 4, roi, roi, roi), &dev).map_err(e)?;
    let ours = time(reps, || unetr.forward(&x).map_err(e))?;
    let theirs = peer["unetr_fwd_s"].as_f64().unwrap_or(f64::NAN);
    println!(
        "RESULT unetr_fwd_4ch_{roi} MONAI_s={theirs:.3} magseg_s={ours:.3} ratio={:.2} (params: MONAI {} magseg {})",
        theirs / ours,
        peer["unetr_params"],
        unetr.num_parameters()
    );
    drop(unetr);

    let cfg = MagMsConfig { patch_size: [roi; 3], ..MagMsConfig::default() };
    let net = MagMs::new(cfg, &dev).map_err(e)?;
    let inputs: Vec<Option<Tensor>> = (0..4)
        .map(|_| Tensor::randn(0f32, 1.0, (1, 1, roi, roi, roi), &dev).map(Some))
        .collect::<Result<_, _>>()
        .map_err(e)?;
    let ours = time(reps, || net.predict(&inputs).map_err(e))?;
    let theirs = peer["magms_fwd_s"].as_f64().unwrap_or(f64::NAN);
    println!("RESULT magms_fwd_4mod_{roi} torch_s={theirs:.3} magseg_s={ours:.3} ratio={:.2}", theirs / ours);
    println!("(ratio = peer time / magseg time: > 1 means magseg is faster)");
    Ok(())
}
