//! The CUDA kernels of src/cuda/ (edt.cu, surface.cu) run on the CPU through a C++ emulation shim
//! (tests/emu/), checked against the CPU `surface_distances` bit for bit: surface extraction, bounding
//! boxes, voxel counts, the EDT passes and the gathered k pass, with the launch sequence of
//! src/cuda/surface.rs. A check of the kernels' logic without a GPU (the host-side Rust of
//! src/cuda/surface.rs is mirrored in tests/emu/driver.cpp, not run).
//!
//! Needs g++ with C++20 (about a minute); without g++ it prints `SKIPPED kernel emulation: ...` and
//! passes, so it can only fail when the emulated kernels and the CPU disagree (or g++ fails).

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use common::{cuboid, ellipsoid, Rng};
use magseg_metrics::{surface_distances, Connectivity, Grid};

/// Cases: per grid, offset ellipsoids, noise, random blobs, a mask touching the border, a full mask,
/// one or both masks empty; grids with one voxel along an axis and anisotropic spacing.
fn cases() -> Vec<(Grid, Vec<bool>, Vec<bool>)> {
    let mut rng = Rng::new(0x5eed);
    let mut cases = Vec::new();
    for (dims, sp) in [
        ([40usize, 36, 30], [1.0, 1.0, 1.0]),
        ([37, 45, 29], [0.7, 1.3, 2.9]),
        ([29, 35, 1], [1.1, 0.8, 5.0]),
        ([45, 1, 21], [0.9, 1.0, 2.2]),
        ([1, 40, 33], [1.2, 0.5, 3.0]),
        ([3, 2, 101], [2.0, 2.0, 0.3]),
        ([64, 33, 20], [0.9375, 0.9375, 3.3]),
    ] {
        let g = Grid::new(dims, sp);
        let n: usize = dims.iter().product();
        let c = dims.map(|d| d as f64 / 2.0);
        let a = ellipsoid(&g, c, [8.0, 9.0, 10.0]);
        let b = ellipsoid(&g, [c[0] + 2.5, c[1] - 1.0, c[2] + 0.5], [7.0, 11.0, 6.0]);
        let (noise1, noise2) = (rng.mask(n, 0.3), rng.mask(n, 0.02));
        let mut blobs = vec![false; n];
        for _ in 0..4 {
            let cc = dims.map(|d| rng.unit() * d as f64);
            let rr = [0; 3].map(|_| 1.5 + rng.unit() * 9.0);
            blobs.iter_mut().zip(ellipsoid(&g, cc, rr)).for_each(|(x, y)| *x |= y);
        }
        let border = cuboid(&g, [0, 0, 0], [dims[0] / 2 + 1, dims[1], dims[2]]);
        cases.push((g, a.clone(), b.clone()));
        cases.push((g, noise1, noise2.clone()));
        cases.push((g, blobs.clone(), b));
        cases.push((g, border, noise2));
        cases.push((g, vec![true; n], blobs));
        cases.push((g, vec![false; n], a.clone()));
        cases.push((g, a, vec![false; n]));
        cases.push((g, vec![false; n], vec![false; n]));
    }
    let g = Grid::new([120, 110, 70], [0.9, 1.0, 1.5]);
    cases.push((g, ellipsoid(&g, [60.0, 55.0, 35.0], [30.0; 3]), ellipsoid(&g, [64.0, 60.0, 33.0], [30.0; 3])));
    cases
}

/// The input file of tests/emu/driver.cpp (little endian): per case dims (3 u64), spacing (3 f64),
/// 26-connectivity (u8), both masks (bytes), the lengths (2 u64) and values (f64) of the CPU's lists,
/// |pred|, |reference|, |both| (3 u64).
fn write_cases(path: &PathBuf) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create the case file"));
    for (g, p, r) in cases() {
        for conn in [Connectivity::Six, Connectivity::TwentySix] {
            let d = surface_distances(&p, &r, &g, conn).expect("cpu surface distances");
            let mut w = |b: &[u8]| out.write_all(b).expect("write the case file");
            g.dims.iter().for_each(|x| w(&(*x as u64).to_le_bytes()));
            g.spacing.iter().for_each(|x| w(&x.to_le_bytes()));
            w(&[u8::from(conn == Connectivity::TwentySix)]);
            w(&p.iter().map(|b| u8::from(*b)).collect::<Vec<_>>());
            w(&r.iter().map(|b| u8::from(*b)).collect::<Vec<_>>());
            w(&(d.pred_to_ref.len() as u64).to_le_bytes());
            w(&(d.ref_to_pred.len() as u64).to_le_bytes());
            d.pred_to_ref.iter().chain(&d.ref_to_pred).for_each(|x| w(&x.to_le_bytes()));
            let count = |m: &[bool]| m.iter().filter(|x| **x).count() as u64;
            let both = p.iter().zip(&r).filter(|(a, b)| **a && **b).count() as u64;
            for x in [count(&p), count(&r), both] {
                w(&x.to_le_bytes());
            }
        }
    }
}

#[test]
fn emulated_kernels_match_cpu_surface_distances() {
    if Command::new("g++").arg("--version").output().is_err() {
        eprintln!("SKIPPED kernel emulation: no g++ on PATH (the CUDA kernels stay unchecked without a GPU)");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("magseg-kernel-emu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (bin, data) = (dir.join("driver"), dir.join("cases.bin"));
    let built = Command::new("g++")
        .args(["-std=c++20", "-O2", "-ffp-contract=off", "-pthread", "-w", "-I"])
        .arg(root.join("src/cuda"))
        .arg("-o")
        .arg(&bin)
        .arg(root.join("tests/emu/driver.cpp"))
        .status()
        .expect("run g++");
    assert!(built.success(), "g++ failed to build tests/emu/driver.cpp");
    write_cases(&data);
    let out = Command::new(&bin).arg(&data).output().expect("run the emulation driver");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success() && text.contains(" 0 failures"), "emulated kernels differ from the CPU:\n{text}");
}
