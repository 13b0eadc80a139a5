//! Golden values from independent Python references (MedPy 0.5.2, a numpy MONAI-convention
//! implementation checked against MONAI 1.6.1): every case of tests/golden/expected.json, and the
//! real BraTS `brats_shift` case when ../shared/data is present. See tests/golden/README.md.

use std::path::{Path, PathBuf};

use magseg_metrics::{
    compare_masks, evaluate_labels, percentile, surface_distances, Connectivity, EmptyCase, EvalOptions, Grid,
    Hd95Convention, PairMetrics,
};
use magseg_volume::labels::LabelPreset;
use magseg_volume::read_labels;
use serde_json::Value;

/// Requested tolerance is 1e-4 relative; the exact EDT (f32 storage) is far better than that.
const REL: f64 = 1e-6;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn expected() -> Value {
    let path = golden_dir().join("expected.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// JSON number, or NaN for null.
fn num(v: &Value, key: &str) -> f64 {
    match &v[key] {
        Value::Null => f64::NAN,
        x => x.as_f64().unwrap_or_else(|| panic!("{key} is not a number: {x}")),
    }
}

fn check(what: &str, got: f64, want: f64) {
    let ok = (got.is_nan() && want.is_nan()) || (got - want).abs() <= REL * want.abs().max(1.0);
    assert!(ok, "{what}: got {got}, expected {want}");
}

fn mask(path: &Path) -> (Vec<bool>, [usize; 3], [f64; 3]) {
    let l = read_labels(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (l.data.iter().map(|v| *v != 0).collect(), l.geometry.dims, l.geometry.spacing)
}

/// Compare one case (or BraTS region) against its expected entry.
fn check_entry(name: &str, e: &Value, pred: &[bool], reference: &[bool], grid: &Grid) {
    let monai = compare_masks(pred, reference, grid, &EvalOptions::default()).unwrap();
    let opts = EvalOptions { hd95: Hd95Convention::Pooled, ..EvalOptions::default() };
    let pooled = compare_masks(pred, reference, grid, &opts).unwrap();
    check(&format!("{name} dice"), monai.dice, num(e, "dice"));
    check(&format!("{name} hd95_monai"), monai.hd95, num(e, "hd95_monai"));
    check(&format!("{name} hd95_pooled"), pooled.hd95, num(e, "hd95_pooled"));
    check(&format!("{name} hd"), monai.hd, num(e, "hd"));
    // Our `assd` pools both lists, as MedPy 0.5.2's `assd` (the golden "assd" key) does.
    check(&format!("{name} assd"), monai.assd, num(e, "assd"));
    let count = |v: &[bool]| v.iter().filter(|b| **b).count() as u64;
    assert_eq!(Some(count(pred)), e["n_pred"].as_u64(), "{name} n_pred");
    assert_eq!(Some(count(reference)), e["n_ref"].as_u64(), "{name} n_ref");
    if monai.note.is_some() {
        return;
    }
    let d = surface_distances(pred, reference, grid, Connectivity::Six).unwrap();
    assert_eq!(Some(d.pred_to_ref.len() as u64), e["n_surface_pred"].as_u64(), "{name} n_surface_pred");
    assert_eq!(Some(d.ref_to_pred.len() as u64), e["n_surface_ref"].as_u64(), "{name} n_surface_ref");
    check(&format!("{name} p95 pred→ref"), percentile(&d.pred_to_ref, 95.0), num(e, "hd95_monai_pred_to_ref"));
    check(&format!("{name} p95 ref→pred"), percentile(&d.ref_to_pred, 95.0), num(e, "hd95_monai_ref_to_pred"));
    check(&format!("{name} asd pred→ref"), mean(&d.pred_to_ref), num(e, "asd_pred_to_ref"));
    check(&format!("{name} asd ref→pred"), mean(&d.ref_to_pred), num(e, "asd_ref_to_pred"));
    // The older mean-of-means form (MedPy <= 0.4) is kept as a separate method.
    check(&format!("{name} assd mean of means"), d.assd_mean_of_means(), num(e, "assd_mean_of_means"));
    if let Some(m) = e["monai_hd95_from_monai"].as_f64() {
        assert!((monai.hd95 - m).abs() < 1e-5, "{name}: MONAI's own value {m} vs {}", monai.hd95);
    }
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

#[test]
fn every_golden_case_matches() {
    let doc = expected();
    let penalty = num(&doc, "penalty_mm");
    assert_eq!(penalty, EvalOptions::default().empty_penalty_mm);
    let cases = doc["cases"].as_array().expect("cases");
    assert!(cases.len() >= 30, "{} cases", cases.len());
    for e in cases {
        let name = e["name"].as_str().unwrap();
        let (pred, dims, sp) = mask(&golden_dir().join(e["pred"].as_str().unwrap()));
        let (reference, rdims, _) = mask(&golden_dir().join(e["ref"].as_str().unwrap()));
        let spacing: Vec<f64> = e["spacing"].as_array().unwrap().iter().map(|s| s.as_f64().unwrap()).collect();
        let shape: Vec<usize> = e["shape"].as_array().unwrap().iter().map(|s| s.as_u64().unwrap() as usize).collect();
        assert_eq!((dims.to_vec(), rdims), (shape, dims), "{name} shape");
        for a in 0..3 {
            assert!((sp[a] - spacing[a]).abs() < 1e-6, "{name}: header spacing {sp:?} vs {spacing:?}");
        }
        let grid = Grid::new(dims, [spacing[0], spacing[1], spacing[2]]);
        check_entry(name, e, &pred, &reference, &grid);
        let note = compare_masks(&pred, &reference, &grid, &EvalOptions::default()).unwrap().note;
        let want = match e["kind"].as_str().unwrap() {
            "empty_pred" => Some(EmptyCase::PredEmpty),
            "empty_ref" => Some(EmptyCase::RefEmpty),
            "both_empty" => Some(EmptyCase::BothEmpty),
            _ => None,
        };
        assert_eq!(note, want, "{name} note");
    }
}

#[test]
fn brats_shift_matches() {
    let doc = expected();
    let Some(bs) = doc.get("brats_shift") else {
        magseg_testkit::skip("brats_shift_matches", "expected.json has no brats_shift entry");
        return;
    };
    let path = magseg_testkit::shared_root()
        .join("brats2018")
        .join(bs["case"].as_str().unwrap())
        .join(format!("{}_seg.nii.gz", bs["case"].as_str().unwrap()));
    if !path.exists() {
        if magseg_testkit::shared_required() {
            panic!("brats_shift_matches: {} is required (MAGSEG_REQUIRE_SHARED=1)", path.display());
        }
        magseg_testkit::skip("brats_shift_matches", &format!("{} not found", path.display()));
        return;
    }
    let seg = read_labels(&path).unwrap();
    let [nx, ny, nz] = seg.geometry.dims;
    let shift = bs["shift"].as_u64().unwrap() as usize;
    assert_eq!(bs["axis"].as_u64(), Some(0));
    // shifted[i] = seg[i - shift] along axis 0 (i, the fastest axis), zero fill.
    let mut shifted = vec![0i32; seg.data.len()];
    for row in 0..ny * nz {
        let (src, dst) = (&seg.data[row * nx..(row + 1) * nx], &mut shifted[row * nx..(row + 1) * nx]);
        dst[shift..].copy_from_slice(&src[..nx - shift]);
    }
    let grid = Grid::unit(seg.geometry.dims);
    let preset = LabelPreset::named("brats").unwrap();
    let got = evaluate_labels(&shifted, &seg.data, &grid, &preset, &EvalOptions::default()).unwrap();
    for r in &got {
        let e = &bs["regions"][r.region.as_str()];
        let m: PairMetrics = r.metrics;
        check(&format!("brats {} dice", r.region), m.dice, num(e, "dice"));
        check(&format!("brats {} hd95", r.region), m.hd95, num(e, "hd95_monai"));
        check(&format!("brats {} hd", r.region), m.hd, num(e, "hd"));
        check(&format!("brats {} assd", r.region), m.assd, num(e, "assd"));
        let labels: Vec<i32> =
            bs["labels"][r.region.as_str()].as_array().unwrap().iter().map(|v| v.as_i64().unwrap() as i32).collect();
        let pm: Vec<bool> = shifted.iter().map(|v| labels.contains(v)).collect();
        let rm: Vec<bool> = seg.data.iter().map(|v| labels.contains(v)).collect();
        check_entry(&format!("brats {}", r.region), e, &pm, &rm, &grid);
    }
}
