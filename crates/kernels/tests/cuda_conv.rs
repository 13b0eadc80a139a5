//! CPU vs GPU (feature `cuda`): conv3d and conv_transpose3d forward, input, weight and bias gradients
//! (through candle autograd: `backward()` of `sum(y · r)` for a random `r`) on the CPU and on CUDA
//! device 0, for every CUDA implementation ([`CudaConvPath::Direct`], [`CudaConvPath::Gemm`] — whose
//! bf16 forward and backward-data go through channels-last staging where the channels are multiples
//! of 8 — [`CudaConvPath::GemmNcdhw`] and [`CudaConvPath::GemmTf32`] — f32 on tensor cores as tf32 —
//! forced per call, never through the environment) and both dtypes:
//!
//! - f32: `|gpu − cpu| ≤ 1e-4 · max |cpu|` per tensor (f32 sums in another order; the largest sums
//!   here have ~10⁵ terms); on `GemmTf32` `≤ 2e-3 · max |cpu|` (the inputs here are exact in bf16, so
//!   exact in tf32 too, and the errors are those of f32 sums; the bound allows for tf32 rounding);
//! - bf16: the CPU runs on the same bf16 tensors (bf16 inputs, f32 arithmetic, result rounded to
//!   bf16), and `|gpu − cpu| ≤ 1e-2 · max |cpu|` per tensor (a different f32 summation order can move
//!   a result by one bf16 step, 2⁻⁸ relative). The bias gradient is candle's own bf16 reduction, which
//!   differs between devices, so for bf16 it is only checked to be finite.
//!
//! Every GPU result must be the same bit for bit when run twice. Also the fused Adam passes
//! (`magseg_kernels::optim`), leaky ReLU and 2×2×2 max pooling, bit for bit against the CPU, and
//! instance norm, layer norm, softmax, GELU, `linear` and `self_attention` within stated tolerances.
//! And `alloc::cuda_device`'s memory pool set-up. Fails (does not skip) without a GPU.
#![cfg(feature = "cuda")]

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{flat, Rng};
use magseg_kernels::{conv3d_with_path, conv_transpose3d_with_path, Conv3dConfig, CudaConvPath};

/// Relative tolerance for f32, of the largest |value| of the CPU tensor.
const TOL_F32: f32 = 1e-4;
/// Relative tolerance for f32 on the tf32 path, of the largest |value| of the CPU tensor.
const TOL_TF32: f32 = 2e-3;
/// Relative tolerance for bf16, of the largest |value| of the CPU tensor.
const TOL_BF16: f32 = 1e-2;

fn gpu() -> Device {
    magseg_kernels::alloc::cuda_device(0)
        .expect("these tests need CUDA device 0 (they fail, never skip, without a GPU)")
}

/// `|a − b| ≤ tol · max |a|` element-wise (a = CPU, b = GPU); returns the worst relative error.
fn assert_close(what: &str, cpu: &Tensor, gpu: &Tensor, tol: f32) -> f32 {
    assert_eq!(cpu.dims(), gpu.dims(), "{what}: shapes differ");
    assert_eq!(cpu.dtype(), gpu.dtype(), "{what}: dtypes differ");
    let a = flat(&cpu.to_dtype(DType::F32).unwrap());
    let b = flat(&gpu.to_device(&Device::Cpu).unwrap().to_dtype(DType::F32).unwrap());
    let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-20);
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max) / scale;
    assert!(b.iter().all(|v| v.is_finite()), "{what}: non-finite GPU values");
    assert!(worst <= tol, "{what}: max |gpu − cpu| / max |cpu| = {worst:e} > {tol:e}");
    worst
}

/// One operation and the shapes of its operands.
struct Case {
    name: &'static str,
    x: Vec<usize>,
    w: Vec<usize>,
    bias: bool,
    transpose: bool,
    cfg: Conv3dConfig,
}

/// Runs the case on `dev` with tensors of dtype `dt`: returns (y, dx, dw, db).
fn run_on(c: &Case, dev: &Device, data: &[Tensor; 4], dt: DType, path: CudaConvPath) -> [Tensor; 4] {
    let var = |t: &Tensor| Var::from_tensor(&t.to_dtype(dt).unwrap().to_device(dev).unwrap()).unwrap();
    let (x, w, b) = (var(&data[0]), var(&data[1]), var(&data[2]));
    let bias = c.bias.then_some(b.as_tensor());
    let y = if c.transpose {
        conv_transpose3d_with_path(&x, &w, bias, c.cfg.stride, path).unwrap()
    } else {
        conv3d_with_path(&x, &w, bias, c.cfg, path).unwrap()
    };
    let r = data[3].to_dtype(dt).unwrap().to_device(dev).unwrap();
    assert_eq!(y.dims(), r.dims(), "{}: output shape", c.name);
    let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let g = |v: &Var| grads.get(v).expect("gradient present").clone();
    let db = if c.bias { g(&b) } else { b.as_tensor().zeros_like().unwrap() };
    [y, g(&x), g(&w), db]
}

fn check(c: Case) {
    let dev = gpu();
    let mut rng = Rng(0x5EED ^ c.x.iter().product::<usize>() as u64);
    // Inputs exactly representable in bf16, so the f32 and bf16 runs start from the same values.
    let round = |t: Tensor| t.to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap();
    let x = round(rng.tensor(&c.x));
    let w = round(rng.tensor(&c.w));
    let bias_len = if c.transpose { c.w[1] } else { c.w[0] };
    let b = round(rng.tensor(&[bias_len]));
    // The output shape, from a forward pass without gradients.
    let y0 = if c.transpose {
        conv_transpose3d_with_path(&x, &w, None, c.cfg.stride, CudaConvPath::Auto).unwrap()
    } else {
        conv3d_with_path(&x, &w, None, c.cfg, CudaConvPath::Auto).unwrap()
    };
    let r = round(rng.tensor(y0.dims()));
    let data = [x, w, b, r];
    for dt in [DType::F32, DType::BF16] {
        let cpu = run_on(&c, &Device::Cpu, &data, dt, CudaConvPath::Auto);
        for path in [CudaConvPath::Direct, CudaConvPath::Gemm, CudaConvPath::GemmNcdhw, CudaConvPath::GemmTf32] {
            let tol = match (dt, path) {
                (DType::F32, CudaConvPath::GemmTf32) => TOL_TF32,
                (DType::F32, _) => TOL_F32,
                _ => TOL_BF16,
            };
            let gpu1 = run_on(&c, &dev, &data, dt, path);
            let gpu2 = run_on(&c, &dev, &data, dt, path);
            let mut report = Vec::new();
            for (i, what) in ["output", "input gradient", "weight gradient", "bias gradient"].iter().enumerate() {
                let label = format!("{} [{path:?} {}]: {what}", c.name, dt.as_str());
                if i == 3 && dt == DType::BF16 {
                    let v = flat(&gpu1[i].to_device(&Device::Cpu).unwrap().to_dtype(DType::F32).unwrap());
                    assert!(v.iter().all(|v| v.is_finite()), "{label}: non-finite");
                } else {
                    report.push(assert_close(&label, &cpu[i], &gpu1[i], tol));
                }
                let bits = |t: &Tensor| flat(&t.to_device(&Device::Cpu).unwrap().to_dtype(DType::F32).unwrap());
                let (a, b) = (bits(&gpu1[i]), bits(&gpu2[i]));
                assert!(
                    a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{label}: two GPU runs differ (not deterministic)"
                );
            }
            eprintln!("{} [{path:?} {}]: worst relative errors (y, dx, dw[, db]) {report:?}", c.name, dt.as_str());
        }
    }
}

fn cfg(stride: [usize; 3], padding: [usize; 3]) -> Conv3dConfig {
    Conv3dConfig { stride, padding }
}

fn conv(name: &'static str, x: &[usize], w: &[usize], bias: bool, cfg: Conv3dConfig) {
    check(Case { name, x: x.to_vec(), w: w.to_vec(), bias, transpose: false, cfg });
}

fn transpose(name: &'static str, x: &[usize], w: &[usize], bias: bool, stride: [usize; 3]) {
    check(Case { name, x: x.to_vec(), w: w.to_vec(), bias, transpose: true, cfg: cfg(stride, [0; 3]) });
}

#[test]
fn k3_s1_p1_one_to_four_channels_odd_sizes() {
    conv("k3 s1 p1 1→4", &[1, 1, 9, 10, 11], &[4, 1, 3, 3, 3], true, cfg([1; 3], [1; 3]));
}

#[test]
fn k3_s1_p1_sixteen_to_thirty_three_batch2() {
    conv("k3 s1 p1 16→33 batch 2", &[2, 16, 7, 9, 6], &[33, 16, 3, 3, 3], true, cfg([1; 3], [1; 3]));
}

#[test]
fn k3_s1_p0_thirty_three_to_three() {
    conv("k3 s1 p0 33→3", &[1, 33, 8, 7, 9], &[3, 33, 3, 3, 3], false, cfg([1; 3], [0; 3]));
}

#[test]
fn k1_thirty_three_to_sixteen_channels_batch2() {
    conv("k1 33→16 batch 2", &[2, 33, 7, 6, 5], &[16, 33, 1, 1, 1], true, cfg([1; 3], [0; 3]));
}

#[test]
fn k1_three_to_one_channel() {
    conv("k1 3→1", &[1, 3, 5, 6, 7], &[1, 3, 1, 1, 1], true, cfg([1; 3], [0; 3]));
}

#[test]
fn k3_s2_p1_strided_batch2() {
    conv("k3 s2 p1 3→5 batch 2", &[2, 3, 9, 8, 7], &[5, 3, 3, 3, 3], false, cfg([2; 3], [1; 3]));
}

#[test]
fn k3_s2_p0_sixteen_channels_batch2() {
    conv("k3 s2 p0 16→16 batch 2", &[2, 16, 9, 10, 7], &[16, 16, 3, 3, 3], true, cfg([2; 3], [0; 3]));
}

#[test]
fn k2_s2_downsampling_is_one_tap_backward() {
    // kernel == stride, padding 0: backward-data uses the one-tap kernel on the GEMM path; odd sizes
    // leave the last input plane of every axis without a tap (zero gradient).
    conv("k2 s2 p0 3→16 odd", &[2, 3, 9, 7, 5], &[16, 3, 2, 2, 2], true, cfg([2; 3], [0; 3]));
}

#[test]
fn more_than_one_block_tile_of_channels() {
    // 70 → 66 channels: two 64-row tiles in M for forward (Co) and backward-data (Ci), several in N
    // for backward-weight (Ci · 27).
    conv("k3 s1 p1 70→66 batch 2", &[2, 70, 5, 6, 7], &[66, 70, 3, 3, 3], true, cfg([1; 3], [1; 3]));
}

#[test]
fn anisotropic_kernel_stride_padding() {
    conv("k5x3x2 s1x2x3 p2x1x0 2→3", &[1, 2, 8, 9, 10], &[3, 2, 5, 3, 2], true, cfg([1, 2, 3], [2, 1, 0]));
}

#[test]
fn large_kernel_more_than_27_taps() {
    conv("k5 s1 p2 (125 taps)", &[1, 2, 9, 9, 9], &[3, 2, 5, 5, 5], false, cfg([1; 3], [2; 3]));
}

#[test]
fn kernel_beyond_the_gemm_tap_table_falls_back_to_direct() {
    // 9·9·7 = 567 taps > 512: the GEMM path runs the direct kernels.
    conv("k9x9x7 s1 p1 (567 taps)", &[1, 2, 10, 10, 8], &[2, 2, 9, 9, 7], true, cfg([1; 3], [1; 3]));
}

#[test]
fn few_channels_large_volume_splits_the_weight_gradient() {
    // 2 × 3 channel pairs over 2 × 40³ output voxels: both backward-weight paths sum many chunks.
    conv("k3 s1 p1 2→3 40³ batch 2", &[2, 2, 40, 40, 40], &[3, 2, 3, 3, 3], true, cfg([1; 3], [1; 3]));
}

#[test]
fn k3_s1_p1_thirty_two_channels_24() {
    conv("k3 s1 p1 32→32 24³", &[1, 32, 24, 24, 24], &[32, 32, 3, 3, 3], true, cfg([1; 3], [1; 3]));
}

#[test]
fn channels_last_staging_channel_multiples_of_eight() {
    // bf16 forward and backward-data through the channels-last kernels, both block tiles (≤ 32 and
    // > 32 output rows), a strided forward, and a side whose channels are not a multiple of 8.
    conv("k3 s1 p1 8→72 batch 2", &[2, 8, 6, 7, 5], &[72, 8, 3, 3, 3], true, cfg([1; 3], [1; 3]));
    conv("k3 s1 p1 40→8", &[1, 40, 5, 6, 7], &[8, 40, 3, 3, 3], true, cfg([1; 3], [1; 3]));
    conv("k3 s2 p1 24→16 batch 2", &[2, 24, 9, 8, 7], &[16, 24, 3, 3, 3], false, cfg([2; 3], [1; 3]));
    conv("k3x1x2 p1x0x1 24→13", &[1, 24, 6, 7, 8], &[13, 24, 3, 1, 2], true, cfg([1; 3], [1, 0, 1]));
    // tf32 channels-last needs multiples of 4 only: 12 and 20 take it, bf16 gathers from NCDHW.
    conv("k3 s1 p1 12→20", &[1, 12, 5, 6, 7], &[20, 12, 3, 3, 3], true, cfg([1; 3], [1; 3]));
}

#[test]
fn transpose_k2_s2_batch2() {
    transpose("transpose k2 s2 8→4 batch 2", &[2, 8, 5, 6, 7], &[8, 4, 2, 2, 2], true, [2; 3]);
}

#[test]
fn transpose_k2_s2_thirty_three_to_sixteen() {
    transpose("transpose k2 s2 33→16", &[1, 33, 3, 5, 4], &[33, 16, 2, 2, 2], true, [2; 3]);
}

#[test]
fn transpose_kernel_equals_anisotropic_stride() {
    transpose("transpose k2x1x3 s2x1x3 3→2", &[2, 3, 3, 4, 2], &[3, 2, 2, 1, 3], false, [2, 1, 3]);
}

#[test]
fn transpose_k3_s2_odd() {
    transpose("transpose k3 s2 3→2", &[1, 3, 4, 5, 3], &[3, 2, 3, 3, 3], false, [2; 3]);
}

#[test]
fn unsupported_and_mixed_dtypes_are_clear_errors_on_the_gpu() {
    let dev = gpu();
    let x = Tensor::zeros((1, 1, 4, 4, 4), DType::F64, &dev).unwrap();
    let w = Tensor::zeros((1, 1, 3, 3, 3), DType::F64, &dev).unwrap();
    let e = conv3d_with_path(&x, &w, None, Conv3dConfig::default(), CudaConvPath::Gemm).unwrap_err().to_string();
    assert!(e.contains("f64") && e.contains("f32"), "unexpected error: {e}");
    let x = Tensor::zeros((1, 1, 4, 4, 4), DType::BF16, &dev).unwrap();
    let w = Tensor::zeros((1, 1, 3, 3, 3), DType::F32, &dev).unwrap();
    let e = conv3d_with_path(&x, &w, None, Conv3dConfig::default(), CudaConvPath::Gemm).unwrap_err().to_string();
    assert!(e.contains("bf16") && e.contains("f32"), "unexpected error: {e}");
}

/// The fused Adam passes (`magseg_kernels::optim`) on the CPU and the GPU from the same state: the
/// moment and parameter updates are the same bit for bit (round-to-nearest intrinsics, no fused
/// multiply-adds); the clamped sums of squares within 1e-5 of the CPU's (f64 on the CPU, an f32 tree on
/// the GPU).
#[test]
fn fused_adam_passes_equal_the_cpu_bit_for_bit() {
    use magseg_kernels::optim::{adam_apply, adam_moments, square_sum_count, square_sums_into, AdamStep};
    let dev = gpu();
    let mut rng = Rng(0xADA);
    // One value, a partial chunk, several chunks (8192 values each) with a remainder.
    for (n, rows, clip, l2, decay) in
        [(1, 2, None, 0.0, 0.999), (5000, 3, Some(0.5), 0.01, 1.0), (3 * 8192 + 77, 2, Some(2.0), 0.0, 0.99)]
    {
        let s = AdamStep {
            clip,
            grad_scale: 0.75,
            l2,
            b1: [0.9, (1.0f64 - 0.9) as f32],
            b2: [0.999, (1.0f64 - 0.999) as f32],
            decay,
            inv_sqrt_bc2: 1.7,
            eps: 1e-8,
            step_size: 0.013,
        };
        let g = rng.tensor(&[n]).affine(3.0, 0.0).unwrap();
        let p = rng.tensor(&[n]);
        // A state as after some steps: m of either sign, v and vmax non-negative.
        let m = rng.tensor(&[n]).affine(0.1, 0.0).unwrap();
        let v = rng.tensor(&[rows - 1, n]).abs().unwrap().affine(0.01, 0.0).unwrap();
        let state = Tensor::cat(&[&m.unsqueeze(0).unwrap(), &v], 0).unwrap();
        let on = |d: &Device| {
            let (p, st) = (
                Var::from_tensor(&p.to_device(d).unwrap()).unwrap(),
                Var::from_tensor(&state.to_device(d).unwrap()).unwrap(),
            );
            let g = g.to_device(d).unwrap();
            let partials = Var::zeros(square_sum_count(n) + 1, DType::F32, d).unwrap();
            square_sums_into(&partials, 1, &g, clip).unwrap();
            for _ in 0..3 {
                adam_moments(&st, &g, &p, &s).unwrap();
                adam_apply(&p, &st, &s).unwrap();
            }
            [p, st, partials].map(|t| flat(&t.as_tensor().to_device(&Device::Cpu).unwrap()))
        };
        let (cpu, gpu_) = (on(&Device::Cpu), on(&dev));
        assert_eq!(cpu[0], gpu_[0], "n = {n}: parameters after 3 updates");
        assert_eq!(cpu[1], gpu_[1], "n = {n}: moments after 3 updates");
        assert_eq!(gpu_[2][0], 0.0, "n = {n}: partials before the offset untouched");
        for (i, (a, b)) in cpu[2].iter().zip(&gpu_[2]).enumerate() {
            assert!((a - b).abs() <= 1e-5 * a.abs(), "n = {n}: partial sum {i}: cpu {a}, gpu {b}");
        }
    }
}

/// Leaky ReLU forward and gradient on the CPU and the GPU, f32 and bf16: the same bit for bit (one
/// multiplication, one rounding). Values include exact zeros and both signs.
#[test]
fn leaky_relu_equals_the_cpu_bit_for_bit() {
    let dev = gpu();
    let mut rng = Rng(0x1EA4);
    for n in [1usize, 1000, 3 * 256 * 1024 + 5] {
        let mut v = rng.vec(n);
        v.iter_mut().step_by(7).for_each(|x| *x = 0.0);
        let x = Tensor::from_vec(v, n, &Device::Cpu).unwrap();
        let r = rng.tensor(&[n]);
        for dt in [DType::F32, DType::BF16] {
            let on = |d: &Device| {
                let x = Var::from_tensor(&x.to_dtype(dt).unwrap().to_device(d).unwrap()).unwrap();
                let y = magseg_kernels::leaky_relu(&x, 0.01).unwrap();
                let r = r.to_dtype(dt).unwrap().to_device(d).unwrap();
                let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
                let dx = g.get(&x).unwrap().clone();
                [y, dx].map(|t| flat(&t.to_device(&Device::Cpu).unwrap().to_dtype(DType::F32).unwrap()))
            };
            let (cpu, gpu_) = (on(&Device::Cpu), on(&dev));
            assert_eq!(cpu[0], gpu_[0], "n = {n} {dt:?}: values");
            assert_eq!(cpu[1], gpu_[1], "n = {n} {dt:?}: gradients");
        }
    }
}

/// Layer norm forward and the gradients of x, γ and β on the CPU and the GPU (f32): within
/// `1e-5 · max |cpu|` (per-row sums in a different order: f64 on the CPU, an f32 tree on the GPU).
#[test]
fn layer_norm_matches_the_cpu() {
    let dev = gpu();
    let mut rng = Rng(0x7A7E);
    for dims in [vec![2usize, 216, 768], vec![5, 3], vec![1, 1000]] {
        let h = *dims.last().unwrap();
        let x = rng.tensor(&dims).affine(2.0, 0.5).unwrap();
        let (gamma, beta, r) = (rng.tensor(&[h]).affine(0.5, 1.0).unwrap(), rng.tensor(&[h]), rng.tensor(&dims));
        let on = |d: &Device| {
            let var = |t: &Tensor| Var::from_tensor(&t.to_device(d).unwrap()).unwrap();
            let (x, g, b) = (var(&x), var(&gamma), var(&beta));
            let y = magseg_kernels::layer_norm(&x, &g, &b, 1e-5).unwrap();
            let grads = (&y * &r.to_device(d).unwrap()).unwrap().sum_all().unwrap().backward().unwrap();
            [y, grads.get(&x).unwrap().clone(), grads.get(&g).unwrap().clone(), grads.get(&b).unwrap().clone()]
        };
        let (cpu, gpu_) = (on(&Device::Cpu), on(&dev));
        for (i, what) in ["y", "dx", "dgamma", "dbeta"].iter().enumerate() {
            assert_close(&format!("layer_norm {dims:?} {what}"), &cpu[i], &gpu_[i], 1e-5);
        }
    }
}

/// Softmax (f32) and GELU (f32, bf16) forward and input gradient on the CPU and the GPU: softmax within
/// `1e-5 · max |cpu|` (sums in another order), GELU within 1e-5 (f32: erf from candle on the CPU,
/// `normcdff` on the GPU) or one bf16 step (`1e-2`).
#[test]
fn softmax_and_gelu_match_the_cpu() {
    let dev = gpu();
    let mut rng = Rng(0x6E1A);
    let grads = |x: &Tensor, r: &Tensor, d: &Device, f: &dyn Fn(&Tensor) -> Tensor| {
        let v = Var::from_tensor(&x.to_device(d).unwrap()).unwrap();
        let y = f(&v);
        let g = (&y * &r.to_device(d).unwrap()).unwrap().sum_all().unwrap().backward().unwrap();
        let dx = g.get(&v).unwrap().clone();
        [y, dx]
    };
    for dims in [vec![2usize, 12, 216, 216], vec![3, 1000], vec![7, 1]] {
        let (x, r) = (rng.tensor(&dims).affine(8.0, 0.0).unwrap(), rng.tensor(&dims));
        let f = |t: &Tensor| magseg_kernels::softmax_last(t).unwrap();
        let (cpu, gpu_) = (grads(&x, &r, &Device::Cpu, &f), grads(&x, &r, &dev, &f));
        assert_close(&format!("softmax {dims:?} y"), &cpu[0], &gpu_[0], 1e-5);
        assert_close(&format!("softmax {dims:?} dx"), &cpu[1], &gpu_[1], 1e-5);
    }
    for (dt, tol) in [(DType::F32, 1e-5), (DType::BF16, 1e-2)] {
        let x = rng.tensor(&[2, 216, 3072]).affine(4.0, 0.0).unwrap().to_dtype(dt).unwrap();
        let r = rng.tensor(&[2, 216, 3072]).to_dtype(dt).unwrap();
        let f = |t: &Tensor| magseg_kernels::gelu_erf(t).unwrap();
        let (cpu, gpu_) = (grads(&x, &r, &Device::Cpu, &f), grads(&x, &r, &dev, &f));
        assert_close(&format!("gelu {dt:?} y"), &cpu[0], &gpu_[0], tol);
        assert_close(&format!("gelu {dt:?} dx"), &cpu[1], &gpu_[1], tol);
    }
}

/// Instance norm (f32, and bf16 activations with f32 γ/β; with and without γ/β; alone and with the
/// fused leaky ReLU) forward and the gradients of x, γ and β on the CPU and the GPU, on slices of one and of several 16384-value chunks:
/// f32 within `1e-5 · max |cpu|` (per-slice sums in another order: f64 on the CPU, f32 chunk trees
/// combined in f64 on the GPU); bf16 within `1e-2` (the same f32 results, each rounded to bf16 once,
/// may land one bf16 step apart; γ's and β's gradients are f32 sums of bf16 values).
#[test]
fn instance_norm_matches_the_cpu() {
    let dev = gpu();
    let mut rng = Rng(0x1457);
    let cases = [
        (vec![2usize, 3, 5, 6, 7], true, None),
        (vec![1, 4, 32, 33, 34], true, None),
        (vec![2, 2, 40, 40, 21], false, None),
        (vec![2, 3, 5, 6, 7], true, Some(0.2)),
        (vec![1, 2, 40, 40, 21], false, Some(0.01)),
    ];
    for ((dims, affine, slope), (dtype, tol)) in
        cases.iter().flat_map(|c| [(DType::F32, 1e-5), (DType::BF16, 1e-2)].map(|d| (c.clone(), d)))
    {
        let c = dims[1];
        // An offset larger than the spread: the variance must not come from E[x²] − E[x]².
        let x = rng.tensor(&dims).affine(2.0, 5.0).unwrap().to_dtype(dtype).unwrap();
        let (gamma, beta) = (rng.tensor(&[c]).affine(0.5, 1.0).unwrap(), rng.tensor(&[c]));
        let r = rng.tensor(&dims).to_dtype(dtype).unwrap();
        let on = |d: &Device| {
            let var = |t: &Tensor| Var::from_tensor(&t.to_device(d).unwrap()).unwrap();
            let (x, gv, bv) = (var(&x), var(&gamma), var(&beta));
            let (g, b) = if affine { (Some(gv.as_tensor()), Some(bv.as_tensor())) } else { (None, None) };
            let y = match slope {
                Some(slope) => magseg_kernels::instance_norm_leaky_relu(&x, g, b, 1e-5, slope).unwrap(),
                None => magseg_kernels::instance_norm(&x, g, b, 1e-5).unwrap(),
            };
            let grads = (&y * &r.to_device(d).unwrap()).unwrap().sum_all().unwrap().backward().unwrap();
            let get = |v: &Var| grads.get(v).cloned().unwrap_or_else(|| v.as_tensor().zeros_like().unwrap());
            [y, get(&x), get(&gv), get(&bv)]
        };
        let (cpu, gpu_) = (on(&Device::Cpu), on(&dev));
        for (i, what) in ["y", "dx", "dgamma", "dbeta"].iter().enumerate().take(if affine { 4 } else { 2 }) {
            assert_eq!(gpu_[i].dtype(), if i < 2 { dtype } else { DType::F32 }, "instance_norm {what} dtype");
            assert_close(&format!("instance_norm {dtype:?} {dims:?} slope {slope:?} {what}"), &cpu[i], &gpu_[i], tol);
        }
    }
}

/// `linear` (with and without bias) and `self_attention` at the ViT's sizes (216 tokens of 768, 12
/// heads), forward and every gradient on the CPU and the GPU: f32 within `1e-4 · max |cpu|` (cuBLAS
/// against `gemm`: sums of 768–3072 products in another order), bf16 within `2e-2` (bf16 matmul
/// results rounded after f32 sums in another order, two or three matmuls deep in the gradients).
#[test]
fn dense_layers_match_the_cpu() {
    let dev = gpu();
    let mut rng = Rng(0xDE75);
    // Runs `f` on `inputs` (as variables on `d`): the output and the gradient of Σ f·r for each input.
    let on = |d: &Device, inputs: &[&Tensor], r: &Tensor, f: &dyn Fn(&[Tensor]) -> Tensor| {
        let vars: Vec<Var> = inputs.iter().map(|t| Var::from_tensor(&t.to_device(d).unwrap()).unwrap()).collect();
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let y = f(&ts);
        let loss = (y.to_dtype(DType::F32).unwrap() * r.to_device(d).unwrap()).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        std::iter::once(y).chain(vars.iter().map(|v| grads.get(v).unwrap().clone())).collect::<Vec<_>>()
    };
    for (dt, tol) in [(DType::F32, TOL_F32), (DType::BF16, 2e-2)] {
        for (n, bias) in [(2304usize, false), (768, true), (3072, true)] {
            let x = rng.tensor(&[1, 216, 768]).to_dtype(dt).unwrap();
            let w = rng.tensor(&[n, 768]).affine(0.05, 0.0).unwrap().to_dtype(dt).unwrap();
            let b = rng.tensor(&[n]);
            let r = rng.tensor(&[1, 216, n]);
            let inputs: Vec<&Tensor> = [Some(&x), Some(&w), bias.then_some(&b)].into_iter().flatten().collect();
            let f = |v: &[Tensor]| magseg_kernels::linear(&v[0], &v[1], v.get(2)).unwrap();
            let (cpu, gpu_) = (on(&Device::Cpu, &inputs, &r, &f), on(&dev, &inputs, &r, &f));
            for (i, what) in ["y", "dx", "dw", "db"].iter().enumerate().take(cpu.len()) {
                assert_close(&format!("linear 768→{n} {dt:?} {what}"), &cpu[i], &gpu_[i], tol);
            }
        }
        let qkv = rng.tensor(&[1, 216, 2304]).affine(1.5, 0.0).unwrap().to_dtype(dt).unwrap();
        let r = rng.tensor(&[1, 216, 768]);
        let f = |v: &[Tensor]| magseg_kernels::self_attention(&v[0], 12).unwrap();
        let (cpu, gpu_) = (on(&Device::Cpu, &[&qkv], &r, &f), on(&dev, &[&qkv], &r, &f));
        assert_close(&format!("self_attention {dt:?} y"), &cpu[0], &gpu_[0], tol);
        assert_close(&format!("self_attention {dt:?} dqkv"), &cpu[1], &gpu_[1], tol);
    }
}

/// `max_pool2` forward and input gradient, f32 and bf16, bit for bit against the CPU (both copy
/// values; no arithmetic), on values with many ties (few levels, as a zero background gives) and a
/// few NaNs.
#[test]
fn max_pool2_equals_the_cpu_bit_for_bit() {
    let dev = gpu();
    let mut rng = Rng(0x9001);
    for dims in [vec![2usize, 16, 32, 32, 32], vec![1, 3, 2, 4, 6]] {
        let len: usize = dims.iter().product();
        let mut xv: Vec<f32> = rng.vec(len).iter().map(|v| (v * 3.0).round()).collect();
        for i in (0..len).step_by(997) {
            xv[i] = f32::NAN;
        }
        let x = Tensor::from_vec(xv, dims.as_slice(), &Device::Cpu).unwrap();
        let rdims = [dims[0], dims[1], dims[2] / 2, dims[3] / 2, dims[4] / 2];
        let r = rng.tensor(&rdims);
        for dt in [DType::F32, DType::BF16] {
            let on = |d: &Device| {
                let v = Var::from_tensor(&x.to_dtype(dt).unwrap().to_device(d).unwrap()).unwrap();
                let y = magseg_kernels::max_pool2(&v).unwrap();
                let rd = r.to_dtype(dt).unwrap().to_device(d).unwrap();
                let g = (&y * &rd).unwrap().sum_all().unwrap().backward().unwrap();
                let host = |t: &Tensor| flat(&t.to_device(&Device::Cpu).unwrap().to_dtype(DType::F32).unwrap());
                [host(&y), host(g.get(&v).unwrap())]
            };
            let (cpu, gpu_) = (on(&Device::Cpu), on(&dev));
            for (i, what) in ["y", "dx"].iter().enumerate() {
                let same =
                    cpu[i].iter().zip(&gpu_[i]).all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
                assert!(same, "max_pool2 {dims:?} {dt:?} {what}: GPU differs from the CPU");
            }
        }
    }
}

/// `alloc::cuda_device`: memory freed on the device stays in its pool across a synchronisation
/// (CUDA's default release threshold of 0 would hand it back to the driver there), and the pool's
/// counters see the allocation. Other tests of this file run concurrently on the same pool, so only
/// lower bounds are checked.
#[test]
fn cuda_device_keeps_freed_memory_in_its_pool() {
    const MIB_256: u64 = 256 << 20;
    let dev = gpu();
    let t = Tensor::zeros((64, 1024, 1024), DType::F32, &dev).unwrap();
    dev.synchronize().unwrap();
    let held = magseg_kernels::alloc::cuda_pool_bytes(&dev).unwrap();
    assert!(held.used >= MIB_256 && held.used_high >= MIB_256, "pool while holding 256 MiB: {held:?}");
    drop(t);
    dev.synchronize().unwrap();
    let after = magseg_kernels::alloc::cuda_pool_bytes(&dev).unwrap();
    assert!(after.reserved >= MIB_256, "the pool released freed memory at a synchronisation: {after:?}");
    assert!(after.used_high >= MIB_256, "{after:?}");
}
