//! End-to-end tests of the `magseg` binary: phantom → inspect (text and JSON), errors without panics.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn magseg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_magseg")).args(args).output().expect("run magseg")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn shared_case(test: &str) -> Option<PathBuf> {
    magseg_testkit::shared_data(test).map(|root| root.join("brats2018/Brats18_CBICA_ABM_1"))
}

#[test]
fn phantom_then_inspect_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ph");
    let o = magseg(&["phantom", "--out", out.to_str().unwrap(), "--cases", "2", "--seed", "3", "--size", "32"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("flair reveals WT"), "{}", text(&o));
    let o = magseg(&["inspect", "--json", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["layout"], "BraTS");
    assert_eq!(v["cases"].as_array().unwrap().len(), 2);
    assert_eq!(v["modalities"], serde_json::json!(["flair", "t1", "t1ce", "t2"]));
    assert_eq!(v["label_preset"], "brats");
    assert_eq!(v["problems"].as_array().unwrap().len(), 0);

    // One case folder: every file summarised, labels with counts that add up to the grid.
    let case = out.join("Phantom_000");
    let o = magseg(&["inspect", "--json", case.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 5);
    assert!(files.iter().all(|f| f["orientation"] == "LPS" && f["dims"] == serde_json::json!([32, 32, 32])));
    let seg = &files[4]["labels"];
    let values: Vec<i64> = seg.as_array().unwrap().iter().map(|c| c["value"].as_i64().unwrap()).collect();
    assert_eq!(values, vec![0, 1, 2, 4]);
    let total: i64 = seg.as_array().unwrap().iter().map(|c| c["count"].as_i64().unwrap()).sum();
    assert_eq!(total, 32 * 32 * 32);
}

#[test]
fn inspect_shared_brats_case() {
    let Some(case) = shared_case("inspect_shared_brats_case") else { return };
    let o = magseg(&["inspect", case.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    for want in [
        "flair t1 t1ce t2 + seg",
        "240 × 240 × 155",
        "1 × 1 × 1 mm",
        "LPS",
        "0: 8888228",
        "1: 3398",
        "2: 30215",
        "4: 6159",
    ] {
        assert!(t.contains(want), "missing {want:?} in\n{t}");
    }
}

fn assert_clean_error(o: &Output, want: &str) {
    let t = text(o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("error:") && t.contains(want), "{t}");
    assert!(!t.contains("panicked"), "{t}");
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.nii.gz");
    std::fs::write(&bad, b"\x1f\x8b\x08\x00garbage").unwrap();
    assert_clean_error(&magseg(&["inspect", bad.to_str().unwrap()]), "bad.nii.gz");
    assert_clean_error(&magseg(&["inspect", "/no/such/file.nii.gz"]), "no such file");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_clean_error(&magseg(&["inspect", empty.to_str().unwrap()]), "empty");
    assert_clean_error(&magseg(&["phantom", "--out", dir.path().join("p").to_str().unwrap(), "--size", "8"]), "size");
    assert!(!Path::new(&dir.path().join("p/Phantom_000")).exists());
}
