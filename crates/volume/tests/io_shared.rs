//! Reading the shared real data: BraTS 2018 NIfTI, the iSEG-like Analyze 7.5 fixture and the MSD 4-D fixture.

use magseg_volume::{read_image, read_labels, FileFormat};

#[test]
fn brats_case_reads_with_lps_geometry_and_labels() {
    let Some(root) = magseg_testkit::shared_data("brats_case_reads_with_lps_geometry_and_labels") else {
        return;
    };
    let dir = root.join("brats2018/Brats18_CBICA_ABM_1");
    let img = read_image(dir.join("Brats18_CBICA_ABM_1_flair.nii.gz")).unwrap();
    assert_eq!(img.geometry.dims, [240, 240, 155]);
    assert_eq!(img.channels, 1);
    assert_eq!(img.geometry.spacing, [1.0, 1.0, 1.0]);
    assert_eq!(img.geometry.orientation(), "LPS");
    assert_eq!(img.geometry.affine[1][3], 239.0);
    assert_eq!(img.source.datatype, "int16");
    let (lo, hi) = img.range().unwrap();
    assert!(lo >= 0.0 && hi > 100.0, "range {lo}..{hi}");
    let seg = read_labels(dir.join("Brats18_CBICA_ABM_1_seg.nii.gz")).unwrap();
    let values: Vec<i32> = seg.counts().iter().map(|c| c.0).collect();
    assert_eq!(values, vec![0, 1, 2, 4]);
    let total: usize = seg.counts().iter().map(|c| c.1).sum();
    assert_eq!(total, 240 * 240 * 155);
}

#[test]
fn iseg_analyze_pair_reads() {
    let Some(root) = magseg_testkit::shared_data("iseg_analyze_pair_reads") else {
        return;
    };
    let dir = root.join("fixtures/iseg_like_2mm");
    let t1 = read_image(dir.join("subject-1-T1.hdr")).unwrap();
    assert_eq!(t1.source.format, FileFormat::Analyze75);
    assert_eq!(t1.geometry.dims, [91, 109, 91]);
    assert_eq!(t1.channels, 1);
    assert_eq!(t1.geometry.spacing, [2.0, 2.0, 2.0]);
    let (lo, hi) = t1.range().unwrap();
    assert!(lo >= 0.0 && hi <= 1000.0 && hi > 100.0);
    // Reading through the .img name finds the header too.
    let lab = read_labels(dir.join("subject-1-label.img")).unwrap();
    let values: Vec<i32> = lab.counts().iter().map(|c| c.0).collect();
    assert_eq!(values, vec![0, 10, 150, 250]);
}

#[test]
fn msd_four_d_image_has_four_channels() {
    let Some(root) = magseg_testkit::shared_data("msd_four_d_image_has_four_channels") else {
        return;
    };
    let dir = root.join("fixtures/Task01_BrainTumour_like");
    let img = read_image(dir.join("imagesTr/BRATS_001.nii.gz")).unwrap();
    assert_eq!(img.geometry.dims, [240, 240, 155]);
    assert_eq!(img.channels, 4);
    let lab = read_labels(dir.join("labelsTr/BRATS_001.nii.gz")).unwrap();
    let values: Vec<i32> = lab.counts().iter().map(|c| c.0).collect();
    assert_eq!(values, vec![0, 1, 2, 3]);
}
