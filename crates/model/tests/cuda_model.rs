//! CPU vs GPU (feature `cuda`) on a tiny MAG-MS U-Net (base 4 channels, patch 16³, 2 modalities,
//! batch 2): with the same weights ([`MagMs::with_seed`] draws them on the host), the training forward
//! pass (fused and per-modality logits) and the gradients of every trainable variable agree within
//! `|gpu − cpu| ≤ 1e-3 · max |cpu|` per tensor. Fails (does not skip) when there is no GPU.
#![cfg(feature = "cuda")]

use candle_core::{Device, Tensor};
use magseg_model::{MagMs, MagMsConfig, ModelKind};

/// Relative tolerance, of the largest |value| of the CPU tensor (deeper than one conv: instance norms
/// and several convolutions in a row amplify f32 rounding differences).
const TOL: f32 = 1e-3;

fn config() -> MagMsConfig {
    MagMsConfig {
        kind: ModelKind::Unet,
        modalities: vec!["t1".into(), "flair".into()],
        out_channels: 3,
        patch_size: [16, 16, 16],
        unet_base_channels: 4,
        ..MagMsConfig::default()
    }
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.to_device(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn rel_err(what: &str, cpu: &Tensor, gpu: &Tensor) -> f32 {
    assert_eq!(cpu.dims(), gpu.dims(), "{what}: shapes differ");
    let (a, b) = (flat(cpu), flat(gpu));
    let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-20);
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max) / scale;
    assert!(worst <= TOL, "{what}: max |gpu − cpu| / max |cpu| = {worst:e} > {TOL:e}");
    worst
}

/// Training forward on `dev`, loss `Σ_outputs sum(logits · r)`, backward; returns the logits (fused
/// first) and the gradients by variable name.
fn run(dev: &Device, inputs: &[Tensor], r: &Tensor) -> (Vec<Tensor>, Vec<(String, Tensor)>) {
    let model = MagMs::with_seed(config(), dev, 7).unwrap();
    let xs: Vec<Option<Tensor>> = inputs.iter().map(|x| Some(x.to_device(dev).unwrap())).collect();
    let out = model.forward(&xs, true).unwrap();
    let r = r.to_device(dev).unwrap();
    let mut logits = vec![out.fused.clone()];
    logits.extend(out.modalities.iter().map(|m| m.logits.clone()));
    let mut loss = Tensor::zeros((), candle_core::DType::F32, dev).unwrap();
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

#[test]
fn unet_forward_and_gradients_match_cpu() {
    let gpu = Device::new_cuda(0).expect("this test needs CUDA device 0 (it fails, never skips, without a GPU)");
    let shape = (2, 1, 16, 16, 16);
    let inputs: Vec<Tensor> = (0..2).map(|_| Tensor::randn(0f32, 1.0, shape, &Device::Cpu).unwrap()).collect();
    let r = Tensor::randn(0f32, 1.0, (2, 3, 16, 16, 16), &Device::Cpu).unwrap();
    let (lc, gc) = run(&Device::Cpu, &inputs, &r);
    let (lg, gg) = run(&gpu, &inputs, &r);
    assert_eq!(lc.len(), 3, "fused + 2 modality outputs");
    for (i, (a, b)) in lc.iter().zip(&lg).enumerate() {
        let e = rel_err(&format!("logits {i}"), a, b);
        eprintln!("logits {i}: relative error {e:.2e}");
    }
    assert_eq!(gc.len(), gg.len());
    let mut worst = 0.0f32;
    for ((na, a), (nb, b)) in gc.iter().zip(&gg) {
        assert_eq!(na, nb);
        worst = worst.max(rel_err(&format!("gradient of {na}"), a, b));
    }
    eprintln!("{} gradients, worst relative error {worst:.2e}", gc.len());
}
