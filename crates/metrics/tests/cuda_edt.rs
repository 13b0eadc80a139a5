//! GPU EDT (feature `cuda`) against the CPU `edt_squared`: random masks, spheres, anisotropic spacing,
//! odd sizes, lines of length 1, empty and full masks. GPU surface distances / HD95 / HD / ASSD / Dice
//! (`CudaSurface`) against the CPU `surface_distances` and `compare_masks`: offset spheres, random
//! blobs, noise, anisotropic spacing, masks touching the grid border, one or both masks empty, both
//! connectivities and conventions, grids with one voxel along an axis, 240×240×155, buffer reuse.
//!
//! Tolerance: every EDT voxel must agree within a relative 1e-6 (infinities must match exactly), and
//! the `*_bitwise` test asserts bit-for-bit equality — the kernels do the CPU's f64 arithmetic in the
//! same order and are compiled with `-fmad=false`. The surface metrics are asserted EQUAL (no
//! tolerance): the same crop, surfaces and arithmetic give bit-identical distances, the GPU lists are
//! sorted into the CPU's order by their keys, so the percentile, maximum and even the ASSD sum are the
//! same to the bit. These tests FAIL (never skip) when no GPU is found: they only run inside the GPU
//! bundle (`cargo xtask gpu-bundle`).
#![cfg(feature = "cuda")]

mod common;

use common::{cuboid, ellipsoid, sphere, Rng};
use magseg_metrics::cuda::{CudaEdt, CudaSurface};
use magseg_metrics::{
    compare_masks, edt_squared, surface_distances, Connectivity, EvalOptions, Grid, Hd95Convention, PairMetrics,
};

fn gpu() -> CudaEdt {
    CudaEdt::new(0).unwrap_or_else(|e| panic!("these tests need a CUDA GPU (device 0): {e}"))
}

/// Largest relative difference (0 when equal, including equal infinities) and the number of voxels
/// whose bits differ; panics on a length mismatch or one-sided infinity.
fn compare(g: &[f32], c: &[f32]) -> (f64, usize) {
    assert_eq!(g.len(), c.len());
    let mut worst = 0.0f64;
    let mut differ = 0;
    for (v, (&a, &b)) in g.iter().zip(c).enumerate() {
        if a.to_bits() != b.to_bits() {
            differ += 1;
            assert!(a.is_finite() && b.is_finite(), "voxel {v}: gpu {a} vs cpu {b}");
            worst = worst.max(f64::from((a - b).abs()) / f64::from(b.abs()).max(f64::MIN_POSITIVE));
        }
    }
    (worst, differ)
}

fn check(edt: &CudaEdt, f: &[bool], grid: &Grid) -> usize {
    let g = edt.edt_squared(f, grid).expect("gpu edt");
    let c = edt_squared(f, grid).expect("cpu edt");
    let (worst, differ) = compare(&g, &c);
    assert!(worst <= 1e-6, "{grid:?}: relative difference {worst:e} at {differ} voxels");
    differ
}

#[test]
fn random_masks_odd_sizes_anisotropic() {
    let edt = gpu();
    let mut rng = Rng::new(11);
    for (dims, spacing, p) in [
        ([17, 23, 9], [1.0, 1.0, 1.0], 0.05),
        ([31, 7, 13], [0.7, 1.3, 2.9], 0.01),
        ([1, 40, 33], [1.2, 0.5, 3.0], 0.02),
        ([45, 1, 21], [0.9, 1.0, 2.2], 0.03),
        ([29, 35, 1], [1.1, 0.8, 5.0], 0.01),
        ([64, 48, 40], [0.5, 0.75, 3.3], 0.001),
        ([3, 2, 101], [2.0, 2.0, 0.3], 0.02),
    ] {
        let grid = Grid::new(dims, spacing);
        let f = rng.mask(dims.iter().product(), p);
        check(&edt, &f, &grid);
    }
}

#[test]
fn spheres_isotropic_and_anisotropic() {
    let edt = gpu();
    for spacing in [[1.0, 1.0, 1.0], [0.8, 1.1, 2.5], [3.0, 0.6, 1.0]] {
        let grid = Grid::new([60, 53, 47], spacing);
        let s = sphere(&grid, [30.0, 25.0, 22.0], 12.0);
        let complement: Vec<bool> = s.iter().map(|b| !b).collect();
        check(&edt, &s, &grid);
        check(&edt, &complement, &grid);
    }
}

#[test]
fn empty_and_full_masks() {
    let edt = gpu();
    let grid = Grid::new([13, 9, 7], [1.0, 2.0, 0.5]);
    let n = 13 * 9 * 7;
    let empty = edt.edt_squared(&vec![false; n], &grid).unwrap();
    assert!(empty.iter().all(|d| *d == f32::INFINITY), "no feature: every distance is infinite");
    check(&edt, &vec![false; n], &grid);
    let full = edt.edt_squared(&vec![true; n], &grid).unwrap();
    assert!(full.iter().all(|d| *d == 0.0), "all features: every distance is 0");
    let single: Vec<bool> = (0..n).map(|v| v == 5 + 13 * (4 + 9 * 3)).collect();
    check(&edt, &single, &grid);
    assert!(edt.edt_squared(&[], &Grid::unit([0, 4, 4])).unwrap().is_empty());
    assert!(edt.edt_squared(&[true; 3], &Grid::unit([2, 2, 2])).is_err(), "length mismatch is an error");
}

#[test]
fn device_buffers_rerun_gives_same_result() {
    let edt = gpu();
    let grid = Grid::new([40, 30, 20], [1.0, 1.5, 2.0]);
    let f = Rng::new(5).mask(40 * 30 * 20, 0.01);
    let mut d = edt.upload(&f, &grid).unwrap();
    edt.run(&mut d).unwrap();
    edt.synchronize().unwrap();
    let first = edt.download(&d).unwrap();
    edt.run(&mut d).unwrap();
    assert_eq!(first, edt.download(&d).unwrap(), "run() is repeatable on the same buffers");
    assert_eq!(first, edt_squared(&f, &grid).unwrap());
}

#[test]
fn matches_cpu_bitwise() {
    let edt = gpu();
    let mut rng = Rng::new(3);
    let grid = Grid::new([50, 41, 37], [0.9375, 0.9375, 3.3]);
    let mut total = 0;
    for p in [0.0005, 0.02, 0.3] {
        total += check(&edt, &rng.mask(50 * 41 * 37, p), &grid);
    }
    let s = sphere(&grid, [25.0, 20.0, 18.0], 15.0);
    total += check(&edt, &s.iter().map(|b| !b).collect::<Vec<_>>(), &grid);
    assert_eq!(total, 0, "{total} voxels differ in their bits from the CPU (within 1e-6 relative)");
}

fn surf() -> CudaSurface {
    CudaSurface::new(0).unwrap_or_else(|e| panic!("these tests need a CUDA GPU (device 0): {e}"))
}

/// Bits of every field (NaN == NaN when the bits agree).
fn bits(m: &PairMetrics) -> ([u64; 4], Option<magseg_metrics::EmptyCase>) {
    ([m.dice, m.hd95, m.hd, m.assd].map(f64::to_bits), m.note)
}

/// GPU against CPU for every connectivity and convention: lists equal (values and order), metrics
/// equal to the bit, `hd95` equal to `compare_masks(..).hd95`. Returns the CPU's MONAI metrics.
fn check_pair(g: &CudaSurface, a: &[bool], b: &[bool], grid: &Grid) -> PairMetrics {
    let mut monai = None;
    for connectivity in [Connectivity::Six, Connectivity::TwentySix] {
        let gd = g.surface_distances(a, b, grid, connectivity).expect("gpu surface distances");
        let cd = surface_distances(a, b, grid, connectivity).expect("cpu surface distances");
        assert_eq!(gd.pred_to_ref.len(), cd.pred_to_ref.len(), "{grid:?} {connectivity:?}: pred surface size");
        assert_eq!(gd.ref_to_pred.len(), cd.ref_to_pred.len(), "{grid:?} {connectivity:?}: ref surface size");
        assert!(gd == cd, "{grid:?} {connectivity:?}: GPU surface distances differ from the CPU's");
        for hd95 in [Hd95Convention::Monai, Hd95Convention::Pooled] {
            let opts = EvalOptions { hd95, connectivity, ..EvalOptions::default() };
            let gm = g.compare_masks(a, b, grid, &opts).expect("gpu compare");
            let cm = compare_masks(a, b, grid, &opts).expect("cpu compare");
            assert_eq!(bits(&gm), bits(&cm), "{grid:?} {opts:?}: gpu {gm:?} vs cpu {cm:?}");
            let h = g.hd95(a, b, grid, &opts).expect("gpu hd95");
            assert_eq!(h.to_bits(), cm.hd95.to_bits(), "{grid:?} {opts:?}: gpu hd95 {h} vs cpu {}", cm.hd95);
            if connectivity == Connectivity::Six && hd95 == Hd95Convention::Monai {
                monai = Some(cm);
            }
        }
    }
    monai.expect("the loop covers the default options")
}

/// A union of `n` random ellipsoids inside `grid`.
fn blobs(rng: &mut Rng, grid: &Grid, n: usize) -> Vec<bool> {
    let mut m = vec![false; grid.dims.iter().product()];
    for _ in 0..n {
        let c = grid.dims.map(|d| rng.unit() * d as f64);
        let r = [0; 3].map(|_| 1.5 + rng.unit() * 9.0);
        for (x, y) in m.iter_mut().zip(ellipsoid(grid, c, r)) {
            *x |= y;
        }
    }
    m
}

#[test]
fn surface_metrics_offset_spheres_equal_cpu() {
    let g = surf();
    for spacing in [[1.0, 1.0, 1.0], [0.8, 1.1, 2.5], [3.0, 0.6, 1.0]] {
        let grid = Grid::new([60, 53, 47], spacing);
        let a = sphere(&grid, [30.0, 25.0, 22.0], 12.0);
        let b = sphere(&grid, [33.5, 27.0, 20.0], 10.0);
        let m = check_pair(&g, &a, &b, &grid);
        assert!(m.hd95.is_finite() && m.hd95 > 0.0 && m.note.is_none(), "{m:?}");
        let same = check_pair(&g, &a, &a, &grid);
        assert_eq!((same.dice, same.hd95, same.hd, same.assd), (1.0, 0.0, 0.0, 0.0));
    }
}

#[test]
fn surface_metrics_blobs_noise_anisotropic_equal_cpu() {
    let g = surf();
    let mut rng = Rng::new(21);
    for (dims, spacing) in
        [([48, 40, 36], [1.0, 1.0, 1.0]), ([37, 45, 29], [0.7, 1.3, 2.9]), ([64, 33, 20], [0.9375, 0.9375, 3.3])]
    {
        let grid = Grid::new(dims, spacing);
        let (a, b) = (blobs(&mut rng, &grid, 4), blobs(&mut rng, &grid, 5));
        check_pair(&g, &a, &b, &grid);
        let n = dims.iter().product();
        let (na, nb) = (rng.mask(n, 0.3), rng.mask(n, 0.02));
        check_pair(&g, &na, &nb, &grid);
        check_pair(&g, &a, &nb, &grid);
    }
}

#[test]
fn surface_metrics_border_and_thin_grids_equal_cpu() {
    let g = surf();
    let mut rng = Rng::new(8);
    // Masks touching every face of the grid, and a full mask.
    let grid = Grid::new([30, 26, 22], [1.2, 0.9, 2.0]);
    let a = cuboid(&grid, [0, 0, 0], [18, 26, 9]);
    let b = cuboid(&grid, [5, 3, 0], [30, 20, 22]);
    check_pair(&g, &a, &b, &grid);
    check_pair(&g, &vec![true; 30 * 26 * 22], &b, &grid);
    // One voxel along an axis: the j or k pass is skipped, as on the CPU.
    for (dims, spacing) in [
        ([29, 35, 1], [1.1, 0.8, 5.0]),
        ([45, 1, 21], [0.9, 1.0, 2.2]),
        ([1, 40, 33], [1.2, 0.5, 3.0]),
        ([3, 2, 101], [2.0, 2.0, 0.3]),
    ] {
        let grid = Grid::new(dims, spacing);
        let n = dims.iter().product();
        check_pair(&g, &rng.mask(n, 0.2), &rng.mask(n, 0.1), &grid);
    }
}

#[test]
fn surface_metrics_empty_masks_follow_the_policy() {
    let g = surf();
    let grid = Grid::new([20, 18, 16], [1.0, 1.5, 2.0]);
    let n = 20 * 18 * 16;
    let a = sphere(&grid, [10.0, 9.0, 8.0], 5.0);
    let empty = vec![false; n];
    // One empty: the penalty (and for the lists: an empty list and infinite distances).
    let m = check_pair(&g, &empty, &a, &grid);
    assert_eq!((m.dice, m.hd95), (0.0, magseg_metrics::BRATS_EMPTY_PENALTY_MM));
    check_pair(&g, &a, &empty, &grid);
    let d = g.surface_distances(&a, &empty, &grid, Connectivity::Six).unwrap();
    assert!(d.ref_to_pred.is_empty() && !d.pred_to_ref.is_empty());
    assert!(d.pred_to_ref.iter().all(|x| *x == f64::INFINITY));
    // Both empty: NaN with its note; a zero-voxel grid; input errors.
    let m = check_pair(&g, &empty, &empty, &grid);
    assert!(m.hd95.is_nan() && m.dice.is_nan());
    let opts = EvalOptions::default();
    assert!(g.hd95(&[], &[], &Grid::unit([0, 4, 4]), &opts).unwrap().is_nan());
    assert!(g.hd95(&a, &a[1..], &grid, &opts).is_err(), "length mismatch is an error");
    let bad = EvalOptions { empty_penalty_mm: -1.0, ..opts };
    assert!(g.hd95(&a, &a, &grid, &bad).is_err(), "invalid options are an error");
}

/// The benchmark case of `edt_gpu_bench` and `cupy_edt.py`: two r = 40 spheres, centres 10 voxels
/// apart, in 240×240×155; then a small case and the large one again (buffers reused and regrown).
#[test]
fn surface_metrics_240_240_155_and_buffer_reuse() {
    let g = surf();
    let grid = Grid::unit([240, 240, 155]);
    let a = sphere(&grid, [120.0, 110.0, 80.0], 40.0);
    let b = sphere(&grid, [126.0, 118.0, 80.0], 40.0);
    let m = check_pair(&g, &a, &b, &grid);
    assert!((8.0..=11.0).contains(&m.hd95), "{m:?}");
    let small = Grid::new([30, 20, 10], [1.0, 2.0, 3.0]);
    let mut rng = Rng::new(4);
    check_pair(&g, &rng.mask(6000, 0.1), &rng.mask(6000, 0.2), &small);
    let aniso = Grid::new([240, 240, 155], [0.9, 1.0, 1.5]);
    check_pair(&g, &a, &b, &aniso);
    let d = g.upload(&a, &b, &grid).unwrap();
    let opts = EvalOptions::default();
    assert_eq!(g.hd95_on(&d, &opts).unwrap().to_bits(), m.hd95.to_bits());
    assert_eq!(bits(&g.compare_masks_on(&d, &opts).unwrap()), bits(&m));
}
