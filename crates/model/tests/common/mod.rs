//! Shared by the bf16 tests (precision.rs on the CPU, cuda_model.rs and cuda_model_tf32.rs on the
//! GPU): the tiny MAG-MS configurations, deterministic inputs, one training forward and backward, and
//! the comparison of a reduced-precision run with the f32 reference within the bounds PyTorch's own
//! autocast shows (tests/golden/bf16_autocast_torch.py).
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use magseg_model::{MagMs, MagMsConfig, ModelKind};

/// Bounds calibrated on PyTorch's own autocast to bf16 for the same architectures
/// (tests/golden/bf16_autocast_torch.py: logits move by 1–2 % of their largest value; parameter
/// gradients by a median 15 % (U-Net) / 18–24 % (UNETR) in l2 norm, all U-Net gradients as one vector
/// by 17–18 %; single tensors whose exact gradient is ~0, e.g. a 1×1 convolution followed by instance
/// norm, which is scale-invariant, by more than 100 %, so there is no per-tensor bound).
/// Logits: `max |bf16 − f32| / max |f32|`.
pub const LOGIT_TOL: f32 = 0.05;

/// Gradient bounds: all parameter gradients as one vector, `‖bf16 − f32‖₂ / ‖f32‖₂`, and the median
/// over parameter tensors of the same ratio per tensor.
#[derive(Clone, Copy)]
pub struct GradTol {
    pub all: f32,
    pub median: f32,
}
/// PyTorch: 17–18 % as one vector, median 15 %.
pub const UNET_GRAD: GradTol = GradTol { all: 0.2, median: 0.16 };
/// PyTorch: median 18–24 %, 90th percentile 26–35 % (as one vector undefined: it overflows).
pub const UNETR_GRAD: GradTol = GradTol { all: 0.3, median: 0.25 };

pub fn unet() -> MagMsConfig {
    MagMsConfig {
        kind: ModelKind::Unet,
        modalities: vec!["t1".into(), "flair".into()],
        out_channels: 3,
        patch_size: [16, 16, 16],
        unet_base_channels: 4,
        ..MagMsConfig::default()
    }
}

pub fn unetr() -> MagMsConfig {
    MagMsConfig {
        kind: ModelKind::Unetr,
        modalities: vec!["t1".into(), "flair".into()],
        out_channels: 3,
        patch_size: [16, 16, 16],
        feature_size: 4,
        hidden_size: 24,
        mlp_dim: 48,
        num_heads: 4,
        num_layers: 12,
        ..MagMsConfig::default()
    }
}

pub fn flat(t: &Tensor) -> Vec<f32> {
    t.to_device(&Device::Cpu).unwrap().to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// `max |v|` over `t`.
pub fn max_abs(t: &Tensor) -> f32 {
    flat(t).iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// `max |got − reference| / max |reference|`, asserted ≤ `tol`.
pub fn max_rel(what: &str, reference: &Tensor, got: &Tensor, tol: f32) -> f32 {
    max_rel_to(what, reference, got, max_abs(reference), tol)
}

/// `max |got − reference| / scale`, asserted ≤ `tol`.
pub fn max_rel_to(what: &str, reference: &Tensor, got: &Tensor, scale: f32, tol: f32) -> f32 {
    assert_eq!(reference.dims(), got.dims(), "{what}: shapes differ");
    let (a, b) = (flat(reference), flat(got));
    assert!(scale > 0.0, "{what}: the reference is all zeros (a comparison of nothing)");
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max) / scale;
    assert!(worst.is_finite() && worst <= tol, "{what}: max |got − reference| / {scale:e} = {worst:e} > {tol:e}");
    worst
}

/// `‖b − a‖₂ / ‖a‖₂`.
pub fn l2_rel(a: &[f32], b: &[f32]) -> f32 {
    let norm = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f32>().sqrt() / norm
}

/// A fixed pseudo-random tensor (uniform in [-√3, √3): unit variance) of `shape`, from `seed`
/// (candle's CPU RNG cannot be seeded, and the bounds must not depend on luck).
pub fn noise(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let v: Vec<f32> = (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * 3f32.sqrt()
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Asserts that the bf16 run (`l16` logits, `g16` named gradients) matches the f32 reference
/// (`l32`, `g32`): [`check_reduced`] with the logit bound [`LOGIT_TOL`].
pub fn check_bf16(l32: &[Tensor], g32: &[(String, Tensor)], l16: &[Tensor], g16: &[(String, Tensor)], tol: GradTol) {
    check_reduced(l32, g32, l16, g16, LOGIT_TOL, tol);
}

/// The devices and data of the CPU-against-GPU comparisons: CUDA device 0 (the test fails without
/// one), two modality inputs (batch 2, 16³) and the loss weights `r` of [`train_pass`].
#[cfg(feature = "cuda")]
pub fn gpu_case() -> (Device, Vec<Tensor>, Tensor) {
    let gpu = magseg_kernels::alloc::cuda_device(0)
        .expect("this test needs CUDA device 0 (it fails, never skips, without a GPU)");
    let inputs: Vec<Tensor> = (0..2).map(|m| noise(&[2, 1, 16, 16, 16], m + 1)).collect();
    (gpu, inputs, noise(&[2, 3, 16, 16, 16], 9))
}

/// The f32 CPU network against the same network on the GPU computing in `dtype` (bf16, or f32 on
/// whatever convolution path the process uses): [`check_reduced`] with `logit_tol` and `tol`.
#[cfg(feature = "cuda")]
pub fn compare_gpu_reduced(config: MagMsConfig, dtype: DType, logit_tol: f32, tol: GradTol) {
    let (gpu, inputs, r) = gpu_case();
    let (lc, gc) = train_pass(&config, &Device::Cpu, DType::F32, &inputs, &r);
    let (lg, gg) = train_pass(&config, &gpu, dtype, &inputs, &r);
    check_reduced(&lc, &gc, &lg, &gg, logit_tol, tol);
}

/// Asserts that a reduced-precision run (`l16` logits, `g16` named gradients) matches the f32
/// reference (`l32`, `g32`): logits within `logit_tol` of their largest value and not bit-identical
/// (the reduced precision really ran), every gradient finite, all gradients as one vector and the
/// median tensor within `tol`. With `MAGSEG_SHOW_ERRORS` set it prints every tensor's error.
pub fn check_reduced(
    l32: &[Tensor],
    g32: &[(String, Tensor)],
    l16: &[Tensor],
    g16: &[(String, Tensor)],
    logit_tol: f32,
    tol: GradTol,
) {
    assert_eq!(l32.len(), l16.len());
    for (i, (a, b)) in l32.iter().zip(l16).enumerate() {
        let e = max_rel(&format!("logits {i}"), a, b, logit_tol);
        eprintln!("logits {i}: relative error {e:.2e}");
        assert_ne!(flat(a), flat(b), "logits {i}: the reduced precision gave exactly the f32 result");
    }
    assert_eq!(g32.len(), g16.len());
    let (mut all32, mut all16, mut per_tensor) = (Vec::new(), Vec::new(), Vec::new());
    for ((na, a), (nb, b)) in g32.iter().zip(g16) {
        assert_eq!(na, nb);
        assert_eq!(a.dims(), b.dims(), "gradient of {na}: shapes differ");
        let (a, b) = (flat(a), flat(b));
        assert!(b.iter().all(|v| v.is_finite()), "gradient of {na}: not finite in reduced precision");
        if a.iter().any(|&v| v != 0.0) {
            per_tensor.push(l2_rel(&a, &b));
            if std::env::var_os("MAGSEG_SHOW_ERRORS").is_some() {
                eprintln!("  {na}: {:.3}", l2_rel(&a, &b));
            }
        }
        all32.extend(a);
        all16.extend(b);
    }
    let global = l2_rel(&all32, &all16);
    per_tensor.sort_by(f32::total_cmp);
    let median = per_tensor[per_tensor.len() / 2];
    eprintln!("{} gradients: all as one vector {global:.3}, median per tensor {median:.3}", g32.len());
    assert!(global <= tol.all, "‖reduced − f32‖ / ‖f32‖ over all gradients = {global} > {}", tol.all);
    assert!(median <= tol.median, "median gradient error {median} > {}", tol.median);
}

/// Training forward on `dev` in `dtype`, loss `Σ_outputs sum(logits · r)`, backward; returns the
/// logits (fused first) and the gradients by variable name.
pub fn train_pass(
    config: &MagMsConfig,
    dev: &Device,
    dtype: DType,
    inputs: &[Tensor],
    r: &Tensor,
) -> (Vec<Tensor>, Vec<(String, Tensor)>) {
    let mut model = MagMs::with_seed(config.clone(), dev, 7).unwrap();
    model.set_compute_dtype(dtype).unwrap();
    let xs: Vec<Option<Tensor>> = inputs.iter().map(|x| Some(x.to_device(dev).unwrap())).collect();
    let out = model.forward(&xs, true).unwrap();
    let r = r.to_device(dev).unwrap();
    let mut logits = vec![out.fused.clone()];
    logits.extend(out.modalities.iter().map(|m| m.logits.clone()));
    let mut loss = Tensor::zeros((), DType::F32, dev).unwrap();
    for l in &logits {
        loss = (loss + (l * &r).unwrap().sum_all().unwrap()).unwrap();
    }
    let grads = loss.backward().unwrap();
    let mut g: Vec<(String, Tensor)> = model
        .trainable_vars()
        .into_iter()
        .map(|(name, v)| (name.clone(), grads.get(&v).unwrap_or_else(|| panic!("no gradient for {name}")).clone()))
        .collect();
    g.sort_by(|a, b| a.0.cmp(&b.0));
    (logits, g)
}
