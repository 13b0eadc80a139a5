//! `magseg predict` and `magseg evaluate --model`: predictions come back on the inputs' own grid with
//! the data set's label values, a mirrored (RAS-flipped) copy of a real BraTS case gives the same
//! segmentation voxel for voxel, bad inputs are refused before anything is written, the subset
//! evaluation's Shapley values add up to the all-modality Dice, and both commands honour `--whole`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::Device;
use magseg_model::{MagMs, MagMsConfig, ModelKind};
use magseg_train::Preprocess;
use magseg_volume::phantom::{write_dataset, PhantomOptions};
use magseg_volume::{read_image, read_labels, write_image, Image};

fn magseg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_magseg")).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// An untrained (seeded) tiny U-Net MAG-MS model directory: predictions are arbitrary but valid and
/// deterministic, which is all these tests need.
fn model(dir: &Path, modalities: &[&str], spacing: Option<[f64; 3]>) -> PathBuf {
    let config = MagMsConfig {
        kind: ModelKind::Unet,
        modalities: modalities.iter().map(|s| s.to_string()).collect(),
        out_channels: 4,
        patch_size: [16, 16, 16],
        unet_base_channels: 4,
        label_preset: Some("brats".into()),
        ..MagMsConfig::default()
    };
    let net = MagMs::with_seed(config, &Device::Cpu, 3).unwrap();
    let out = dir.join("model");
    net.save(&out).unwrap();
    Preprocess { spacing }.save(&out).unwrap();
    out
}

fn phantom(dir: &Path, size: usize, cases: usize) -> PathBuf {
    let data = dir.join(format!("phantom{size}"));
    write_dataset(&data, &PhantomOptions { cases, seed: 4, size }, &mut |_, _| {}).unwrap();
    data
}

fn case_file(data: &Path, i: usize, m: &str) -> String {
    data.join(format!("Phantom_{i:03}/Phantom_{i:03}_{m}.nii.gz")).display().to_string()
}

#[test]
fn prediction_keeps_the_input_grid_and_the_dataset_label_values() {
    let tmp = tempfile::tempdir().unwrap();
    let data = phantom(tmp.path(), 24, 1);
    for spacing in [None, Some([1.5, 2.0, 1.5])] {
        let m = model(tmp.path(), &["flair", "t1", "t1ce", "t2"], spacing);
        let out = tmp.path().join("seg.nii.gz");
        let o = magseg(&[
            "predict",
            "--model",
            m.to_str().unwrap(),
            "--flair",
            &case_file(&data, 0, "flair"),
            "--t1ce",
            &case_file(&data, 0, "t1ce"),
            "--out",
            out.to_str().unwrap(),
            "--probs",
            tmp.path().join("probs.nii.gz").to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let input = read_image(case_file(&data, 0, "flair")).unwrap();
        let seg = read_labels(&out).unwrap();
        assert_eq!(seg.geometry.dims, input.geometry.dims);
        assert_eq!(seg.geometry.affine, input.geometry.affine, "the input's affine, read back");
        assert!(seg.data.iter().all(|v| [0, 1, 2, 4].contains(v)), "BraTS label values only");
        let probs = read_image(tmp.path().join("probs.nii.gz")).unwrap();
        assert_eq!((probs.geometry.dims, probs.channels), (input.geometry.dims, 4));
        let n = input.geometry.len();
        for v in (0..n).step_by(97) {
            let s: f32 = (0..4).map(|c| probs.data[c * n + v]).sum();
            assert!((s - 1.0).abs() < 1e-4, "probabilities sum to {s}");
        }
    }
}

#[test]
fn whole_volume_prediction_keeps_the_input_grid() {
    let tmp = tempfile::tempdir().unwrap();
    let data = phantom(tmp.path(), 24, 1);
    let m = model(tmp.path(), &["flair", "t1", "t1ce", "t2"], None);
    let out = tmp.path().join("seg.nii.gz");
    let flair = case_file(&data, 0, "flair");
    let o = magseg(&[
        "predict",
        "--model",
        m.to_str().unwrap(),
        "--flair",
        &flair,
        "--whole",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let input = read_image(&flair).unwrap();
    let seg = read_labels(&out).unwrap();
    assert_eq!((seg.geometry.dims, seg.geometry.affine), (input.geometry.dims, input.geometry.affine));
    assert!(seg.data.iter().all(|v| [0, 1, 2, 4].contains(v)), "BraTS label values only");
}

#[test]
fn bad_inputs_are_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let data24 = phantom(tmp.path(), 24, 1);
    let data32 = phantom(tmp.path(), 32, 1);
    let m = model(tmp.path(), &["flair", "t1", "t1ce", "t2"], None);
    let out = tmp.path().join("out.nii.gz");
    let o = out.to_str().unwrap();
    let ms = m.to_str().unwrap();
    let flair = case_file(&data24, 0, "flair");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--flair".into(), tmp.path().join("none.nii.gz").display().to_string()], "no such file"),
        (vec!["--flair".into(), flair.clone(), "--image".into(), format!("pd={flair}")], "no modality 'pd'"),
        (vec!["--flair".into(), flair.clone(), "--t2".into(), case_file(&data32, 0, "t2")], "not on the grid"),
        (vec![], "no input"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["predict", "--model", ms, "--out", o];
        args.extend(extra.iter().map(String::as_str));
        let r = magseg(&args);
        assert!(!r.status.success(), "{args:?} was accepted");
        assert!(stderr(&r).contains(needle), "expected '{needle}': {}", stderr(&r));
        assert!(!out.exists(), "{args:?} wrote an output");
    }
    // The output may not be an input: the input stays untouched.
    let before = std::fs::read(&flair).unwrap();
    let r = magseg(&["predict", "--model", ms, "--flair", &flair, "--out", &flair]);
    assert!(!r.status.success() && stderr(&r).contains("is an input image"), "{}", stderr(&r));
    assert_eq!(std::fs::read(&flair).unwrap(), before);
    // A directory that is not a model.
    let r = magseg(&["predict", "--model", tmp.path().to_str().unwrap(), "--flair", &flair, "--out", o]);
    assert!(!r.status.success() && stderr(&r).contains("not a model directory"), "{}", stderr(&r));
    assert!(!out.exists());
}

#[test]
fn subset_evaluation_reports_every_subset_and_shapley_values_add_up() {
    let tmp = tempfile::tempdir().unwrap();
    let data = phantom(tmp.path(), 24, 2);
    let m = model(tmp.path(), &["flair", "t1", "t2"], None);
    let json = tmp.path().join("eval.json");
    let pics = tmp.path().join("pics");
    let o = magseg(&[
        "evaluate",
        "--model",
        m.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--pictures",
        pics.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("modality importance") && stdout.contains("flair+t1+t2"), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let subsets = v["subsets"].as_array().unwrap();
    assert_eq!(subsets.len(), 7, "2^3 − 1 subsets");
    assert_eq!(subsets[0]["name"], "flair+t1+t2");
    for imp in v["importance"].as_array().unwrap() {
        let region = imp["region"].as_str().unwrap();
        let sum: f64 = imp["values"].as_array().unwrap().iter().map(|p| p[1].as_f64().unwrap()).sum();
        let full = subsets[0]["summary"].as_array().unwrap().iter().find(|r| r["region"] == region).unwrap();
        let dice = full["dice_mean"].as_f64().unwrap();
        assert!((sum - dice).abs() < 1e-9, "{region}: Shapley sum {sum} vs Dice(all) − 0 = {dice}");
    }
    assert!(pics.join("subsets_dice.svg").is_file());
    assert!(pics.join("overlay_Phantom_000.png").is_file() && pics.join("overlay_Phantom_001.png").is_file());
}

/// `magseg evaluate --model` and `magseg predict` share the inference settings: with and without
/// `--whole`, the all-modality subset's Dice per region equals that of `predict`'s label map scored by
/// `magseg evaluate --pred`, and the two settings give different label maps and Dice (16³ windows
/// over a 24³ volume against one pass), so the flag reaches the network in both commands.
#[test]
fn evaluate_and_predict_agree_with_and_without_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let data = phantom(tmp.path(), 24, 1);
    let m = model(tmp.path(), &["flair", "t1"], None);
    let (ms, ds) = (m.to_str().unwrap(), data.to_str().unwrap());
    let json = |o: Output| -> serde_json::Value {
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let (flair, t1) = (case_file(&data, 0, "flair"), case_file(&data, 0, "t1"));
    let reference = case_file(&data, 0, "seg");
    let mut dice_by_setting = Vec::new();
    for whole in [false, true] {
        let flag: &[&str] = if whole { &["--whole"] } else { &[] };
        let seg = tmp.path().join(format!("seg_{whole}.nii.gz"));
        let mut args = vec!["predict", "--model", ms, "--flair", &flair, "--t1", &t1, "--out", seg.to_str().unwrap()];
        args.extend(flag);
        let o = magseg(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let direct = json(magseg(&["evaluate", "--pred", seg.to_str().unwrap(), "--ref", &reference, "--json", "-"]));
        let report = tmp.path().join(format!("subsets_{whole}.json"));
        let mut args = vec!["evaluate", "--model", ms, "--data", ds, "--json", report.to_str().unwrap()];
        args.extend(flag);
        let o = magseg(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let subsets: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        let all = &subsets["subsets"][0];
        assert_eq!(all["name"], "flair+t1");
        let mut dice = Vec::new();
        for region in ["WT", "TC", "ET"] {
            let d = &direct["cases"][0]["regions"][region]["dice"];
            let row = all["summary"].as_array().unwrap().iter().find(|r| r["region"] == region).unwrap();
            assert_eq!(&row["dice_mean"], d, "{region}, whole = {whole}");
            dice.push(d.clone());
        }
        dice_by_setting.push((dice, read_labels(&seg).unwrap().data));
    }
    assert_ne!(dice_by_setting[0].1, dice_by_setting[1].1, "--whole changed nothing in predict");
    assert_ne!(dice_by_setting[0].0, dice_by_setting[1].0, "--whole changed nothing in evaluate");
}

/// A copy of `img` mirrored along voxel axis 0 with the affine changed so every voxel keeps its world
/// position (a different on-disk orientation of the same scan).
fn mirrored(img: &Image) -> Image {
    let [ni, nj, nk] = img.geometry.dims;
    let mut out = img.clone();
    for k in 0..nk {
        for j in 0..nj {
            for i in 0..ni {
                out.data[i + ni * (j + nj * k)] = img.data[(ni - 1 - i) + ni * (j + nj * k)];
            }
        }
    }
    let a = &mut out.geometry.affine;
    for r in 0..3 {
        a[r][3] += a[r][0] * (ni as f64 - 1.0);
        a[r][0] = -a[r][0];
    }
    out
}

#[test]
fn a_mirrored_copy_of_a_real_case_gets_the_same_segmentation_voxel_for_voxel() {
    let Some(shared) = magseg_testkit::shared_data("a_mirrored_copy_of_a_real_case_gets_the_same_segmentation") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let case = shared.join("brats2018/Brats18_CBICA_ABM_1/Brats18_CBICA_ABM_1");
    let m = model(tmp.path(), &["flair", "t1ce"], Some([3.0, 3.0, 3.0]));
    let flair = read_image(format!("{}_flair.nii.gz", case.display())).unwrap();
    let t1ce = read_image(format!("{}_t1ce.nii.gz", case.display())).unwrap();
    let (mf, mt) = (tmp.path().join("flair_m.nii.gz"), tmp.path().join("t1ce_m.nii.gz"));
    write_image(&mf, &mirrored(&flair), &[]).unwrap();
    write_image(&mt, &mirrored(&t1ce), &[]).unwrap();
    let run = |f: &str, t: &str, out: &Path| {
        let o = magseg(&[
            "predict",
            "--model",
            m.to_str().unwrap(),
            "--flair",
            f,
            "--t1ce",
            t,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        read_labels(out).unwrap()
    };
    let a = run(
        &format!("{}_flair.nii.gz", case.display()),
        &format!("{}_t1ce.nii.gz", case.display()),
        &tmp.path().join("a.nii.gz"),
    );
    let b = run(mf.to_str().unwrap(), mt.to_str().unwrap(), &tmp.path().join("b.nii.gz"));
    assert_eq!(b.geometry.affine, mirrored(&flair).geometry.affine, "the mirrored copy's own affine");
    let b_back: Vec<i32> = {
        let [ni, nj, nk] = b.geometry.dims;
        let mut v = b.data.clone();
        for k in 0..nk {
            for j in 0..nj {
                for i in 0..ni {
                    v[i + ni * (j + nj * k)] = b.data[(ni - 1 - i) + ni * (j + nj * k)];
                }
            }
        }
        v
    };
    let differ = a.data.iter().zip(&b_back).filter(|(x, y)| x != y).count();
    assert_eq!(differ, 0, "{differ} voxels differ");
    assert!(a.data.iter().any(|&v| v != 0), "the (untrained) model predicts some foreground");
}
