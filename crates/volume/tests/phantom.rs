//! The phantom generator: determinism, label and background invariants, the documented contrast claims
//! (each modality reveals exactly the regions `REVEALS` says), and the BraTS-layout round trip.

use magseg_volume::phantom::{
    case_id, generate_case, write_dataset, PhantomCase, PhantomOptions, CONTRASTS, MODALITIES, REGIONS, REVEALS,
};
use magseg_volume::{read_image, read_labels, VolumeError};

fn opts(seed: u64, size: usize) -> PhantomOptions {
    PhantomOptions { cases: 4, seed, size }
}

fn same(a: &PhantomCase, b: &PhantomCase) -> bool {
    a.label.data == b.label.data
        && a.images.iter().zip(&b.images).all(|((ma, ia), (mb, ib))| {
            ma == mb
                && ia.data.len() == ib.data.len()
                && ia.data.iter().zip(&ib.data).all(|(x, y)| x.to_bits() == y.to_bits())
        })
}

#[test]
fn same_seed_same_case_across_runs_and_thread_counts() {
    let o = opts(11, 32);
    let a = generate_case(&o, 2).unwrap();
    let b = generate_case(&o, 2).unwrap();
    assert!(same(&a, &b));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let c = pool.install(|| generate_case(&o, 2).unwrap());
    assert!(same(&a, &c), "one thread gave a different case");
    // `cases` does not influence a case.
    let d = generate_case(&PhantomOptions { cases: 99, ..o.clone() }, 2).unwrap();
    assert!(same(&a, &d));
    assert_eq!(a.id, "Phantom_002");
    assert_eq!(case_id(1234), "Phantom_1234");

    let other_seed = generate_case(&opts(12, 32), 2).unwrap();
    assert!(!same(&a, &other_seed));
    assert_ne!(a.label.data, other_seed.label.data);
    let other_index = generate_case(&o, 3).unwrap();
    assert!(!same(&a, &other_index));
}

#[test]
fn shapes_geometry_and_modality_order() {
    let c = generate_case(&opts(0, 48), 0).unwrap();
    let names: Vec<&str> = c.images.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(names, MODALITIES);
    for (_, img) in &c.images {
        assert_eq!(img.geometry.dims, [48; 3]);
        assert_eq!(img.channels, 1);
        assert_eq!(img.geometry, c.label.geometry);
    }
    let g = &c.label.geometry;
    assert_eq!(g.spacing, [1.0; 3]);
    assert_eq!(g.orientation(), "LPS");
    assert_eq!(g.affine[1][3], 47.0);
    assert!(c.image("t1ce").is_some() && c.image("pd").is_none());
}

#[test]
fn labels_background_and_tumour_inside_brain() {
    for index in 0..4 {
        let c = generate_case(&opts(5, 64), index).unwrap();
        let n = 64;
        let values: Vec<i32> = c.label.counts().iter().map(|v| v.0).collect();
        assert_eq!(values, vec![0, 1, 2, 4], "case {index}");
        let mut brain = 0usize;
        let mut tumour = 0usize;
        for idx in 0..n * n * n {
            let vals: Vec<f32> = c.images.iter().map(|(_, i)| i.data[idx]).collect();
            let inside = vals[0] != 0.0;
            for v in &vals {
                assert!(v.is_finite() && *v >= 0.0);
                assert_eq!(*v != 0.0, inside, "case {index} voxel {idx}: {vals:?}");
            }
            let l = c.label.data[idx];
            if l != 0 {
                assert!(inside, "case {index}: tumour label {l} outside the brain at {idx}");
                tumour += 1;
            }
            if inside {
                brain += 1;
                let (i, j, k) = (idx % n, (idx / n) % n, idx / (n * n));
                assert!(
                    [i, j, k].iter().all(|&a| a > 0 && a < n - 1),
                    "case {index}: brain touches the grid border at {:?}",
                    [i, j, k]
                );
            }
        }
        let frac = tumour as f64 / brain as f64;
        assert!((0.05..=0.15).contains(&frac), "case {index}: whole tumour is {:.1} % of the brain", 100.0 * frac);
        let brain_frac = brain as f64 / (n * n * n) as f64;
        assert!((0.15..0.35).contains(&brain_frac), "brain {brain_frac}");
    }
}

fn region_labels(name: &str) -> &'static [i32] {
    REGIONS.iter().find(|r| r.0 == name).unwrap().1
}

fn dice(tp: usize, pred: usize, truth: usize) -> f64 {
    if pred + truth == 0 {
        1.0
    } else {
        2.0 * tp as f64 / (pred + truth) as f64
    }
}

/// Best mean of Dice(A) and Dice(B) over all "value in [lo, hi)" classifiers (and their complements)
/// separating `a` (true) from `b` (false) voxels, with cut points at 129 quantiles.
fn best_split(mut v: Vec<(f32, bool)>) -> f64 {
    v.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = v.len();
    let mut cum = vec![0usize; n + 1];
    for (i, (_, a)) in v.iter().enumerate() {
        cum[i + 1] = cum[i] + usize::from(*a);
    }
    let (na, nb) = (cum[n], n - cum[n]);
    let cuts: Vec<usize> = (0..=128).map(|q| q * n / 128).collect();
    let mut best = 0.0f64;
    for (x, &lo) in cuts.iter().enumerate() {
        for &hi in &cuts[x..] {
            let in_a = cum[hi] - cum[lo];
            let in_b = (hi - lo) - in_a;
            // Interval predicts A.
            let s1 = (dice(in_a, hi - lo, na) + dice(nb - in_b, n - (hi - lo), nb)) / 2.0;
            // Interval predicts B.
            let s2 = (dice(na - in_a, n - (hi - lo), na) + dice(in_b, hi - lo, nb)) / 2.0;
            best = best.max(s1).max(s2);
        }
    }
    best
}

#[test]
fn each_modality_reveals_exactly_the_documented_regions() {
    let all = [0, 1, 2, 4];
    let mut report = Vec::new();
    for index in 0..3 {
        let c = generate_case(&opts(42, 64), index).unwrap();
        for (m, contrast) in CONTRASTS.iter().enumerate() {
            assert_eq!(contrast.modality, MODALITIES[m]);
            let img = &c.images[m].1;
            let claims = REVEALS.iter().find(|r| r.0 == contrast.modality).unwrap().1;
            let mut levels: Vec<f32> = all.iter().map(|&l| contrast.level(l).unwrap()).collect();
            levels.sort_by(f32::total_cmp);
            levels.dedup();
            for (region, labels) in REGIONS {
                let lv = |l: &i32| contrast.level(*l).unwrap();
                let inside: Vec<f32> = labels.iter().map(lv).collect();
                let outside: Vec<f32> = all.iter().filter(|l| !labels.contains(l)).map(lv).collect();
                let separable = inside.iter().all(|x| !outside.contains(x));
                let claimed = claims.contains(&region);
                assert_eq!(separable, claimed, "{} {region}: table and REVEALS disagree", contrast.modality);
                if claimed {
                    // Nearest documented level, i.e. thresholds at the midpoints between levels.
                    let (mut tp, mut pred, mut truth) = (0, 0, 0);
                    for (idx, &v) in img.data.iter().enumerate() {
                        if v == 0.0 {
                            continue;
                        }
                        let rel = v / contrast.scale;
                        let near =
                            levels.iter().copied().min_by(|a, b| (a - rel).abs().total_cmp(&(b - rel).abs())).unwrap();
                        let p = inside.contains(&near);
                        let t = region_labels(region).contains(&c.label.data[idx]);
                        tp += usize::from(p && t);
                        pred += usize::from(p);
                        truth += usize::from(t);
                    }
                    let d = dice(tp, pred, truth);
                    report.push(format!("case {index} {} {region}: Dice {d:.3}", contrast.modality));
                    assert!(d >= 0.9, "case {index}: {} should reveal {region}, Dice {d:.3}", contrast.modality);
                } else {
                    // A level shared by labels inside and outside the region: those cannot be told apart.
                    let shared = inside.iter().find(|x| outside.contains(x)).copied().unwrap();
                    let group: Vec<i32> = all.iter().copied().filter(|l| lv(l) == shared).collect();
                    let voxels: Vec<(f32, bool)> = img
                        .data
                        .iter()
                        .zip(&c.label.data)
                        .filter(|(v, l)| **v != 0.0 && group.contains(l))
                        .map(|(v, l)| (*v, labels.contains(l)))
                        .collect();
                    let s = best_split(voxels);
                    report.push(format!(
                        "case {index} {} {region}: labels {group:?} alike, best split {s:.3}",
                        contrast.modality
                    ));
                    assert!(
                        s <= 0.75,
                        "case {index}: {} should not separate {region} within labels {group:?}: {s:.3}",
                        contrast.modality
                    );
                }
            }
        }
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn write_dataset_round_trips_in_brats_layout() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("phantoms");
    let o = PhantomOptions { cases: 2, seed: 3, size: 32 };
    let mut calls = Vec::new();
    let folders = write_dataset(&root, &o, &mut |d, t| calls.push((d, t))).unwrap();
    assert_eq!(calls, vec![(1, 2), (2, 2)]);
    assert_eq!(folders, vec![root.join("Phantom_000"), root.join("Phantom_001")]);
    let extra = folders[0].join("notes.txt");
    std::fs::write(&extra, "keep me").unwrap();
    for (index, folder) in folders.iter().enumerate() {
        let case = generate_case(&o, index).unwrap();
        for (m, img) in &case.images {
            let back = read_image(folder.join(format!("{}_{m}.nii.gz", case.id))).unwrap();
            assert_eq!(back.geometry.dims, [32; 3]);
            assert_eq!(back.geometry.orientation(), "LPS");
            assert!(back.geometry.difference(&img.geometry, 1e-6).is_none());
            assert_eq!(back.source.datatype, "float32");
            assert!(back.data.iter().zip(&img.data).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
        let seg = read_labels(folder.join(format!("{}_seg.nii.gz", case.id))).unwrap();
        assert_eq!(seg.geometry.orientation(), "LPS");
        assert_eq!(seg.data, case.label.data);
    }
    // A second run overwrites its own files and leaves others alone.
    write_dataset(&root, &o, &mut |_, _| {}).unwrap();
    assert_eq!(std::fs::read_to_string(&extra).unwrap(), "keep me");
    let names: Vec<String> = std::fs::read_dir(&folders[1])
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 5, "{names:?}");
}

#[test]
fn bad_options_are_errors() {
    for size in [0, 15, 257, 10_000] {
        let o = PhantomOptions { size, ..PhantomOptions::default() };
        assert!(matches!(generate_case(&o, 0), Err(VolumeError::Invalid(_))), "size {size}");
        let dir = tempfile::tempdir().unwrap();
        assert!(write_dataset(dir.path(), &o, &mut |_, _| {}).is_err());
    }
    assert!(generate_case(&PhantomOptions { size: 16, ..PhantomOptions::default() }, 0).is_ok());
    let dir = tempfile::tempdir().unwrap();
    let none = PhantomOptions { cases: 0, ..PhantomOptions::default() };
    assert!(matches!(write_dataset(dir.path(), &none, &mut |_, _| {}), Err(VolumeError::Invalid(_))));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // A file where the output folder should be.
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    assert!(write_dataset(&file, &PhantomOptions { cases: 1, size: 16, seed: 0 }, &mut |_, _| {}).is_err());
}
