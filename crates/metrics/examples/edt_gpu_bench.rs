//! Times the GPU EDT (feature `cuda`) on 240×240×155 with the sphere of ../shared/peers/gpu_peer.py
//! section 3 (centre (120, 110, 80), radius 40; the peer's scipy-style EDT of the complement `~m` is the
//! distance to the sphere, i.e. our EDT with the sphere as features), warm-up then the median
//! of 20 runs on device-resident buffers, plus the CPU `edt_squared` once; prints one JSON line.
//! `cargo run --release -p magseg-metrics --features cuda --example edt_gpu_bench [ordinal]`

use std::time::Instant;

use magseg_metrics::cuda::CudaEdt;
use magseg_metrics::{edt_squared, Grid};

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
    let mut features = vec![false; nx * ny * nz];
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let r2 = (i as i64 - 120).pow(2) + (j as i64 - 110).pow(2) + (k as i64 - 80).pow(2);
                features[i + nx * (j + ny * k)] = r2 < 1600;
            }
        }
    }
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
    println!(
        "{{\"gpu\":{name:?},\"shape\":[240,240,155],\"gpu_edt_ms_median20\":{median:.4},\"gpu_edt_ms_min\":{:.4},\
         \"gpu_edt_with_transfers_ms_median5\":{:.4},\"gpu_first_call_ms\":{with_transfers_first_ms:.3},\
         \"cpu_edt_ms\":{cpu_ms:.3},\"cpu_threads\":{},\"identical_to_cpu\":{identical},\"max_distance_mm\":{max_mm:.4}}}",
        times[0],
        with_transfers[2],
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    );
    Ok(())
}
