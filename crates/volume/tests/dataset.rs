//! Dataset discovery (MSD, BraTS, BraTS 2023, iSEG, TOML/CSV manifests), case loading and label presets,
//! on the shared real data and on tiny volumes written to a temporary folder.

use std::fs;
use std::path::{Path, PathBuf};

use magseg_volume::{
    discover, load_case, load_images, read_image, write_image, write_labels, Geometry, LabelPreset, Layout, Volume,
    VolumeError,
};

const DIMS: [usize; 3] = [4, 5, 6];

fn grid(dims: [usize; 3], origin_x: f64) -> Geometry {
    let mut g = Geometry::from_spacing(dims, [1.0, 1.0, 2.0]);
    g.affine[0][3] = origin_x;
    g
}

fn write_img(path: &Path, g: &Geometry, channels: usize, value: f32) {
    let data: Vec<f32> = (0..g.len() * channels).map(|i| value + i as f32).collect();
    write_image(path, &Volume::new(data, g.clone(), channels).unwrap(), &[]).unwrap();
}

fn write_seg(path: &Path, values: &[i32]) {
    let g = grid(DIMS, 0.0);
    let data: Vec<i32> = (0..g.len()).map(|i| values[i % values.len()]).collect();
    write_labels(path, &Volume::new(data, g, 1).unwrap(), &[]).unwrap();
}

/// A manifest folder with cases c1, c2 (flair, t1 and seg) on a 4×5×6 grid.
fn manifest_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for c in ["c1", "c2"] {
        fs::create_dir(dir.path().join(c)).unwrap();
        for (m, v) in [("flair", 10.0), ("t1", 20.0)] {
            write_img(&dir.path().join(format!("{c}/{m}.nii.gz")), &grid(DIMS, 0.0), 1, v);
        }
        write_seg(&dir.path().join(format!("{c}/seg.nii.gz")), &[0, 1, 2, 4]);
    }
    dir
}

fn toml_case(id: &str, files: &[(&str, &str)], label: &str) -> String {
    let mods: Vec<String> = files.iter().map(|(m, f)| format!("{m} = \"{f}\"")).collect();
    format!("[[case]]\nid = \"{id}\"\nlabel = \"{label}\"\n[case.modalities]\n{}\n", mods.join("\n"))
}

fn write_manifest(dir: &Path, head: &str, cases: &[String]) -> PathBuf {
    let p = dir.join("m.toml");
    fs::write(&p, format!("{head}\n{}", cases.concat())).unwrap();
    p
}

fn ok_cases() -> Vec<String> {
    ["c1", "c2"]
        .iter()
        .map(|c| {
            let (f, t) = (format!("{c}/flair.nii.gz"), format!("{c}/t1.nii.gz"));
            toml_case(c, &[("t1", &t), ("flair", &f)], &format!("{c}/seg.nii.gz"))
        })
        .collect()
}

fn err_text<T: std::fmt::Debug>(r: Result<T, VolumeError>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn brats2018_folder_and_case_folder() {
    let Some(root) = magseg_testkit::shared_data("brats2018_folder_and_case_folder") else { return };
    let ds = discover(&root.join("brats2018")).unwrap();
    assert_eq!(ds.layout, Layout::Brats);
    assert_eq!(ds.cases.len(), 15);
    assert!(ds.problems.is_empty(), "{:?}", ds.problems);
    assert_eq!(ds.preset.as_ref().unwrap().name, "brats");
    assert_eq!(ds.modality_names(), ["flair", "t1", "t1ce", "t2"]);
    assert!(ds.cases.iter().all(|c| c.label.is_some() && c.modalities.len() == 4));
    let one = discover(&root.join("brats2018/Brats18_CBICA_ABM_1")).unwrap();
    assert_eq!(one.cases.len(), 1);
    assert_eq!(one.cases[0], *ds.case("Brats18_CBICA_ABM_1").unwrap());
}

#[test]
fn brats2018_case_loads_with_preset() {
    let Some(root) = magseg_testkit::shared_data("brats2018_case_loads_with_preset") else { return };
    let ds = discover(&root.join("brats2018/Brats18_2013_11_1")).unwrap();
    let loaded = load_case(&ds.cases[0], ds.preset.as_ref()).unwrap();
    assert_eq!(loaded.images.len(), 4);
    for (_, img) in &loaded.images {
        assert_eq!((img.geometry.dims, img.channels), ([240, 240, 155], 1));
    }
    let label = loaded.label.unwrap();
    let values: Vec<i32> = label.counts().iter().map(|c| c.0).collect();
    assert_eq!(values, [0, 1, 2, 4]);
    let only = load_images(&ds.cases[0], &["t1ce"]).unwrap();
    assert_eq!(only.images[0].1.data, loaded.images[2].1.data);
    assert!(only.label.is_none());
}

#[test]
fn msd_fixture_splits_channels() {
    let Some(root) = magseg_testkit::shared_data("msd_fixture_splits_channels") else { return };
    let dir = root.join("fixtures/Task01_BrainTumour_like");
    let ds = discover(&dir).unwrap();
    assert_eq!(ds.layout, Layout::Msd);
    assert_eq!(ds.preset.as_ref().unwrap().name, "msd-brain");
    assert_eq!(ds.cases.len(), 1);
    let case = &ds.cases[0];
    assert_eq!(case.id, "BRATS_001");
    assert_eq!(case.modality_names(), ["FLAIR", "T1w", "t1gd", "T2w"]);
    assert_eq!(case.modalities[2].channel, Some(2));
    assert_eq!(case.label.as_deref(), Some(dir.join("labelsTr/BRATS_001.nii.gz").as_path()));
    let loaded = load_case(case, ds.preset.as_ref()).unwrap();
    let full = read_image(&case.modalities[0].path).unwrap();
    for (c, (_, img)) in loaded.images.iter().enumerate() {
        assert_eq!((img.channels, img.data.len()), (1, 240 * 240 * 155));
        assert_eq!(img.data, full.channel(c));
    }
    let values: Vec<i32> = loaded.label.unwrap().counts().iter().map(|c| c.0).collect();
    assert_eq!(values, [0, 1, 2, 3]);
    let sub = load_images(case, &["T2w", "FLAIR"]).unwrap();
    assert_eq!(sub.images[0].1.data, full.channel(3));
    assert_eq!(sub.images[1].1.data, full.channel(0));
    assert!(err_text(load_images(case, &["t2"])).contains("FLAIR, T1w, t1gd, T2w"));
}

#[test]
fn iseg_fixture_with_preset() {
    let Some(root) = magseg_testkit::shared_data("iseg_fixture_with_preset") else { return };
    let ds = discover(&root.join("fixtures/iseg_like_2mm")).unwrap();
    assert_eq!(ds.layout, Layout::Iseg);
    assert_eq!(ds.cases.len(), 1);
    assert_eq!(ds.cases[0].id, "subject-1");
    assert_eq!(ds.cases[0].modality_names(), ["T1", "T2"]);
    let preset = ds.preset.unwrap();
    assert_eq!(preset.name, "iseg");
    let loaded = load_case(&ds.cases[0], Some(&preset)).unwrap();
    assert_eq!(loaded.geometry().unwrap().dims, [91, 109, 91]);
    let classes = preset.to_classes(loaded.label.as_ref().unwrap()).unwrap();
    assert_eq!(classes.iter().copied().max(), Some(3));
}

#[test]
fn toml_manifest_discovers_and_loads() {
    let dir = manifest_dir();
    let m = write_manifest(dir.path(), "modalities = [\"flair\", \"t1\"]\nlabels = \"brats\"", &ok_cases());
    let ds = discover(&m).unwrap();
    assert_eq!(ds.layout, Layout::Manifest);
    assert_eq!(ds.cases.len(), 2);
    assert_eq!(ds.modality_names(), ["flair", "t1"]);
    assert_eq!(ds.preset.as_ref().unwrap().name, "brats");
    let loaded = load_case(&ds.cases[1], ds.preset.as_ref()).unwrap();
    assert_eq!(loaded.id, "c2");
    assert_eq!(loaded.image("t1").unwrap().data[0], 20.0);
    // Without a modalities list names sort alphabetically; custom presets are accepted.
    let head = "[labels]\nname = \"mine\"\nvalues = { 0 = \"bg\", 4 = \"et\", 1 = \"ncr\", 2 = \"ed\" }\n\
                regions = { WT = [1, 2, 4], ET = [4] }";
    let ds = discover(&write_manifest(dir.path(), head, &ok_cases())).unwrap();
    assert_eq!(ds.modality_names(), ["flair", "t1"]);
    let p = ds.preset.unwrap();
    assert_eq!((p.name.as_str(), p.values()), ("mine", vec![0, 1, 2, 4]));
    assert_eq!(p.region("WT").unwrap().labels, [1, 2, 4]);
}

#[test]
fn csv_manifest_discovers() {
    let dir = manifest_dir();
    let p = dir.path().join("list.csv");
    let text = "id, t1 ,flair,label\n# comment\nc1,c1/t1.nii.gz,c1/flair.nii.gz,c1/seg.nii.gz\n\nc2, c2/t1.nii.gz, c2/flair.nii.gz,\n";
    fs::write(&p, text).unwrap();
    let ds = discover(&p).unwrap();
    assert_eq!(ds.modality_names(), ["t1", "flair"]);
    assert_eq!(ds.cases[0].label, Some(dir.path().join("c1/seg.nii.gz")));
    assert_eq!(ds.cases[1].label, None);
    assert_eq!(ds.cases[1].modalities[1].path, dir.path().join("c2/flair.nii.gz"));
    fs::write(&p, "id,t1\n\"c1\",c1/t1.nii.gz\n").unwrap();
    assert!(err_text(discover(&p)).contains("line 2: quoted fields are not supported"));
    fs::write(&p, "id,t1\nc1,c1/t9.nii.gz\n").unwrap();
    assert!(err_text(discover(&p)).contains("t9.nii.gz does not exist"));
}

#[test]
fn manifest_errors_name_the_problem() {
    let dir = manifest_dir();
    let d = dir.path();
    let missing = toml_case("c1", &[("flair", "c1/flair.nii.gz"), ("t1", "c1/t1x.nii.gz")], "c1/seg.nii.gz");
    let e = err_text(discover(&write_manifest(d, "", &[missing])));
    assert!(e.contains("modality 't1'") && e.contains("c1/t1x.nii.gz does not exist"), "{e}");
    let e = err_text(discover(&write_manifest(d, "modalities = [\"flair\"]", &ok_cases())));
    assert!(e.contains("unknown modality 't1'") && e.contains("flair"), "{e}");
    let e = err_text(discover(&write_manifest(d, "labels = \"brats2019\"", &ok_cases())));
    assert!(e.contains("unknown label preset 'brats2019'") && e.contains("msd-brain"), "{e}");
    let e = err_text(discover(&write_manifest(d, "colour = 1", &ok_cases())));
    assert!(e.contains("unknown field `colour`"), "{e}");
    let e = err_text(discover(d));
    assert!(e.contains("MSD") && e.contains("BraTS 2023") && e.contains("iSEG") && e.contains("manifest"), "{e}");
}

#[test]
fn mismatched_grids_name_both_files() {
    let dir = manifest_dir();
    let d = dir.path();
    write_img(&d.join("small.nii.gz"), &grid([4, 5, 5], 0.0), 1, 0.0);
    write_img(&d.join("moved.nii.gz"), &grid(DIMS, 0.5), 1, 0.0);
    write_img(&d.join("close.nii.gz"), &grid(DIMS, 0.0004), 1, 0.0);
    for (file, what) in [("small.nii.gz", "shape"), ("moved.nii.gz", "affine")] {
        let case = toml_case("c1", &[("flair", "c1/flair.nii.gz"), ("t1", file)], "c1/seg.nii.gz");
        let ds = discover(&write_manifest(d, "", &[case])).unwrap();
        match load_case(&ds.cases[0], None) {
            Err(VolumeError::GridMismatch { a, b, difference }) => {
                assert!(a.ends_with("c1/flair.nii.gz") && b.ends_with(file), "{a:?} {b:?}");
                assert!(difference.contains(what), "{difference}");
            }
            other => panic!("expected GridMismatch, got {other:?}"),
        }
    }
    let case = toml_case("c1", &[("flair", "c1/flair.nii.gz"), ("t1", "close.nii.gz")], "c1/seg.nii.gz");
    load_case(&discover(&write_manifest(d, "", &[case])).unwrap().cases[0], None).unwrap();
}

#[test]
fn label_outside_preset_is_unknown_label() {
    let dir = manifest_dir();
    write_seg(&dir.path().join("c1/seg.nii.gz"), &[0, 1, 3, 3, 4]);
    let ds = discover(&write_manifest(dir.path(), "labels = \"brats\"", &ok_cases())).unwrap();
    match load_case(&ds.cases[0], ds.preset.as_ref()) {
        Err(VolumeError::UnknownLabel { path, value, count, expected, .. }) => {
            assert!(path.ends_with("c1/seg.nii.gz"));
            assert_eq!((value, count, expected), (3, 48, vec![0, 1, 2, 4]));
        }
        other => panic!("expected UnknownLabel, got {other:?}"),
    }
    load_case(&ds.cases[0], None).unwrap();
    load_case(&ds.cases[0], Some(&LabelPreset::named("brats2023").unwrap())).unwrap_err();
}

#[test]
fn brats_layouts_in_tempdir() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (case, sep, mods) in [("A1", "_", ["flair", "t1", "t1ce", "t2"]), ("B-0001", "-", ["t1n", "t1c", "t2w", "t2f"])]
    {
        let root = d.join(if sep == "_" { "old" } else { "new" });
        fs::create_dir_all(root.join(case)).unwrap();
        fs::create_dir_all(root.join("notes")).unwrap();
        fs::write(root.join("README.txt"), "x").unwrap();
        for m in mods {
            write_img(&root.join(format!("{case}/{case}{sep}{m}.nii.gz")), &grid(DIMS, 0.0), 1, 1.0);
        }
        fs::write(root.join(format!("{case}/._{case}{sep}t1.nii.gz")), "junk").unwrap();
    }
    let old = discover(&d.join("old")).unwrap();
    assert_eq!((old.layout, old.cases.len()), (Layout::Brats, 1));
    assert!(old.cases[0].label.is_none());
    assert_eq!(old.problems.len(), 2, "{:?}", old.problems); // notes/ and the ._ file
    let new = discover(&d.join("new")).unwrap();
    assert_eq!(new.layout, Layout::Brats2023);
    assert_eq!(new.cases[0].modality_names(), ["t1n", "t1c", "t2w", "t2f"]);
    assert_eq!(new.preset.unwrap().name, "brats2023");
    assert_eq!(load_case(&new.cases[0], None).unwrap().images.len(), 4);
    fs::remove_file(d.join("old/A1/A1_t1ce.nii.gz")).unwrap();
    let e = err_text(discover(&d.join("old")));
    assert!(e.contains("case A1") && e.contains("A1_t1ce.nii.gz") && e.contains("{flair,t1,t1ce,t2}"), "{e}");
}

#[test]
fn msd_layout_in_tempdir() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir_all(d.join("imagesTr")).unwrap();
    fs::create_dir_all(d.join("labelsTr")).unwrap();
    fs::create_dir_all(d.join("imagesTs")).unwrap();
    write_img(&d.join("imagesTr/P_1.nii.gz"), &grid(DIMS, 0.0), 2, 0.0);
    write_img(&d.join("imagesTs/P_2.nii.gz"), &grid(DIMS, 0.0), 2, 0.0);
    write_seg(&d.join("labelsTr/P_1.nii.gz"), &[0, 1, 2]);
    fs::write(d.join("imagesTr/._P_1.nii.gz"), "junk").unwrap();
    let json = r#"{"name": "Prostate", "modality": {"1": "ADC", "0": "T2"},
        "labels": {"0": "background", "1": "PZ", "2": "TZ"},
        "training": [{"image": "./imagesTr/P_1.nii.gz", "label": "./labelsTr/P_1.nii.gz"},
                     {"image": "./imagesTr/._P_1.nii.gz", "label": "./labelsTr/._P_1.nii.gz"}],
        "test": ["./imagesTs/P_2.nii.gz"]}"#;
    fs::write(d.join("dataset.json"), json).unwrap();
    let ds = discover(d).unwrap();
    assert_eq!(ds.cases.len(), 2);
    assert_eq!(ds.modality_names(), ["T2", "ADC"]);
    assert_eq!(ds.problems.len(), 2, "{:?}", ds.problems);
    let p = ds.preset.as_ref().unwrap();
    assert_eq!((p.name.as_str(), p.regions.len()), ("msd:Prostate", 2));
    let l = load_case(&ds.cases[0], Some(p)).unwrap();
    assert_eq!(l.images[1].1.data[0], DIMS.iter().product::<usize>() as f32);
    assert!(load_case(&ds.cases[1], Some(p)).unwrap().label.is_none());
    fs::write(d.join("dataset.json"), json.replace("P_2", "P_3")).unwrap();
    assert!(err_text(discover(d)).contains("imagesTs/P_3.nii.gz does not exist"));
}
