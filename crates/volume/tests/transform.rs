//! Integration tests of the preprocessing transforms: RAS reorientation, non-zero cropping, z-score
//! normalisation and resampling, on volumes built in memory.

use magseg_volume::transform::{
    apply_affine, crop, from_ras, invert_affine, nonzero_bbox, resample_image, resample_labels, resample_to,
    spacing_geometry, to_ras, uncrop, zscore_nonzero, BBox, Interp,
};
use magseg_volume::{identity, Affine, Geometry, Image, LabelMap, Volume};

fn affine(rows: [[f64; 4]; 3]) -> Affine {
    let mut m = identity();
    m[..3].copy_from_slice(&rows);
    m
}

fn lps() -> Affine {
    affine([[-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 239.0], [0.0, 0.0, 1.0, 0.0]])
}

/// Voxel axes P, S, L with anisotropic spacing (0.9, 2.5, 1.2).
fn psl() -> Affine {
    affine([[0.0, 0.0, -1.2, 10.0], [-0.9, 0.0, 0.0, 239.0], [0.0, 2.5, 0.0, -7.0]])
}

fn geometry(dims: [usize; 3], affine: Affine) -> Geometry {
    let spacing = magseg_volume::orientation::affine_spacing(&affine);
    Geometry { dims, spacing, affine }
}

/// A volume whose every voxel of every channel holds a distinct value.
fn distinct(dims: [usize; 3], affine: Affine, channels: usize) -> LabelMap {
    let n = dims.iter().product::<usize>() * channels;
    Volume::new((0..n as i32).collect(), geometry(dims, affine), channels).unwrap()
}

fn assert_affine_eq(a: &Affine, b: &Affine, tol: f64) {
    for r in 0..4 {
        for c in 0..4 {
            assert!((a[r][c] - b[r][c]).abs() <= tol, "{a:?} vs {b:?}");
        }
    }
}

/// Every voxel of `moved` sits at the world position of the voxel of `orig` with the same value.
fn assert_world_preserved(orig: &LabelMap, moved: &LabelMap) {
    let inv = invert_affine(&orig.geometry.affine).unwrap();
    let [nx, ny, nz] = moved.geometry.dims;
    for c in 0..moved.channels {
        for k in 0..nz {
            for j in 0..ny {
                for i in 0..nx {
                    let p = [i as f64, j as f64, k as f64];
                    let w = apply_affine(&moved.geometry.affine, p);
                    let o = apply_affine(&inv, w);
                    let oi = o.map(|x| x.round());
                    for a in 0..3 {
                        assert!((o[a] - oi[a]).abs() < 1e-9, "{o:?} not on the grid");
                    }
                    let idx = orig.geometry.index(oi[0] as usize, oi[1] as usize, oi[2] as usize);
                    assert_eq!(moved.channel(c)[moved.geometry.index(i, j, k)], orig.channel(c)[idx]);
                }
            }
        }
    }
}

#[test]
fn to_ras_round_trip_lps_psl_and_ras() {
    let ras = geometry([4, 5, 3], identity()).affine;
    for (m, name) in [(lps(), "LPS"), (psl(), "PSL"), (ras, "RAS")] {
        let v = distinct([4, 5, 3], m, 2);
        assert_eq!(v.geometry.orientation(), name);
        let (r, rec) = to_ras(&v);
        assert_eq!(r.geometry.orientation(), "RAS", "{name}");
        assert_eq!(r.channels, 2);
        assert_eq!(rec.is_identity(), name == "RAS");
        assert_world_preserved(&v, &r);
        let back = from_ras(&r, &rec).unwrap();
        assert_eq!(back.data, v.data, "{name}");
        assert_eq!(back.geometry.dims, v.geometry.dims);
        assert_eq!(back.geometry.spacing, v.geometry.spacing);
        assert_affine_eq(&back.geometry.affine, &v.geometry.affine, 1e-9);
    }
}

#[test]
fn to_ras_permutes_dims_spacing_and_affine_exactly() {
    let v = distinct([4, 5, 3], psl(), 1);
    let (r, rec) = to_ras(&v);
    // P S L → R A S: R from axis 2 (flipped), A from axis 0 (flipped), S from axis 1.
    assert_eq!(rec.permutation(), [2, 0, 1]);
    assert_eq!(rec.flips(), [true, true, false]);
    assert_eq!(r.geometry.dims, [3, 4, 5]);
    for (got, want) in r.geometry.spacing.iter().zip([1.2, 0.9, 2.5]) {
        assert!((got - want).abs() < 1e-12);
    }
    let want = affine([[1.2, 0.0, 0.0, 10.0 - 1.2 * 2.0], [0.0, 0.9, 0.0, 239.0 - 0.9 * 3.0], [0.0, 0.0, 2.5, -7.0]]);
    assert_affine_eq(&r.geometry.affine, &want, 1e-12);

    let (l, rec) = to_ras(&distinct([4, 5, 3], lps(), 1));
    let want = affine([[1.0, 0.0, 0.0, -3.0], [0.0, 1.0, 0.0, 235.0], [0.0, 0.0, 1.0, 0.0]]);
    assert_affine_eq(&l.geometry.affine, &want, 1e-12);
    assert_eq!(rec.original().affine, lps());
}

#[test]
fn from_ras_rejects_other_grids() {
    let (r, rec) = to_ras(&distinct([4, 5, 3], lps(), 1));
    let other = distinct([4, 5, 4], r.geometry.affine, 1);
    assert!(from_ras(&other, &rec).is_err());
    let mut shifted = r.clone();
    shifted.geometry.affine[0][3] += 1.0;
    assert!(from_ras(&shifted, &rec).is_err());
    // A one-channel prediction on the RAS grid of a two-channel image comes back too.
    let (r2, rec2) = to_ras(&distinct([4, 5, 3], psl(), 2));
    let pred = r2.with_data(r2.channel(1).to_vec(), 1).unwrap();
    let back = from_ras(&pred, &rec2).unwrap();
    assert_eq!(back.data, distinct([4, 5, 3], psl(), 2).channel(1));
}

fn boxed_image() -> Image {
    // Channel 0 non-zero in x 2..4, y 1..3, z 3..4; channel 1 in x 3..6, y 2..5, z 1..2.
    let g = geometry([8, 7, 6], lps());
    let mut img = Volume::new(vec![0.0f32; 8 * 7 * 6 * 2], g.clone(), 2).unwrap();
    for (c, lo, hi) in [(0, [2, 1, 3], [4, 3, 4]), (1, [3, 2, 1], [6, 5, 2])] {
        for k in lo[2]..hi[2] {
            for j in lo[1]..hi[1] {
                for i in lo[0]..hi[0] {
                    img.channel_mut(c)[g.index(i, j, k)] = (1 + i + 10 * j + 100 * k) as f32;
                }
            }
        }
    }
    img
}

#[test]
fn nonzero_bbox_spans_all_channels() {
    let img = boxed_image();
    let b = nonzero_bbox(&img).unwrap();
    assert_eq!(b, BBox { start: [2, 1, 1], end: [6, 5, 4] });
    let zero = Volume::new(vec![0.0f32; 8], Geometry::from_spacing([2, 2, 2], [1.0; 3]), 1);
    assert!(nonzero_bbox(&zero.unwrap()).is_none());
}

#[test]
fn crop_keeps_world_positions_and_uncrop_restores() {
    let img = boxed_image();
    let b = nonzero_bbox(&img).unwrap();
    let c = crop(&img, &b).unwrap();
    assert_eq!(c.geometry.dims, [4, 4, 3]);
    assert_eq!(c.channels, 2);
    // Voxel (0,0,0) of the crop is voxel `start` of the original, at the same world position.
    let w0 = apply_affine(&c.geometry.affine, [0.0; 3]);
    let w1 = apply_affine(&img.geometry.affine, b.start.map(|x| x as f64));
    assert_eq!(w0, w1);
    let as_labels = |v: &Image| v.with_data(v.data.iter().map(|&x| x as i32).collect(), v.channels);
    assert_world_preserved(&as_labels(&img).unwrap(), &as_labels(&c).unwrap());
    let back = uncrop(&c, &b, &img.geometry, 0.0).unwrap();
    assert_eq!(back.data, img.data);
    assert_eq!(back.geometry, img.geometry);
    // Fill shows outside the box.
    let filled = uncrop(&c, &b, &img.geometry, -1.0).unwrap();
    assert_eq!(filled.data[0], -1.0);
    // Wrong grid or box: errors, not panics.
    assert!(uncrop(&c, &BBox::full([4, 4, 3]), &img.geometry, 0.0).is_err());
    let too_big = BBox { start: [6, 0, 0], end: [10, 4, 3] };
    assert!(crop(&img, &too_big).is_err());
    assert!(uncrop(&c, &too_big, &img.geometry, 0.0).is_err());
}

#[test]
fn zscore_over_nonzero_voxels_per_channel() {
    let mut img = boxed_image();
    let orig = img.clone();
    zscore_nonzero(&mut img);
    for c in 0..2 {
        let vals: Vec<f64> = orig.channel(c).iter().filter(|&&v| v != 0.0).map(|&v| f64::from(v)).collect();
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let sd = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64).sqrt();
        for (&o, &z) in orig.channel(c).iter().zip(img.channel(c)) {
            if o == 0.0 {
                assert_eq!(z, 0.0);
            } else {
                assert!((f64::from(z) - (f64::from(o) - mean) / sd).abs() < 1e-5);
            }
        }
        let z: Vec<f64> =
            img.channel(c).iter().zip(orig.channel(c)).filter(|(_, &o)| o != 0.0).map(|(&z, _)| f64::from(z)).collect();
        let m = z.iter().sum::<f64>() / z.len() as f64;
        let s = (z.iter().map(|v| (v - m).powi(2)).sum::<f64>() / z.len() as f64).sqrt();
        assert!(m.abs() < 1e-6 && (s - 1.0).abs() < 1e-5, "{m} {s}");
    }
}

#[test]
fn resample_to_same_geometry_is_identity() {
    let v = distinct([5, 4, 3], psl(), 2);
    let img = v.with_data(v.data.iter().map(|&x| x as f32 * 0.37 - 3.0).collect(), 2);
    let img = img.unwrap();
    let r = resample_to(&img, &img.geometry, Interp::Linear, -99.0).unwrap();
    assert_eq!(r.data, img.data);
    let r = resample_to(&v, &v.geometry, Interp::Nearest, -99).unwrap();
    assert_eq!(r.data, v.data);
}

#[test]
fn trilinear_reproduces_linear_functions() {
    let src_aff = affine([[0.0, 0.1, -1.2, 10.0], [-0.9, 0.0, 0.05, 20.0], [0.0, 2.5, 0.0, -7.0]]);
    let g = geometry([12, 10, 9], src_aff);
    let f = |w: [f64; 3]| 0.3 * w[0] - 0.7 * w[1] + 0.11 * w[2] + 5.0;
    let mut data = Vec::new();
    for k in 0..9 {
        for j in 0..10 {
            for i in 0..12 {
                data.push(f(apply_affine(&src_aff, [i as f64, j as f64, k as f64])) as f32);
            }
        }
    }
    let img = Volume::new(data, g.clone(), 1).unwrap();
    // A rotated RAS grid at another spacing overlapping the source.
    let (t, s) = (0.2f64, [0.7, 0.6, 0.8]);
    let tgt_aff = affine([
        [t.cos() * s[0], -t.sin() * s[1], 0.0, -2.0],
        [t.sin() * s[0], t.cos() * s[1], 0.0, 12.0],
        [0.0, 0.0, s[2], 0.0],
    ]);
    let target = geometry([14, 12, 20], tgt_aff);
    let r = resample_to(&img, &target, Interp::Linear, 0.0).unwrap();
    let inv = invert_affine(&src_aff).unwrap();
    let mut checked = 0;
    for k in 0..20 {
        for j in 0..12 {
            for i in 0..14 {
                let w = apply_affine(&tgt_aff, [i as f64, j as f64, k as f64]);
                let p = apply_affine(&inv, w);
                if (0..3).all(|a| p[a] >= 0.0 && p[a] <= (g.dims[a] - 1) as f64) {
                    let got = f64::from(r.data[target.index(i, j, k)]);
                    assert!((got - f(w)).abs() < 1e-4, "{got} vs {}", f(w));
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 100, "only {checked} interior points");
}

#[test]
fn nearest_label_up_then_down_is_identity() {
    let g = geometry([5, 4, 3], lps());
    let labels: Vec<i32> = (0..60).map(|x| (x * 7) % 5).collect();
    let l = Volume::new(labels, g, 1).unwrap();
    let up = resample_labels(&l, [0.5; 3]).unwrap();
    assert_eq!(up.geometry.dims, [10, 8, 6]);
    assert!(resample_image(&l.with_data(vec![0.0f32; 60], 1).unwrap(), [0.5; 3]).is_ok());
    let down = resample_labels(&up, [1.0; 3]).unwrap();
    assert_eq!(down.geometry.dims, l.geometry.dims);
    assert_eq!(down.data, l.data);
    assert_affine_eq(&down.geometry.affine, &l.geometry.affine, 1e-12);
    assert!(resample_to(&l, &l.geometry, Interp::Linear, 0).is_err());
}

#[test]
fn spacing_geometry_dims_direction_and_origin() {
    let g = geometry([240, 240, 155], lps());
    let t = spacing_geometry(&g, [1.0, 0.8, 2.5]).unwrap();
    assert_eq!(t.dims, [240, 300, 62]);
    assert_eq!(t.spacing, [1.0, 0.8, 2.5]);
    let want = affine([[-1.0, 0.0, 0.0, 0.0], [0.0, -0.8, 0.0, 239.0], [0.0, 0.0, 2.5, 0.0]]);
    assert_affine_eq(&t.affine, &want, 1e-12);
    let g = geometry([256, 256, 24], psl());
    let t = spacing_geometry(&g, [1.0, 0.8, 2.5]).unwrap();
    // 256·0.9/1 = 230.4, 256·2.5/0.8 = 800, 24·1.2/2.5 = 11.52.
    assert_eq!(t.dims, [230, 800, 12]);
    assert_eq!(t.geometry_origin(), g.geometry_origin());
    assert_eq!(t.orientation(), "PSL");
    let tiny = geometry([3, 3, 1], identity());
    assert_eq!(spacing_geometry(&tiny, [10.0; 3]).unwrap().dims, [1, 1, 1]);
}

trait Origin {
    fn geometry_origin(&self) -> [f64; 3];
}
impl Origin for Geometry {
    fn geometry_origin(&self) -> [f64; 3] {
        apply_affine(&self.affine, [0.0; 3])
    }
}

#[test]
fn bad_spacing_is_an_error() {
    let g = geometry([4, 4, 4], identity());
    let img = Volume::new(vec![1.0f32; 64], g.clone(), 1).unwrap();
    for s in [[0.0, 1.0, 1.0], [1.0, -1.0, 1.0], [1.0, 1.0, f64::NAN], [f64::INFINITY, 1.0, 1.0], [1e-12, 1e-12, 1e-12]]
    {
        assert!(spacing_geometry(&g, s).is_err(), "{s:?}");
        assert!(resample_image(&img, s).is_err(), "{s:?}");
    }
    let mut singular = g.clone();
    singular.affine[2][2] = 0.0;
    assert!(resample_to(&img, &singular, Interp::Linear, 0.0).is_err());
}

#[test]
fn full_pipeline_round_trip() {
    let v = distinct([6, 7, 5], psl(), 1);
    let (r, rec) = to_ras(&v);
    let b = BBox { start: [1, 2, 0], end: [4, 6, 5] };
    let c = crop(&r, &b).unwrap();
    let u = uncrop(&c, &b, rec.ras_geometry(), -1).unwrap();
    let back = from_ras(&u, &rec).unwrap();
    assert_eq!(back.geometry, v.geometry);
    let inside = back.data.iter().filter(|&&x| x >= 0).count();
    assert_eq!(inside, 3 * 4 * 5);
    for (a, b) in back.data.iter().zip(&v.data) {
        assert!(*a == -1 || a == b);
    }
}
