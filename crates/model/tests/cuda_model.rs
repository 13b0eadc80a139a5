//! CPU vs GPU (feature `cuda`) on tiny MAG-MS networks (2 modalities, patch 16³, batch 2): with the
//! same weights ([`MagMs::with_seed`] draws them on the host), the training forward pass (fused and
//! per-modality logits) and the gradients of every trainable variable agree per tensor within
//! `|gpu − cpu| ≤ TOL · max |cpu|` in f32 (U-Net and UNETR backbones); bf16 mixed precision on the GPU
//! matches the f32 CPU network within the bounds of tests/precision.rs (calibrated on PyTorch's
//! autocast, tests/common). Fails (does not skip) when there is no GPU.
#![cfg(feature = "cuda")]

use candle_core::{DType, Device, Tensor};
use magseg_model::{MagMs, MagMsConfig};

mod common;
use common::{check_bf16, max_rel, noise, unet, unetr, GradTol, UNETR_GRAD, UNET_GRAD};

/// Relative tolerance, of the largest |value| of the CPU tensor (deeper than one conv: instance norms
/// and several convolutions in a row amplify f32 rounding differences).
const TOL: f32 = 1e-3;

/// Training forward on `dev` in `dtype`, loss `Σ_outputs sum(logits · r)`, backward; returns the
/// logits (fused first) and the gradients by variable name.
fn run(
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

/// The f32 CPU network against the f32 GPU network, per tensor within [`TOL`].
fn compare_f32(config: MagMsConfig) {
    let gpu = Device::new_cuda(0).expect("this test needs CUDA device 0 (it fails, never skips, without a GPU)");
    let inputs: Vec<Tensor> = (0..2).map(|m| noise(&[2, 1, 16, 16, 16], m + 1)).collect();
    let r = noise(&[2, 3, 16, 16, 16], 9);
    let (lc, gc) = run(&config, &Device::Cpu, DType::F32, &inputs, &r);
    let (lg, gg) = run(&config, &gpu, DType::F32, &inputs, &r);
    assert_eq!(lc.len(), 3, "fused + 2 modality outputs");
    for (i, (a, b)) in lc.iter().zip(&lg).enumerate() {
        let e = max_rel(&format!("logits {i}"), a, b, TOL);
        eprintln!("logits {i}: relative error {e:.2e}");
    }
    assert_eq!(gc.len(), gg.len());
    let mut worst = 0.0f32;
    for ((na, a), (nb, b)) in gc.iter().zip(&gg) {
        assert_eq!(na, nb);
        worst = worst.max(max_rel(&format!("gradient of {na}"), a, b, TOL));
    }
    eprintln!("{} gradients, worst relative error {worst:.2e}", gc.len());
}

/// The f32 CPU network against bf16 on the GPU.
fn compare_bf16(config: MagMsConfig, tol: GradTol) {
    let gpu = Device::new_cuda(0).expect("this test needs CUDA device 0 (it fails, never skips, without a GPU)");
    let inputs: Vec<Tensor> = (0..2).map(|m| noise(&[2, 1, 16, 16, 16], m + 1)).collect();
    let r = noise(&[2, 3, 16, 16, 16], 9);
    let (lc, gc) = run(&config, &Device::Cpu, DType::F32, &inputs, &r);
    let (lg, gg) = run(&config, &gpu, DType::BF16, &inputs, &r);
    check_bf16(&lc, &gc, &lg, &gg, tol);
}

#[test]
fn unet_forward_and_gradients_match_cpu() {
    compare_f32(unet());
}

#[test]
fn unetr_forward_and_gradients_match_cpu() {
    compare_f32(unetr());
}

#[test]
fn unet_bf16_on_the_gpu_matches_f32_on_the_cpu_within_bf16_rounding() {
    compare_bf16(unet(), UNET_GRAD);
}

#[test]
fn unetr_bf16_on_the_gpu_matches_f32_on_the_cpu_within_bf16_rounding() {
    compare_bf16(unetr(), UNETR_GRAD);
}
