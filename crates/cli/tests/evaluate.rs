//! `magseg evaluate` end to end: identity and a known shift on a real BraTS seg (reference values from
//! MedPy/MONAI in crates/metrics/tests/golden/expected.json), folder matching, empty-mask counting,
//! CSV/JSON outputs and refused inputs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use magseg_volume::phantom::{write_dataset, PhantomOptions};
use magseg_volume::{read_labels, write_labels, Geometry, LabelMap, Volume};
use serde_json::Value;

fn magseg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_magseg")).args(args).output().expect("run magseg")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

fn shared_seg(test: &str) -> Option<PathBuf> {
    magseg_testkit::shared_data(test)
        .map(|root| root.join("brats2018/Brats18_CBICA_ABM_1/Brats18_CBICA_ABM_1_seg.nii.gz"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn brats_seg_against_itself_and_a_shifted_copy() {
    let Some(seg) = shared_seg("brats_seg_against_itself_and_a_shifted_copy") else { return };
    let v = json(&magseg(&["evaluate", "--pred", s(&seg), "--ref", s(&seg), "--json", "-"]));
    for r in ["WT", "TC", "ET"] {
        let m = &v["cases"][0]["regions"][r];
        assert_eq!(m["dice"], 1.0, "{r}");
        assert_eq!(m["hd95"], 0.0, "{r}");
        assert_eq!(m["assd"], 0.0, "{r}");
    }
    // The whole label map moved by +2 voxels along axis 0 (zero fill), as the golden generator does.
    let l = read_labels(&seg).unwrap();
    let [nx, ny, nz] = l.geometry.dims;
    let mut shifted = vec![0; l.data.len()];
    for k in 0..nz {
        for j in 0..ny {
            for i in 2..nx {
                shifted[i + nx * (j + ny * k)] = l.data[i - 2 + nx * (j + ny * k)];
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let pred = dir.path().join("Brats18_CBICA_ABM_1_seg.nii.gz");
    write_labels(&pred, &l.with_data(shifted, 1).unwrap(), &[]).unwrap();
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../metrics/tests/golden/expected.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let expected = &golden["brats_shift"]["regions"];
    let v = json(&magseg(&["evaluate", "--pred", s(&pred), "--ref", s(&seg), "--per-label", "--json", "-"]));
    let names: Vec<&String> = v["cases"][0]["regions"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["ET", "L1", "L2", "L4", "TC", "WT"]);
    // ET is exactly label 4.
    assert_eq!(v["cases"][0]["regions"]["L4"], v["cases"][0]["regions"]["ET"]);
    for (conv, key) in [("monai", "hd95_monai"), ("pooled", "hd95_pooled")] {
        let v = json(&magseg(&["evaluate", "--pred", s(&pred), "--ref", s(&seg), "--hd95", conv, "--json", "-"]));
        assert_eq!(v["hd95_convention"], conv);
        for r in ["WT", "TC", "ET"] {
            let m = &v["cases"][0]["regions"][r];
            for (ours, theirs) in [("dice", "dice"), ("hd95", key), ("hd", "hd"), ("assd", "assd")] {
                let (a, b) = (m[ours].as_f64().unwrap(), expected[r][theirs].as_f64().unwrap());
                assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{r} {ours}: {a} vs reference {b}");
            }
        }
    }
}

fn tiny(values: &[i32]) -> LabelMap {
    Volume::new(values.to_vec(), Geometry::from_spacing([values.len(), 1, 1], [1.0, 1.0, 2.0]), 1).unwrap()
}

#[test]
fn folders_are_matched_by_case_id_and_empty_masks_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("ref");
    write_dataset(&reference, &PhantomOptions { cases: 2, seed: 1, size: 16 }, &mut |_, _| {}).unwrap();
    let pred = dir.path().join("pred");
    std::fs::create_dir(&pred).unwrap();
    // Case 0: a perfect prediction; case 1: no tumour predicted at all.
    let seg0 = read_labels(reference.join("Phantom_000/Phantom_000_seg.nii.gz")).unwrap();
    write_labels(pred.join("Phantom_000.nii.gz"), &seg0, &[]).unwrap();
    let seg1 = read_labels(reference.join("Phantom_001/Phantom_001_seg.nii.gz")).unwrap();
    write_labels(pred.join("Phantom_001_seg.nii.gz"), &seg1.with_data(vec![0; seg1.data.len()], 1).unwrap(), &[])
        .unwrap();
    let csv = dir.path().join("out.csv");
    let o = magseg(&["evaluate", "--pred", s(&pred), "--ref", s(&reference), "--csv", s(&csv)]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("mean WT") && t.contains("1 penalised with 373.13 mm"), "{t}");
    let rows = std::fs::read_to_string(&csv).unwrap();
    assert!(rows.starts_with("case,region,dice,hd95,hd,assd,note\n"), "{rows}");
    assert!(rows.contains("Phantom_001,WT,0,373.13,373.13,373.13,prediction empty"), "{rows}");
    let v = json(&magseg(&["evaluate", "--pred", s(&pred), "--ref", s(&reference), "--json", "/dev/stdout"]));
    assert_eq!(v["cases"].as_array().unwrap().len(), 2);
    let wt = &v["summary"]["WT"];
    assert_eq!(wt["n"], 2);
    assert_eq!(wt["n_penalised"], 1);
    assert_eq!(wt["dice_mean"], 0.5);
    // A reference case without a prediction is an error unless --allow-missing.
    std::fs::remove_file(pred.join("Phantom_001_seg.nii.gz")).unwrap();
    let o = magseg(&["evaluate", "--pred", s(&pred), "--ref", s(&reference)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("Phantom_001"), "{}", text(&o));
    let o = magseg(&["evaluate", "--pred", s(&pred), "--ref", s(&reference), "--allow-missing"]);
    assert!(o.status.success(), "{}", text(&o));

    // Both empty: NaN, excluded from the means and counted (or Dice 1 with --both-empty one).
    let (p, r) = (dir.path().join("p.nii.gz"), dir.path().join("r.nii.gz"));
    write_labels(&p, &tiny(&[0, 0, 0, 0]), &[]).unwrap();
    write_labels(&r, &tiny(&[0, 0, 0, 0]), &[]).unwrap();
    let v = json(&magseg(&["evaluate", "--pred", s(&p), "--ref", s(&r), "--labels", "binary", "--json", "-"]));
    assert!(v["cases"][0]["regions"]["FG"]["dice"].is_null());
    assert_eq!(v["summary"]["FG"]["n_nan"], 1);
    let v = json(&magseg(&[
        "evaluate",
        "--pred",
        s(&p),
        "--ref",
        s(&r),
        "--labels",
        "binary",
        "--both-empty",
        "one",
        "--json",
        "-",
    ]));
    assert_eq!(v["cases"][0]["regions"]["FG"]["dice"], 1.0);
}

#[test]
fn bad_inputs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (p, r, q) = (dir.path().join("p.nii.gz"), dir.path().join("r.nii.gz"), dir.path().join("q.nii.gz"));
    write_labels(&p, &tiny(&[0, 1, 2, 4]), &[]).unwrap();
    write_labels(&r, &tiny(&[0, 1, 2, 4, 0]), &[]).unwrap();
    write_labels(&q, &tiny(&[0, 3, 2, 4]), &[]).unwrap();
    let o = magseg(&["evaluate", "--pred", s(&p), "--ref", s(&r)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("different grids"), "{}", text(&o));
    let o = magseg(&["evaluate", "--pred", s(&q), "--ref", s(&p), "--labels", "brats"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("label value 3"), "{}", text(&o));
    let o = magseg(&["evaluate", "--pred", s(&p), "--ref", s(&p), "--labels", "nonsense"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("brats"), "{}", text(&o));
    let o = magseg(&["evaluate", "--pred", s(&p), "--ref", s(dir.path())]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!text(&o).contains("panicked"));
}
