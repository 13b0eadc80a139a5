//! The example manifests in data/examples parse and resolve against phantom cases laid out as the
//! README's main job writes them (out/phantom beside data/).

use std::path::PathBuf;

use magseg_volume::case::load_case;
use magseg_volume::dataset::{discover, Layout};
use magseg_volume::phantom::{write_dataset, PhantomOptions};

#[test]
fn example_manifests_resolve() {
    let tmp = tempfile::tempdir().unwrap();
    let examples = tmp.path().join("data/examples");
    std::fs::create_dir_all(&examples).unwrap();
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/examples");
    for f in ["manifest.toml", "manifest.csv", "custom_labels.toml"] {
        std::fs::copy(src.join(f), examples.join(f)).unwrap();
    }
    let opts = PhantomOptions { cases: 4, seed: 0, size: 32 };
    write_dataset(&tmp.path().join("out/phantom"), &opts, &mut |_, _| {}).unwrap();

    let toml = discover(&examples.join("manifest.toml")).unwrap();
    assert_eq!(toml.layout, Layout::Manifest);
    assert_eq!(toml.cases.len(), 2);
    assert_eq!(toml.modality_names(), ["flair", "t1", "t1ce", "t2"]);
    let preset = toml.preset.clone().unwrap();
    assert_eq!(preset.name, "brats");
    let loaded = load_case(&toml.cases[1], Some(&preset)).unwrap();
    assert_eq!(loaded.images.len(), 4);

    let csv = discover(&examples.join("manifest.csv")).unwrap();
    assert_eq!(csv.modality_names(), ["flair", "t1ce"]);
    assert!(csv.cases[0].label.is_some() && csv.cases[1].label.is_none());

    let custom = discover(&examples.join("custom_labels.toml")).unwrap();
    let p = custom.preset.clone().unwrap();
    assert_eq!(p.name, "phantom-core");
    assert_eq!(p.region("CORE").unwrap().labels, vec![1, 4]);
    load_case(&custom.cases[0], Some(&p)).unwrap();
}
