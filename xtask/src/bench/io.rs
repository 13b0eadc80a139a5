//! `cargo xtask bench io`: load one BraTS case (4 modalities + seg) with magseg and with nibabel.
//!
//! nibabel reads the files one after another exactly as ../shared/peers/cpu_peer.py does
//! (`np.asarray(nib.load(p).dataobj)`); magseg's `load_case` decodes them in parallel, converts the
//! images to f32 and checks the grids. Rounds alternate peer and magseg so load changes hit both.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use magseg_volume::case::load_case;
use magseg_volume::dataset::discover;

use super::median;
use crate::peers;

/// Run the benchmark.
pub fn run(args: &[String]) -> Result<(), String> {
    let mut case_dir = peers::root().join("../shared/data/brats2018/Brats18_CBICA_ABM_1");
    let (mut rounds, mut reps) = (3usize, 3usize);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--case" => case_dir = PathBuf::from(val()?),
            "--rounds" => rounds = val()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--reps" => reps = val()?.parse().map_err(|e| format!("--reps: {e}"))?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    let ds = discover(&case_dir).map_err(|e| e.to_string())?;
    let case = ds.cases.first().ok_or("no case found")?.clone();
    // Distinct files only: an MSD case lists its one 4-D image once per modality.
    let mut files: Vec<PathBuf> = Vec::new();
    for p in case.modalities.iter().map(|m| &m.path).chain(case.label.iter()) {
        if !files.contains(p) {
            files.push(p.clone());
        }
    }
    let py = peers::python(peers::LIGHT, "numpy, nibabel")?;
    let script = peers::root().join("xtask/peers/io_peer.py");
    println!(
        "bench io: {} ({} files), {} rounds × {} reps, machine: {}",
        case.id,
        files.len(),
        rounds,
        reps,
        peers::machine()
    );
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut versions = String::new();
    for round in 0..rounds {
        let out = Command::new(&py)
            .arg(&script)
            .arg(reps.to_string())
            .args(&files)
            .output()
            .map_err(|e| format!("running the nibabel peer: {e}"))?;
        if !out.status.success() {
            return Err(format!("nibabel peer failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("peer output: {e}"))?;
        versions =
            format!("nibabel {} / numpy {}", v["nibabel"].as_str().unwrap_or("?"), v["numpy"].as_str().unwrap_or("?"));
        let t: Vec<f64> =
            v["times"].as_array().map(|a| a.iter().filter_map(|x| x.as_f64()).collect()).unwrap_or_default();
        let peer = median(&t);
        let mut mine = Vec::new();
        for _ in 0..reps {
            let start = Instant::now();
            let loaded = load_case(&case, None).map_err(|e| e.to_string())?;
            mine.push(start.elapsed().as_secs_f64());
            std::hint::black_box(&loaded);
        }
        let m = median(&mine);
        println!("round {}: nibabel {:.3} s, magseg {:.3} s, ratio {:.2}×", round + 1, peer, m, peer / m);
        theirs.push(peer);
        ours.push(m);
    }
    let (p, m) = (median(&theirs), median(&ours));
    println!("peer: {versions}");
    println!("RESULT io_load_case nibabel_s={p:.3} magseg_s={m:.3} speedup={:.2}", p / m);
    Ok(())
}
