//! Empty-mask policies, per-region evaluation with label presets, summaries and serialisation.

mod common;

use common::{close, sphere};
use magseg_metrics::{
    compare_masks, evaluate_labels, summarize, BothEmpty, EmptyCase, EvalOptions, Grid, Hd95Convention, MetricsError,
    PairMetrics, RegionMetrics,
};
use magseg_volume::labels::LabelPreset;

#[test]
fn empty_masks_follow_the_policy() {
    let grid = Grid::new([10, 9, 8], [1.0, 0.8, 2.5]);
    let e = vec![false; 720];
    let s = sphere(&grid, [5.0, 4.0, 4.0], 3.0);
    let def = EvalOptions::default();
    assert_eq!(def.empty_penalty_mm, 373.13);
    let both = compare_masks(&e, &e, &grid, &def).unwrap();
    assert!(both.dice.is_nan() && both.hd95.is_nan() && both.hd.is_nan() && both.assd.is_nan());
    assert_eq!(both.note, Some(EmptyCase::BothEmpty));
    let perfect = EvalOptions { both_empty: BothEmpty::Perfect, ..def };
    let p = compare_masks(&e, &e, &grid, &perfect).unwrap();
    assert_eq!((p.dice, p.hd95, p.hd, p.assd, p.note), (1.0, 0.0, 0.0, 0.0, Some(EmptyCase::BothEmpty)));
    let pe = compare_masks(&e, &s, &grid, &def).unwrap();
    assert_eq!((pe.dice, pe.hd95, pe.hd, pe.assd, pe.note), (0.0, 373.13, 373.13, 373.13, Some(EmptyCase::PredEmpty)));
    let custom = EvalOptions { empty_penalty_mm: 50.0, hd95: Hd95Convention::Pooled, ..def };
    let re = compare_masks(&s, &e, &grid, &custom).unwrap();
    assert_eq!((re.dice, re.hd95, re.assd, re.note), (0.0, 50.0, 50.0, Some(EmptyCase::RefEmpty)));
    let same = compare_masks(&s, &s, &grid, &def).unwrap();
    assert_eq!((same.dice, same.hd95, same.hd, same.assd, same.note), (1.0, 0.0, 0.0, 0.0, None));
}

/// A BraTS-like label map: edema (2) sphere, necrosis (1) core, enhancing (4) shell around the core.
fn brats_case(grid: &Grid, c: [f64; 3], r: f64, with_et: bool) -> Vec<i32> {
    let wt = sphere(grid, c, r);
    let tc = sphere(grid, c, r * 0.6);
    let core = sphere(grid, c, r * 0.4);
    (0..wt.len())
        .map(|v| match (wt[v], tc[v], core[v]) {
            (_, _, true) => 1,
            (_, true, _) if with_et => 4,
            (_, true, _) => 1,
            (true, ..) => 2,
            _ => 0,
        })
        .collect()
}

fn region_mask(l: &[i32], labels: &[i32]) -> Vec<bool> {
    l.iter().map(|v| labels.contains(v)).collect()
}

#[test]
fn regions_equal_mask_comparisons() {
    let grid = Grid::new([40, 36, 24], [1.0, 0.8, 2.5]);
    let preset = LabelPreset::named("brats").unwrap();
    let reference = brats_case(&grid, [20.0, 18.0, 12.0], 12.0, true);
    for (pred, et_empty) in [
        (brats_case(&grid, [21.0, 17.5, 12.4], 11.0, true), false),
        (brats_case(&grid, [19.0, 18.0, 11.0], 13.0, false), true),
    ] {
        let opts = EvalOptions::default();
        let got = evaluate_labels(&pred, &reference, &grid, &preset, &opts).unwrap();
        let names: Vec<&str> = got.iter().map(|r| r.region.as_str()).collect();
        assert_eq!(names, ["WT", "TC", "ET"]);
        for (r, region) in got.iter().zip(&preset.regions) {
            let want = compare_masks(
                &region_mask(&pred, &region.labels),
                &region_mask(&reference, &region.labels),
                &grid,
                &opts,
            )
            .unwrap();
            assert_eq!(r.metrics, want, "{}", r.region);
        }
        assert_eq!(got[2].metrics.note, et_empty.then_some(EmptyCase::PredEmpty));
        assert!(got[0].metrics.dice > 0.8);
    }
}

#[test]
fn binary_preset_counts_every_nonzero_value() {
    let grid = Grid::unit([12, 10, 8]);
    let preset = LabelPreset::named("binary").unwrap();
    let s = sphere(&grid, [6.0, 5.0, 4.0], 3.0);
    let pred: Vec<i32> = s.iter().enumerate().map(|(v, b)| if *b { [7, -3, 1][v % 3] } else { 0 }).collect();
    let reference: Vec<i32> = s.iter().map(|b| i32::from(*b)).collect();
    let got = evaluate_labels(&pred, &reference, &grid, &preset, &EvalOptions::default()).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].metrics.dice, got[0].metrics.hd95), (1.0, 0.0));
    let none = evaluate_labels(&vec![0; 960], &vec![0; 960], &grid, &preset, &EvalOptions::default()).unwrap();
    assert_eq!(none[0].metrics.note, Some(EmptyCase::BothEmpty));
    assert!(matches!(
        evaluate_labels(&pred[1..], &reference, &grid, &preset, &EvalOptions::default()),
        Err(MetricsError::LengthMismatch { what: "pred", .. })
    ));
}

fn rm(region: &str, dice: f64, hd95: f64, note: Option<EmptyCase>) -> RegionMetrics {
    RegionMetrics { region: region.into(), metrics: PairMetrics { dice, hd95, hd: hd95, assd: hd95 / 2.0, note } }
}

#[test]
fn summaries_exclude_nan_and_count_penalties() {
    let nan = f64::NAN;
    let cases = vec![
        vec![rm("WT", 0.9, 2.0, None), rm("ET", 0.5, 4.0, None)],
        vec![rm("WT", 0.7, 6.0, None), rm("ET", nan, nan, Some(EmptyCase::BothEmpty))],
        vec![rm("WT", 0.0, 373.13, Some(EmptyCase::PredEmpty)), rm("ET", 0.8, 2.0, None)],
    ];
    let s = summarize(&cases);
    assert_eq!(s.len(), 2);
    let (wt, et) = (&s[0], &s[1]);
    assert_eq!((wt.region.as_str(), wt.n, wt.n_nan, wt.n_penalised), ("WT", 3, 0, 1));
    assert!(close(wt.dice_mean, 1.6 / 3.0, 1e-12) && close(wt.hd95_mean, 381.13 / 3.0, 1e-12));
    assert_eq!((et.region.as_str(), et.n, et.n_nan, et.n_penalised), ("ET", 3, 1, 0));
    assert!(close(et.dice_mean, 0.65, 1e-12) && close(et.hd95_mean, 3.0, 1e-12) && close(et.assd_mean, 1.5, 1e-12));
    assert!(close(et.dice_std, 0.15, 1e-12));
    let all_nan = summarize(&[vec![rm("X", nan, nan, Some(EmptyCase::BothEmpty))]]);
    assert!(all_nan[0].dice_mean.is_nan() && all_nan[0].n_nan == 1);
    assert!(summarize(&[]).is_empty());
}

#[test]
fn results_serialise_with_stable_names() {
    let json = serde_json::to_value(rm("ET", 0.0, 373.13, Some(EmptyCase::PredEmpty))).unwrap();
    assert_eq!(json["region"], "ET");
    let m = &json["metrics"];
    assert_eq!(
        (m["dice"].as_f64(), m["hd95"].as_f64(), m["note"].as_str()),
        (Some(0.0), Some(373.13), Some("pred_empty"))
    );
    assert!(m["hd"].is_number() && m["assd"].is_number());
    let nan = serde_json::to_value(rm("ET", f64::NAN, f64::NAN, Some(EmptyCase::BothEmpty))).unwrap();
    assert!(nan["metrics"]["dice"].is_null());
    let opts: EvalOptions = serde_json::from_str(r#"{"hd95": "pooled", "connectivity": "twentysix"}"#).unwrap();
    assert_eq!((opts.hd95, opts.empty_penalty_mm), (Hd95Convention::Pooled, 373.13));
    assert_eq!(EmptyCase::RefEmpty.describe(), "reference empty");
}
