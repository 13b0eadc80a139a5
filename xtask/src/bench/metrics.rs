//! `cargo xtask bench metrics`: EDT against scipy, HD95 against MONAI and MedPy, on 240×240×155 masks.
//!
//! The peer script writes the masks it times (the spheres of ../shared/peers/cpu_peer.py and a real
//! BraTS whole-tumour mask against a perturbed copy) so magseg times exactly the same data, and the
//! HD95 values of both sides are printed next to each other as a correctness check.

use std::path::{Path, PathBuf};
use std::process::Command;

use magseg_metrics::{compare_masks, edt, EvalOptions, Grid, Hd95Convention};
use magseg_volume::read_labels;

use super::time_median;
use crate::peers;

fn mask(dir: &Path, name: &str) -> Result<(Vec<bool>, Grid), String> {
    let l = read_labels(dir.join(name)).map_err(|e| e.to_string())?;
    let grid = Grid { dims: l.geometry.dims, spacing: l.geometry.spacing };
    Ok((l.data.iter().map(|&v| v != 0).collect(), grid))
}

/// Run the benchmark.
pub fn run(args: &[String]) -> Result<(), String> {
    let mut reps = 3usize;
    let mut seg = peers::root().join("../shared/data/brats2018/Brats18_CBICA_ABM_1/Brats18_CBICA_ABM_1_seg.nii.gz");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--reps" => reps = val()?.parse().map_err(|e| format!("--reps: {e}"))?,
            "--seg" => seg = PathBuf::from(val()?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    let py = peers::python(peers::TORCH, "numpy, nibabel, scipy, medpy, torch, monai")?;
    let dir = peers::root().join("target/bench-metrics");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    println!("bench metrics: 240×240×155 masks, peer reps {reps}, machine: {}", peers::machine());
    let mut cmd = Command::new(&py);
    cmd.arg(peers::root().join("xtask/peers/metrics_peer.py")).arg(&dir).arg(reps.to_string());
    if seg.exists() {
        cmd.arg(&seg);
    } else {
        println!("note: {} not found: the real-mask rows are skipped", seg.display());
    }
    let out = cmd.output().map_err(|e| format!("running the metrics peer: {e}"))?;
    if !out.status.success() {
        return Err(format!("metrics peer failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let peer: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("peer output: {e}"))?;
    let f = |k: &str| peer[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "peers: scipy {} / MONAI {} / torch {} ({} threads) / numpy {}",
        peer["scipy"].as_str().unwrap_or("?"),
        peer["monai"].as_str().unwrap_or("?"),
        peer["torch"].as_str().unwrap_or("?"),
        peer["threads"],
        peer["numpy"].as_str().unwrap_or("?")
    );
    let our_reps = reps.max(10);

    let (a, grid) = mask(&dir, "sphere_a.nii.gz")?;
    let ours = time_median(our_reps, || edt(&a, &grid)).map_err(|e| e.to_string())?;
    let theirs = f("scipy_edt_s");
    println!("RESULT edt_full_volume scipy_s={theirs:.4} magseg_s={ours:.4} speedup={:.1}", theirs / ours);

    let mut pairs = vec![("spheres", "sphere_b.nii.gz", "sphere_a.nii.gz")];
    if peer.get("brats_wt_monai_s").is_some() {
        pairs.push(("brats_wt", "wt_pred.nii.gz", "wt_ref.nii.gz"));
    }
    for (key, pred, reference) in pairs {
        let (p, grid) = mask(&dir, pred)?;
        let (r, _) = mask(&dir, reference)?;
        for (conv, peer_name, peer_key) in
            [(Hd95Convention::Monai, "MONAI", "monai"), (Hd95Convention::Pooled, "MedPy", "medpy")]
        {
            let opts = EvalOptions { hd95: conv, ..EvalOptions::default() };
            let value = compare_masks(&p, &r, &grid, &opts).map_err(|e| e.to_string())?.hd95;
            let ours = time_median(our_reps, || compare_masks(&p, &r, &grid, &opts)).map_err(|e| e.to_string())?;
            let theirs = f(&format!("{key}_{peer_key}_s"));
            let their_value = f(&format!("{key}_{peer_key}_hd95"));
            println!(
                "RESULT hd95_{key}_{peer_key} {peer_name}_s={theirs:.4} magseg_s={ours:.4} speedup={:.1} \
                 hd95: {peer_name} {their_value:.4} magseg {value:.4}",
                theirs / ours
            );
        }
    }
    println!("(magseg's HD95 time is for the whole compare_masks: surfaces, both EDTs, Dice, HD, ASSD)");
    Ok(())
}
