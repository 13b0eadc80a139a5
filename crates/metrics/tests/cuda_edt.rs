//! GPU EDT (feature `cuda`) against the CPU `edt_squared`: random masks, spheres, anisotropic spacing,
//! odd sizes, lines of length 1, empty and full masks.
//!
//! Tolerance: every voxel must agree within a relative 1e-6 (infinities must match exactly), and the
//! `*_bitwise` test asserts bit-for-bit equality — the kernels do the CPU's f64 arithmetic in the same
//! order and are compiled with `-fmad=false`. These tests FAIL (never skip) when no GPU is found:
//! they only run inside the GPU bundle (`cargo xtask gpu-bundle`).
#![cfg(feature = "cuda")]

mod common;

use common::{sphere, Rng};
use magseg_metrics::cuda::CudaEdt;
use magseg_metrics::{edt_squared, Grid};

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
