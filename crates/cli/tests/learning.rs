//! Proof that modality-agnostic learning works (release build, CPU): train the tiny MAG-MS U-Net of
//! data/examples/train-phantom.toml on phantom cases for at most 5 minutes, then require validation
//! Dice ≥ 0.85 for the fused output on the whole tumour and for each single modality on every region
//! the phantom generator makes it reveal (`magseg_volume::phantom::REVEALS`).
//!
//! Run: `cargo test --release -p magseg-cli --features learning-test --test learning -- --nocapture`
//! (`.ci/run` does).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use magseg_volume::phantom::REVEALS;

const LIMIT_S: f64 = 300.0;

fn dice(v: &serde_json::Value, subset: &str, region: &str) -> f64 {
    let s = v["subsets"].as_array().unwrap().iter().find(|s| s["subset"] == subset).unwrap();
    let d = s["dice"].as_array().unwrap().iter().find(|d| d[0] == region).unwrap();
    d[1].as_f64().unwrap()
}

#[test]
fn tiny_model_learns_every_modality_on_phantoms_within_five_minutes() {
    if cfg!(debug_assertions) {
        panic!("the learning test is meant for a release build (cargo test --release)");
    }
    let exe = env!("CARGO_BIN_EXE_magseg");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("phantom");
    let out = Command::new(exe)
        .args(["phantom", "--out"])
        .arg(&data)
        .args(["--cases", "8", "--size", "48"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/examples/train-phantom.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    assert!(text.contains("path = \"out/phantom-train\""), "the example's data path changed");
    let run = tmp.path().join("run");
    let text = text.replace("out/phantom-train", &data.display().to_string());
    let config = tmp.path().join("train.toml");
    std::fs::write(&config, text).unwrap();

    let start = Instant::now();
    let out = Command::new(exe).args(["train", "--config"]).arg(&config).arg("--output").arg(&run).output().unwrap();
    let wall = start.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    println!("magseg train took {wall:.1} s (limit {LIMIT_S} s)");
    assert!(wall <= LIMIT_S, "training took {wall:.1} s, more than {LIMIT_S} s");

    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("validation.json")).unwrap()).unwrap();
    let mut failures = Vec::new();
    let fused = "flair+t1+t1ce+t2";
    let mut check = |subset: &str, region: &str| {
        let d = dice(&v, subset, region);
        println!("{subset:>18} {region}: {d:.4}");
        if d.is_nan() || d < 0.85 {
            failures.push(format!("{subset} {region} = {d:.4}"));
        }
    };
    check(fused, "WT");
    for (modality, regions) in REVEALS {
        for region in regions.iter() {
            check(modality, region);
        }
    }
    assert!(failures.is_empty(), "Dice below 0.85: {failures:?}");
    for f in ["curves.svg", "metrics.jsonl", "best/model.safetensors", "last/optimizer.safetensors"] {
        assert!(run.join(f).is_file(), "missing {f}");
    }
}
