//! Malformed and hostile inputs give typed errors, never panics; writing is atomic and protects inputs.

use std::fs;
use std::path::{Path, PathBuf};

use magseg_volume::{
    read_image, read_image_unchecked, read_labels, write_image, write_labels, Geometry, Image, LabelMap, Volume,
    VolumeError,
};

fn lps() -> Geometry {
    let mut g = Geometry::from_spacing([6, 5, 4], [1.0, 1.0, 2.0]);
    g.affine[0][0] = -1.0;
    g.affine[1][1] = -1.0;
    g.affine[1][3] = 4.0;
    g
}

fn image() -> Image {
    let data = (0..120).map(|v| v as f32 * 0.5 - 3.0).collect();
    Volume::new(data, lps(), 1).unwrap()
}

fn write_nii(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    write_image(&p, &image(), &[]).unwrap();
    p
}

#[test]
fn truncated_gzip_is_reported_as_truncated() {
    let dir = tempfile::tempdir().unwrap();
    // Random-ish data so the compressed stream is long enough to cut in the middle of the voxels.
    let data: Vec<f32> = (0..120u32).map(|v| (v.wrapping_mul(2_654_435_761) % 1000) as f32).collect();
    let img = Volume::new(data, lps(), 1).unwrap();
    let p = dir.path().join("a.nii.gz");
    write_image(&p, &img, &[]).unwrap();
    let bytes = fs::read(&p).unwrap();
    let cut = dir.path().join("cut.nii.gz");
    fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    match read_image(&cut) {
        Err(VolumeError::Truncated { expected, found, .. }) => assert!(found < expected, "{found} < {expected}"),
        Err(VolumeError::Format { reason, .. }) => assert!(reason.contains("decode"), "{reason}"),
        other => panic!("expected a truncation error, got {other:?}"),
    }
}

#[test]
fn data_shorter_than_header_says() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_nii(dir.path(), "a.nii");
    let bytes = fs::read(&p).unwrap();
    fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
    match read_image(&p) {
        Err(VolumeError::Truncated { expected, found, offset, .. }) => {
            assert_eq!(expected, 480);
            assert_eq!(found, 470);
            assert_eq!(offset, 352);
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
}

fn set_vox_offset(p: &Path, v: f32) {
    let mut bytes = fs::read(p).unwrap();
    bytes[108..112].copy_from_slice(&v.to_le_bytes());
    fs::write(p, bytes).unwrap();
}

#[test]
fn wrong_vox_offset() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_nii(dir.path(), "a.nii");
    set_vox_offset(&p, 100.0);
    let err = read_image(&p).unwrap_err();
    assert!(matches!(&err, VolumeError::Format { reason, .. } if reason.contains("vox_offset")), "{err}");
    set_vox_offset(&p, 1.0e6);
    let err = read_image(&p).unwrap_err();
    assert!(matches!(err, VolumeError::Truncated { found: 0, .. }), "{err}");
    set_vox_offset(&p, 352.5);
    assert!(read_image(&p).is_err());
}

#[test]
fn nan_voxels_in_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let mut img = image();
    img.data[7] = f32::NAN;
    img.data[50] = f32::INFINITY;
    let p = dir.path().join("nan.nii.gz");
    write_image(&p, &img, &[]).unwrap();
    match read_image(&p) {
        Err(e @ VolumeError::NonFinite { .. }) => {
            let VolumeError::NonFinite { count, first, .. } = &e else { unreachable!() };
            assert_eq!(*count, 2);
            assert_eq!(*first, [1, 1, 0, 0]);
            assert!(e.to_string().contains("nan.nii.gz"), "{e}");
        }
        other => panic!("expected NonFinite, got {other:?}"),
    }
    // The unchecked reader still reads it (for reports).
    assert!(read_image_unchecked(&p).unwrap().data[7].is_nan());
}

#[test]
fn nifti2_and_garbage_and_unsupported_types() {
    let dir = tempfile::tempdir().unwrap();
    let mut n2 = vec![0u8; 600];
    n2[..4].copy_from_slice(&540i32.to_le_bytes());
    let p2 = dir.path().join("n2.nii");
    fs::write(&p2, &n2).unwrap();
    let err = read_image(&p2).unwrap_err();
    assert!(matches!(err, VolumeError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("NIfTI-2"));

    let junk = dir.path().join("junk.nii.gz");
    fs::write(&junk, b"this is not gzip at all").unwrap();
    assert!(matches!(read_image(&junk).unwrap_err(), VolumeError::Format { .. }));
    let empty = dir.path().join("empty.nii");
    fs::write(&empty, b"").unwrap();
    assert!(matches!(read_image(&empty).unwrap_err(), VolumeError::Format { .. }));

    // Complex64 (datatype 32) is valid NIfTI but not an image we segment.
    let p = write_nii(dir.path(), "c.nii");
    let mut bytes = fs::read(&p).unwrap();
    bytes[70..72].copy_from_slice(&32i16.to_le_bytes());
    bytes[72..74].copy_from_slice(&64i16.to_le_bytes());
    fs::write(&p, bytes).unwrap();
    assert!(matches!(read_image(&p).unwrap_err(), VolumeError::Unsupported { .. }));

    let txt = dir.path().join("a.txt");
    fs::write(&txt, b"x").unwrap();
    assert!(read_image(&txt).is_err());
    assert!(matches!(read_image(dir.path().join("missing.nii.gz")).unwrap_err(), VolumeError::Io { .. }));
}

#[test]
fn pair_without_image_file() {
    let dir = tempfile::tempdir().unwrap();
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/fixtures/nifti/pair_i16.hdr");
    let hdr = dir.path().join("lonely.hdr");
    fs::copy(src, &hdr).unwrap();
    let err = read_image(&hdr).unwrap_err();
    assert!(err.to_string().contains("lonely.img"), "{err}");
}

#[test]
fn labels_must_be_whole_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_nii(dir.path(), "f.nii.gz");
    let err = read_labels(&p).unwrap_err();
    assert!(err.to_string().contains("whole numbers"), "{err}");
}

#[test]
fn write_round_trip_keeps_geometry_and_picks_label_types() {
    let dir = tempfile::tempdir().unwrap();
    let img = image();
    let p = dir.path().join("img.nii.gz");
    write_image(&p, &img, &[]).unwrap();
    let back = read_image(&p).unwrap();
    assert_eq!(back.data, img.data);
    assert_eq!(back.geometry, img.geometry);
    assert_eq!(back.source.datatype, "float32");

    let labels: LabelMap = img.with_data((0..120).map(|v| [0, 1, 2, 4][v % 4]).collect(), 1).unwrap();
    let lp = dir.path().join("seg.nii.gz");
    write_labels(&lp, &labels, &[]).unwrap();
    let lb = read_labels(&lp).unwrap();
    assert_eq!(lb.source.datatype, "uint8");
    assert_eq!(lb.data, labels.data);
    assert_eq!(lb.geometry, labels.geometry);

    let wide = img.with_data((0..120i32).map(|v| v * 100 - 300).collect(), 1).unwrap();
    write_labels(&lp, &wide, &[]).unwrap();
    let wb = read_labels(&lp).unwrap();
    assert_eq!(wb.source.datatype, "int16");
    assert_eq!(wb.data, wide.data);

    // A result written "over" a file read from disk keeps that file's codes (sform 2 / qform 2 here).
    let again = read_image(&p).unwrap();
    let out = dir.path().join("out.nii");
    write_image(&out, &again, &[]).unwrap();
    let o = read_image(&out).unwrap();
    assert_eq!(o.source.header.sform_code, again.source.header.sform_code);
    assert_eq!(o.source.header.qform_code, again.source.header.qform_code);
    assert_eq!(o.geometry, again.geometry);
    // No temporary files left behind.
    let names: Vec<String> =
        fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
}

#[test]
fn writing_refuses_to_overwrite_an_input() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_nii(dir.path(), "in.nii.gz");
    let before = fs::read(&p).unwrap();
    let img = read_image(&p).unwrap();
    // The image's own source file is protected...
    let err = write_image(&p, &img, &[]).unwrap_err();
    assert!(err.to_string().contains("refusing to overwrite"), "{err}");
    // ...and so is any file the caller names as an input.
    let other = write_nii(dir.path(), "other.nii.gz");
    assert!(write_image(&other, &image(), std::slice::from_ref(&other)).is_err());
    assert_eq!(fs::read(&p).unwrap(), before);
    assert!(write_image(dir.path().join("x.img"), &image(), &[]).is_err());
    assert!(write_image(dir.path().join("no/such/dir/x.nii.gz"), &image(), &[]).is_err());
}
