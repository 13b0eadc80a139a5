//! Times the full-volume EDT and HD95 of the two 240×240×155 spheres of ../shared/peers/cpu_peer.py
//! (release build: `cargo run --release -p magseg-metrics --example timing [reps]`).

use std::time::Instant;

use magseg_metrics::{compare_masks, edt, surface_distances, EvalOptions, Grid, Hd95Convention};

/// The peer's masks: numpy axes (0, 1, 2) of shape (240, 240, 155) become i, j, k.
fn spheres() -> (Vec<bool>, Vec<bool>, Grid) {
    let grid = Grid::unit([240, 240, 155]);
    let [nx, ny, nz] = grid.dims;
    let (mut a, mut b) = (vec![false; nx * ny * nz], vec![false; nx * ny * nz]);
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let (x, y, z) = (i as f64, j as f64, k as f64);
                let idx = i + nx * (j + ny * k);
                a[idx] = (x - 120.0).powi(2) + (y - 110.0).powi(2) + (z - 80.0).powi(2) < 1600.0;
                b[idx] = (x - 124.0).powi(2) / 1.1 + (y - 108.0).powi(2) + (z - 82.0).powi(2) < 1444.0;
            }
        }
    }
    (a, b, grid)
}

fn median_time<T>(reps: usize, mut f: impl FnMut() -> T) -> f64 {
    std::hint::black_box(f());
    let mut ts: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed().as_secs_f64()
        })
        .collect();
    ts.sort_by(f64::total_cmp);
    ts[ts.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let reps: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(11);
    let (a, b, grid) = spheres();
    println!("threads: {}, reps: {reps}", rayon::current_num_threads());
    let t = median_time(reps, || edt(&a, &grid));
    let d = edt(&a, &grid)?;
    let (sum, max) = d.iter().fold((0.0f64, 0.0f32), |(s, m), v| (s + f64::from(*v), m.max(*v)));
    println!("edt 240x240x155 (features = sphere a): {:.1} ms  (sum {sum:.1}, max {max:.4})", t * 1e3);
    let mut empty = vec![false; a.len()];
    empty[0] = true;
    let t = median_time(reps, || edt(&empty, &grid));
    println!("edt 240x240x155 (one feature voxel): {:.1} ms", t * 1e3);
    for conv in [Hd95Convention::Monai, Hd95Convention::Pooled] {
        let opts = EvalOptions { hd95: conv, ..EvalOptions::default() };
        let m = compare_masks(&b, &a, &grid, &opts)?;
        let t = median_time(reps, || compare_masks(&b, &a, &grid, &opts));
        println!(
            "compare_masks {conv:?}: {:.2} ms  dice {:.6} hd95 {:.4} hd {:.4} assd {:.4}",
            t * 1e3,
            m.dice,
            m.hd95,
            m.hd,
            m.assd
        );
    }
    let t = median_time(reps, || surface_distances(&b, &a, &grid, Default::default()));
    println!("surface_distances only: {:.2} ms", t * 1e3);
    Ok(())
}
