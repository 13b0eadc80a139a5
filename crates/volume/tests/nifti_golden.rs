//! Reader against nibabel: tiny fixtures written by data/fixtures/nifti/gen.py (datatypes, byte orders,
//! scaling, sform/qform, pairs, 4-D) must read back with nibabel's values and affine.

use std::path::PathBuf;

use magseg_volume::read_image;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/fixtures/nifti")
}

#[test]
fn every_fixture_matches_nibabel() {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&text).unwrap();
    let map = expected.as_object().unwrap();
    assert_eq!(map.len(), 9, "fixture list changed: update this test");
    for (name, exp) in map {
        let img = read_image(fixtures().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let shape: Vec<usize> = exp["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(&img.geometry.dims[..], &shape[..3], "{name}: dims");
        let channels = shape.get(3).copied().unwrap_or(1);
        assert_eq!(img.channels, channels, "{name}: channels");
        let values = exp["values"].as_array().unwrap();
        assert_eq!(values.len(), img.data.len(), "{name}: voxel count");
        for (i, (v, e)) in img.data.iter().zip(values).enumerate() {
            let e = e.as_f64().unwrap();
            let tol = 1e-5 * e.abs().max(1.0);
            assert!((f64::from(*v) - e).abs() <= tol, "{name}: voxel {i}: {v} vs nibabel {e}");
        }
        let aff = exp["affine"].as_array().unwrap();
        for r in 0..4 {
            for c in 0..4 {
                let e = aff[r][c].as_f64().unwrap();
                let got = img.geometry.affine[r][c];
                assert!((got - e).abs() < 1e-4, "{name}: affine[{r}][{c}] {got} vs nibabel {e}");
            }
        }
    }
}
