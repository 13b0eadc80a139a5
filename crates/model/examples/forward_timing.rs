//! Times the default UNETR forward (4 channels, 96³ or the size given) on CPU, for profiling:
//! `cargo run --release -p magseg-model --example forward_timing [roi] [reps]`.

use std::time::Instant;

use candle_core::{Device, Tensor};
use magseg_model::{Unetr, UnetrConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let roi: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(96);
    let reps: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(3);
    if std::env::var_os("MAGSEG_DEFAULT_MALLOC").is_none() {
        magseg_kernels::alloc::keep_freed_memory();
    }
    let dev = Device::Cpu;
    let net = Unetr::new(UnetrConfig { img_size: [roi; 3], ..UnetrConfig::default() }, &dev)?;
    let x = Tensor::randn(0f32, 1.0, (1, 4, roi, roi, roi), &dev)?;
    net.forward(&x)?;
    for _ in 0..reps {
        let t = Instant::now();
        let y = net.forward(&x)?;
        println!("forward {roi}³: {:.3} s {:?}", t.elapsed().as_secs_f64(), y.dims());
    }
    Ok(())
}
