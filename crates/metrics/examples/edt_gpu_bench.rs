//! Times the GPU EDT (feature `cuda`) on 240×240×155 with the sphere of ../shared/peers/gpu_peer.py
//! section 3 (centre (120, 110, 80), radius 40; the peer's scipy-style EDT of the complement `~m` is the
//! distance to the sphere, i.e. our EDT with the sphere as features), warm-up then the median
//! of 20 runs on device-resident buffers, plus the CPU `edt_squared` once. Then HD95 (MONAI convention,
//! 6-neighbourhood surfaces, 1 mm) of two r = 40 spheres (strict <) at (120, 110, 80) and (126, 118, 80),
//! as xtask/peers/cupy_edt.py computes it: GPU with the masks already on the device (median of 20), GPU
//! from host slices (median of 5, device buffers reused), CPU `compare_masks` (median of 3). Prints one
//! JSON line. `cargo run --release -p magseg-metrics --features cuda --example edt_gpu_bench [ordinal]`

use std::time::Instant;

use magseg_metrics::cuda::{CudaEdt, CudaSurface};
use magseg_metrics::{compare_masks, edt_squared, EvalOptions, Grid};

fn main() {
    if let Err(e) = run() {
        eprintln!("edt_gpu_bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let ordinal = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(0usize);
    let grid = Grid::unit([240, 240, 155]);
    let [nx, ny, nz] = grid.dims;
    // numpy axes (0, 1, 2) of the peer's (240, 240, 155) array are i, j, k. scipy/CuPy measure the
    // distance to the nearest zero of their input ~m, i.e. to the nearest sphere voxel: features = m.
    let sphere = |c: [i64; 3]| {
        let mut m = vec![false; nx * ny * nz];
        for k in 0..nz {
            for j in 0..ny {
                for i in 0..nx {
                    let r2 = (i as i64 - c[0]).pow(2) + (j as i64 - c[1]).pow(2) + (k as i64 - c[2]).pow(2);
                    m[i + nx * (j + ny * k)] = r2 < 1600;
                }
            }
        }
        m
    };
    let features = sphere([120, 110, 80]);
    let gpu = CudaEdt::new(ordinal)?;
    let name = gpu.device_name().unwrap_or_else(|e| format!("unknown ({e})"));
    let t = Instant::now();
    let full = gpu.edt_squared(&features, &grid)?;
    let with_transfers_first_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut d = gpu.upload(&features, &grid)?;
    for _ in 0..3 {
        gpu.run(&mut d)?;
    }
    gpu.synchronize()?;
    let mut times: Vec<f64> = (0..20)
        .map(|_| {
            let t = Instant::now();
            gpu.run(&mut d)?;
            gpu.synchronize()?;
            Ok(t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<magseg_metrics::Result<_>>()?;
    times.sort_by(f64::total_cmp);
    let median = (times[9] + times[10]) / 2.0;
    let mut with_transfers: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            gpu.edt_squared(&features, &grid)?;
            Ok(t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<magseg_metrics::Result<_>>()?;
    with_transfers.sort_by(f64::total_cmp);
    let t = Instant::now();
    let cpu = edt_squared(&features, &grid)?;
    let cpu_ms = t.elapsed().as_secs_f64() * 1e3;
    let identical = cpu.iter().zip(&full).all(|(a, b)| a.to_bits() == b.to_bits());
    let max_mm = full.iter().fold(0.0f32, |m, v| m.max(*v)).sqrt();
    let h = hd95_bench(ordinal, &grid, &features, &sphere([126, 118, 80]))?;
    println!(
        "{{\"gpu\":{name:?},\"shape\":[240,240,155],\"gpu_edt_ms_median20\":{median:.4},\"gpu_edt_ms_min\":{:.4},\
         \"gpu_edt_with_transfers_ms_median5\":{:.4},\"gpu_first_call_ms\":{with_transfers_first_ms:.3},\
         \"cpu_edt_ms\":{cpu_ms:.3},\"cpu_threads\":{},\"identical_to_cpu\":{identical},\"max_distance_mm\":{max_mm:.4},{h}}}",
        times[0],
        with_transfers[2],
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    );
    Ok(())
}

/// Median (mean of the middle two for an even count) of `n` timings (ms) of `f`.
fn median_ms(n: usize, mut f: impl FnMut() -> magseg_metrics::Result<f64>) -> magseg_metrics::Result<(f64, f64)> {
    let mut t = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        f()?;
        t.push(start.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(f64::total_cmp);
    Ok(((t[(n - 1) / 2] + t[n / 2]) / 2.0, t[0]))
}

/// HD95 of `a` against `b` on the GPU and the CPU; the JSON fields (without braces).
fn hd95_bench(ordinal: usize, grid: &Grid, a: &[bool], b: &[bool]) -> Result<String, Box<dyn std::error::Error>> {
    let opts = EvalOptions::default();
    let gpu = CudaSurface::new(ordinal)?;
    let t = Instant::now();
    let first = gpu.hd95(a, b, grid, &opts)?;
    let first_ms = t.elapsed().as_secs_f64() * 1e3;
    let d = gpu.upload(a, b, grid)?;
    for _ in 0..3 {
        gpu.hd95_on(&d, &opts)?;
    }
    let (resident, resident_min) = median_ms(20, || gpu.hd95_on(&d, &opts))?;
    let (transfers, _) = median_ms(5, || gpu.hd95(a, b, grid, &opts))?;
    let mut cpu_value = f64::NAN;
    let (cpu, _) = median_ms(3, || {
        cpu_value = compare_masks(a, b, grid, &opts)?.hd95;
        Ok(cpu_value)
    })?;
    let gpu_value = gpu.hd95_on(&d, &opts)?;
    Ok(format!(
        "\"hd95_case\":\"spheres r=40 (strict <) at (120,110,80) and (126,118,80), MONAI, 6-neighbourhood, 1 mm\",\
         \"gpu_hd95_ms_median20\":{resident:.4},\"gpu_hd95_ms_min\":{resident_min:.4},\
         \"gpu_hd95_with_transfers_ms_median5\":{transfers:.4},\"gpu_hd95_first_call_ms\":{first_ms:.3},\
         \"cpu_hd95_ms\":{cpu:.3},\"hd95_mm\":{gpu_value:.6},\"cpu_hd95_mm\":{cpu_value:.6},\
         \"hd95_identical_to_cpu\":{}",
        gpu_value.to_bits() == cpu_value.to_bits() && first.to_bits() == cpu_value.to_bits()
    ))
}
