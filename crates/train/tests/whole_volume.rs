//! Whole-volume inference (`WindowConfig::whole`): the probabilities equal the softmax of one
//! direct forward pass of the network over the zero-padded volume (computed here without the
//! window machinery), sliding windows and the whole volume agree where the volume is one patch, and
//! UNETR models, whose input is fixed to the patch, get an error instead of a panic.

use candle_core::{Device, Tensor};
use magseg_model::{MagMs, MagMsConfig, ModelKind};
use magseg_train::{sliding_window_probs, InferInput, WindowConfig};

fn unet(patch: [usize; 3]) -> MagMs {
    let cfg = MagMsConfig {
        kind: ModelKind::Unet,
        modalities: vec!["a".into(), "b".into()],
        out_channels: 3,
        patch_size: patch,
        unet_base_channels: 2,
        ..MagMsConfig::default()
    };
    MagMs::with_seed(cfg, &Device::Cpu, 5).unwrap()
}

/// A smooth deterministic image of `channels` × `dims` (i fastest), zero outside an ellipsoid as
/// skull-stripped MRI is.
fn image(dims: [usize; 3], channels: usize) -> Vec<f32> {
    let mut v = Vec::new();
    for c in 0..channels {
        for k in 0..dims[2] {
            for j in 0..dims[1] {
                for i in 0..dims[0] {
                    let r = [i, j, k]
                        .iter()
                        .zip(dims)
                        .map(|(&x, n)| (2.0 * x as f32 / n as f32 - 1.0).powi(2))
                        .sum::<f32>();
                    let val = ((i * 7 + j * 3 + k * 5 + c * 11) as f32 * 0.37).sin() + 0.1 * c as f32;
                    v.push(if r < 0.9 { val } else { 0.0 });
                }
            }
        }
    }
    v
}

#[test]
fn whole_volume_is_one_forward_pass_over_the_padded_volume() {
    let model = unet([8, 8, 8]);
    let dims = [13, 9, 11]; // (i, j, k): the network sees (D, H, W) = (11, 9, 13), padded to (16, 16, 16)
    let img = image(dims, 2);
    let n: usize = dims.iter().product();
    let cfg = WindowConfig { whole: true, ..WindowConfig::default() };
    for slots in [[Some(0), Some(1)], [None, Some(1)]] {
        let got = sliding_window_probs(&model, InferInput { dims, image: &img, slots: &slots }, &cfg).unwrap();
        // Direct: pad each present channel to (16, 16, 16) in (D, H, W), one forward, softmax, crop.
        let inputs: Vec<Option<Tensor>> = slots
            .iter()
            .map(|s| {
                s.map(|c| {
                    let mut p = vec![0f32; 16 * 16 * 16];
                    for k in 0..dims[2] {
                        for j in 0..dims[1] {
                            for i in 0..dims[0] {
                                p[(k * 16 + j) * 16 + i] = img[c * n + (k * dims[1] + j) * dims[0] + i];
                            }
                        }
                    }
                    Tensor::from_vec(p, (1, 1, 16, 16, 16), &Device::Cpu).unwrap()
                })
            })
            .collect();
        let logits = model.forward(&inputs, false).unwrap().fused;
        let probs = candle_nn::ops::softmax(&logits, 1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(got.len(), 3 * n);
        let mut worst = 0f32;
        for c in 0..3 {
            for k in 0..dims[2] {
                for j in 0..dims[1] {
                    for i in 0..dims[0] {
                        let want = probs[((c * 16 + k) * 16 + j) * 16 + i];
                        worst = worst.max((got[c * n + (k * dims[1] + j) * dims[0] + i] - want).abs());
                    }
                }
            }
        }
        assert!(worst < 1e-5, "whole-volume probabilities differ from the direct pass by {worst}");
    }
}

#[test]
fn whole_volume_equals_sliding_windows_on_a_single_patch() {
    let model = unet([16, 8, 8]);
    let dims = [8, 8, 16]; // (i, j, k) = the patch (D, H, W) reversed: one window either way
    let img = image(dims, 2);
    let slots = [Some(1), Some(0)];
    let input = InferInput { dims, image: &img, slots: &slots };
    let sw = sliding_window_probs(&model, input, &WindowConfig::default()).unwrap();
    let whole = sliding_window_probs(&model, input, &WindowConfig { whole: true, ..WindowConfig::default() }).unwrap();
    let worst = sw.iter().zip(&whole).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert_eq!(sw.len(), whole.len());
    assert!(worst < 1e-6, "{worst}");
}

#[test]
fn unetr_refuses_whole_volume_inference() {
    let cfg = MagMsConfig {
        kind: ModelKind::Unetr,
        modalities: vec!["a".into()],
        out_channels: 2,
        patch_size: [32, 32, 16],
        feature_size: 4,
        hidden_size: 48,
        mlp_dim: 96,
        num_heads: 2,
        num_layers: 2,
        ..MagMsConfig::default()
    };
    let model = MagMs::with_seed(cfg, &Device::Cpu, 1).unwrap();
    let dims = [16, 32, 32];
    let img = image(dims, 1);
    let err = sliding_window_probs(
        &model,
        InferInput { dims, image: &img, slots: &[Some(0)] },
        &WindowConfig { whole: true, ..WindowConfig::default() },
    )
    .unwrap_err();
    assert!(err.to_string().contains("U-Net"), "{err}");
}

#[test]
fn whole_is_a_validation_setting_in_the_training_configuration() {
    let cfg: magseg_train::TrainConfig =
        toml::from_str("[data]\npath = \"x\"\n[validation]\nwindow = { whole = true }\n").unwrap();
    assert!(cfg.validation.window.whole);
    let cfg: magseg_train::TrainConfig = toml::from_str("[data]\npath = \"x\"\n").unwrap();
    assert!(!cfg.validation.window.whole);
}
