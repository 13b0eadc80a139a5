//! CPU vs GPU (feature `cuda`): conv3d and conv_transpose3d forward, input, weight and bias gradients
//! (through candle autograd: `backward()` of `sum(y · r)` for a random `r`) on the CPU and on CUDA
//! device 0 agree within `|gpu − cpu| ≤ 1e-4 · max |cpu|` per tensor, and the GPU result is the same
//! bit for bit when run twice. Fails (does not skip) when there is no GPU.
#![cfg(feature = "cuda")]

mod common;

use candle_core::{Device, Tensor, Var};
use common::{flat, Rng};
use magseg_kernels::{conv3d, conv_transpose3d, Conv3dConfig};

/// Relative tolerance, of the largest |value| of the CPU tensor.
const TOL: f32 = 1e-4;

fn gpu() -> Device {
    Device::new_cuda(0).expect("these tests need CUDA device 0 (they fail, never skip, without a GPU)")
}

/// `|a − b| ≤ TOL · max |a|` element-wise (a = CPU, b = GPU); returns the worst relative error.
fn assert_close(what: &str, cpu: &Tensor, gpu: &Tensor) -> f32 {
    assert_eq!(cpu.dims(), gpu.dims(), "{what}: shapes differ");
    let a = flat(cpu);
    let b = flat(&gpu.to_device(&Device::Cpu).unwrap());
    let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-20);
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max) / scale;
    assert!(b.iter().all(|v| v.is_finite()), "{what}: non-finite GPU values");
    assert!(worst <= TOL, "{what}: max |gpu − cpu| / max |cpu| = {worst:e} > {TOL:e}");
    worst
}

/// One operation, its operands as CPU tensors, run on a device: returns (y, dx, dw, db).
struct Case {
    name: &'static str,
    x: Vec<usize>,
    w: Vec<usize>,
    bias: bool,
    transpose: bool,
    cfg: Conv3dConfig,
}

fn run_on(c: &Case, dev: &Device, data: &[Tensor; 4]) -> [Tensor; 4] {
    let x = Var::from_tensor(&data[0].to_device(dev).unwrap()).unwrap();
    let w = Var::from_tensor(&data[1].to_device(dev).unwrap()).unwrap();
    let b = Var::from_tensor(&data[2].to_device(dev).unwrap()).unwrap();
    let bias = c.bias.then_some(b.as_tensor());
    let y = if c.transpose {
        conv_transpose3d(&x, &w, bias, c.cfg.stride).unwrap()
    } else {
        conv3d(&x, &w, bias, c.cfg).unwrap()
    };
    let r = data[3].to_device(dev).unwrap();
    assert_eq!(y.dims(), r.dims(), "{}: output shape", c.name);
    let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let g = |v: &Var| grads.get(v).expect("gradient present").clone();
    let db = if c.bias { g(&b) } else { b.as_tensor().zeros_like().unwrap() };
    [y, g(&x), g(&w), db]
}

fn check(c: Case) {
    let dev = gpu();
    let mut rng = Rng(0x5EED ^ c.x.iter().product::<usize>() as u64);
    let x = rng.tensor(&c.x);
    let w = rng.tensor(&c.w);
    let bias_len = if c.transpose { c.w[1] } else { c.w[0] };
    let b = rng.tensor(&[bias_len]);
    // The output shape, from a forward pass without gradients.
    let y0 = if c.transpose {
        conv_transpose3d(&x, &w, None, c.cfg.stride).unwrap()
    } else {
        conv3d(&x, &w, None, c.cfg).unwrap()
    };
    let r = rng.tensor(y0.dims());
    let data = [x, w, b, r];
    let cpu = run_on(&c, &Device::Cpu, &data);
    let gpu1 = run_on(&c, &dev, &data);
    let gpu2 = run_on(&c, &dev, &data);
    let mut report = Vec::new();
    for (i, what) in ["output", "input gradient", "weight gradient", "bias gradient"].iter().enumerate() {
        report.push(assert_close(&format!("{}: {what}", c.name), &cpu[i], &gpu1[i]));
        assert_eq!(
            flat(&gpu1[i].to_device(&Device::Cpu).unwrap()),
            flat(&gpu2[i].to_device(&Device::Cpu).unwrap()),
            "{}: {what}: two GPU runs differ (not deterministic)",
            c.name
        );
    }
    eprintln!("{}: worst relative errors (y, dx, dw, db) {report:?}", c.name);
}

fn cfg(stride: [usize; 3], padding: [usize; 3]) -> Conv3dConfig {
    Conv3dConfig { stride, padding }
}

#[test]
fn k3_s1_p1_one_to_four_channels_odd_sizes() {
    let (x, w) = (vec![1, 1, 9, 10, 11], vec![4, 1, 3, 3, 3]);
    check(Case { name: "k3 s1 p1 1→4", x, w, bias: true, transpose: false, cfg: cfg([1; 3], [1; 3]) });
}

#[test]
fn k1_eight_to_sixteen_channels_batch2() {
    let (x, w) = (vec![2, 8, 7, 6, 5], vec![16, 8, 1, 1, 1]);
    check(Case { name: "k1 8→16 batch 2", x, w, bias: true, transpose: false, cfg: cfg([1; 3], [0; 3]) });
}

#[test]
fn k3_s2_p1_strided_batch2() {
    let (x, w) = (vec![2, 3, 9, 8, 7], vec![5, 3, 3, 3, 3]);
    check(Case { name: "k3 s2 p1 3→5", x, w, bias: false, transpose: false, cfg: cfg([2; 3], [1; 3]) });
}

#[test]
fn anisotropic_kernel_stride_padding() {
    let (x, w) = (vec![1, 2, 8, 9, 10], vec![3, 2, 5, 3, 2]);
    check(Case {
        name: "k5x3x2 s1x2x3 p2x1x0 2→3",
        x,
        w,
        bias: true,
        transpose: false,
        cfg: cfg([1, 2, 3], [2, 1, 0]),
    });
}

#[test]
fn large_kernel_more_than_27_taps() {
    let (x, w) = (vec![1, 2, 9, 9, 9], vec![3, 2, 5, 5, 5]);
    check(Case { name: "k5 s1 p2 (125 taps)", x, w, bias: false, transpose: false, cfg: cfg([1; 3], [2; 3]) });
}

#[test]
fn few_channels_large_volume_splits_the_weight_gradient() {
    // 2 × 3 channel pairs over 2 × 40³ output voxels: backward-weight sums in 31 chunks.
    let (x, w) = (vec![2, 2, 40, 40, 40], vec![3, 2, 3, 3, 3]);
    check(Case { name: "k3 s1 p1 2→3 40³ batch 2", x, w, bias: true, transpose: false, cfg: cfg([1; 3], [1; 3]) });
}

#[test]
fn transpose_k2_s2_batch2() {
    let (x, w) = (vec![2, 8, 5, 6, 7], vec![8, 4, 2, 2, 2]);
    check(Case { name: "transpose k2 s2 8→4", x, w, bias: true, transpose: true, cfg: cfg([2; 3], [0; 3]) });
}

#[test]
fn transpose_k3_s2_odd() {
    let (x, w) = (vec![1, 3, 4, 5, 3], vec![3, 2, 3, 3, 3]);
    check(Case { name: "transpose k3 s2 3→2", x, w, bias: false, transpose: true, cfg: cfg([2; 3], [0; 3]) });
}

#[test]
fn k3_s1_p1_thirty_two_channels_24() {
    let (x, w) = (vec![1, 32, 24, 24, 24], vec![32, 32, 3, 3, 3]);
    check(Case { name: "k3 s1 p1 32→32 24³", x, w, bias: true, transpose: false, cfg: cfg([1; 3], [1; 3]) });
}

#[test]
fn non_f32_is_a_clear_error_on_the_gpu() {
    let dev = gpu();
    let x = Tensor::zeros((1, 1, 4, 4, 4), candle_core::DType::F64, &dev).unwrap();
    let w = Tensor::zeros((1, 1, 3, 3, 3), candle_core::DType::F64, &dev).unwrap();
    let e = conv3d(&x, &w, None, Conv3dConfig::default()).unwrap_err().to_string();
    assert!(e.contains("f64") && e.contains("f32"), "unexpected error: {e}");
}
