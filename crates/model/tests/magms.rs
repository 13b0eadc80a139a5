//! MAG-MS tests: every modality subset, single-modality fusion, gradients of every trainable
//! variable, errors instead of panics, and checkpoint round trips, on tiny UNETR and U-Net
//! configurations.

use candle_core::{Device, Tensor};
use magseg_model::{MagMs, MagMsConfig, ModelError, ModelKind};

fn tiny(kind: ModelKind) -> MagMsConfig {
    MagMsConfig {
        kind,
        out_channels: 3,
        patch_size: match kind {
            ModelKind::Unetr => [32, 32, 16],
            ModelKind::Unet => [16, 16, 8],
        },
        feature_size: 4,
        hidden_size: 48,
        mlp_dim: 96,
        num_heads: 2,
        num_layers: 2,
        unet_base_channels: 4,
        label_preset: Some("brats".into()),
        ..MagMsConfig::default()
    }
}

fn inputs(cfg: &MagMsConfig, mask: usize, batch: usize) -> Vec<Option<Tensor>> {
    let [d, h, w] = cfg.patch_size;
    (0..cfg.modalities.len())
        .map(|m| (mask >> m & 1 == 1).then(|| Tensor::randn(0f32, 1.0, (batch, 1, d, h, w), &Device::Cpu).unwrap()))
        .collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn all_subsets(kind: ModelKind) {
    let cfg = tiny(kind);
    let model = MagMs::new(cfg.clone(), &Device::Cpu).unwrap();
    let [d, h, w] = cfg.patch_size;
    let levels = cfg.feature_channels().len();
    for mask in 1..16usize {
        let out = model.forward(&inputs(&cfg, mask, 1), mask == 15).unwrap();
        assert_eq!(out.fused.dims(), &[1, 3, d, h, w], "subset {mask:04b}");
        if mask == 15 {
            assert_eq!(out.modalities.len(), 4);
            assert_eq!(out.fused_features.len(), levels);
            for (i, mo) in out.modalities.iter().enumerate() {
                assert_eq!(mo.modality, i);
                assert_eq!(mo.logits.dims(), &[1, 3, d, h, w]);
                assert_eq!(mo.features.len(), levels);
                for (f, g) in mo.features.iter().zip(&out.fused_features) {
                    assert_eq!(f.dims(), g.dims());
                }
            }
        } else {
            assert!(out.modalities.is_empty() && out.fused_features.is_empty());
        }
    }
}

#[test]
fn unetr_all_fifteen_subsets() {
    all_subsets(ModelKind::Unetr);
}

#[test]
fn unet_all_fifteen_subsets() {
    all_subsets(ModelKind::Unet);
}

#[test]
fn single_modality_fused_equals_single_branch() {
    for kind in [ModelKind::Unetr, ModelKind::Unet] {
        let cfg = tiny(kind);
        let model = MagMs::new(cfg.clone(), &Device::Cpu).unwrap();
        let inp = inputs(&cfg, 0b0100, 2);
        let out = model.forward(&inp, true).unwrap();
        assert_eq!(out.modalities.len(), 1);
        assert_eq!(out.modalities[0].modality, 2);
        assert_eq!(max_abs_diff(&out.fused, &out.modalities[0].logits), 0.0);
        let x = inp[2].as_ref().unwrap();
        let branch = model.decode(&model.encode(2, x).unwrap()).unwrap();
        assert_eq!(max_abs_diff(&model.predict(&inp).unwrap(), &branch), 0.0);
    }
}

#[test]
fn fused_features_are_the_mean() {
    let cfg = tiny(ModelKind::Unet);
    let model = MagMs::new(cfg.clone(), &Device::Cpu).unwrap();
    let out = model.forward(&inputs(&cfg, 0b1011, 1), true).unwrap();
    for (l, fused) in out.fused_features.iter().enumerate() {
        let sum = out.modalities.iter().map(|m| m.features[l].clone()).reduce(|a, b| (a + b).unwrap()).unwrap();
        assert!(max_abs_diff(fused, &(sum / 3.0).unwrap()) < 1e-5);
    }
}

fn every_trainable_variable_gets_a_gradient(kind: ModelKind) {
    let cfg = tiny(kind);
    let model = MagMs::new(cfg.clone(), &Device::Cpu).unwrap();
    let out = model.forward(&inputs(&cfg, 15, 1), true).unwrap();
    let mut loss = Tensor::new(0f32, &Device::Cpu).unwrap();
    for z in std::iter::once(&out.fused).chain(out.modalities.iter().map(|m| &m.logits)) {
        let r = z.randn_like(0.0, 1.0).unwrap();
        loss = (loss + (z * r).unwrap().mean_all().unwrap()).unwrap();
    }
    let grads = loss.backward().unwrap();
    let trainable = model.trainable_vars();
    assert!(!trainable.is_empty());
    for (name, var) in &trainable {
        let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{name} has no gradient"));
        let m = g.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(m > 0.0 && m.is_finite(), "{name}: max |grad| = {m}");
    }
    for (name, var) in model.named_vars() {
        if magseg_model::is_unused_parameter(&name) {
            assert!(grads.get(var.as_tensor()).is_none(), "{name} is used after all");
        }
    }
}

#[test]
fn unetr_every_trainable_variable_gets_a_gradient() {
    every_trainable_variable_gets_a_gradient(ModelKind::Unetr);
}

#[test]
fn unet_every_trainable_variable_gets_a_gradient() {
    every_trainable_variable_gets_a_gradient(ModelKind::Unet);
}

#[test]
fn bad_inputs_are_errors() {
    let cfg = tiny(ModelKind::Unet);
    let model = MagMs::new(cfg.clone(), &Device::Cpu).unwrap();
    assert!(matches!(model.forward(&inputs(&cfg, 0, 1), false), Err(ModelError::NoModality { expected: 4 })));
    assert!(matches!(model.forward(&inputs(&cfg, 0, 1), true), Err(ModelError::NoModality { .. })));
    assert!(matches!(model.forward(&[], false), Err(ModelError::Input(_))));
    let mut inp = inputs(&cfg, 0b0011, 1);
    inp[1] = Some(Tensor::zeros((2, 1, 16, 16, 8), candle_core::DType::F32, &Device::Cpu).unwrap());
    assert!(matches!(model.forward(&inp, false), Err(ModelError::Input(_))));
    // The U-Net takes any multiple of 8 (whole-volume inference), nothing else.
    let wrong =
        vec![Some(Tensor::zeros((1, 1, 12, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap()), None, None, None];
    assert!(matches!(model.forward(&wrong, false), Err(ModelError::Input(_))));
    let other =
        vec![Some(Tensor::zeros((1, 1, 8, 24, 8), candle_core::DType::F32, &Device::Cpu).unwrap()), None, None, None];
    assert_eq!(model.forward(&other, false).unwrap().fused.dims(), &[1, cfg.out_channels, 8, 24, 8]);
    assert!(matches!(model.encode(7, wrong[0].as_ref().unwrap()), Err(ModelError::Input(_))));
    for bad in [
        MagMsConfig { modalities: vec![], ..cfg.clone() },
        MagMsConfig { modalities: vec!["t1".into(), "t1".into()], ..cfg.clone() },
        MagMsConfig { patch_size: [12, 16, 16], ..cfg.clone() },
        MagMsConfig { out_channels: 0, ..cfg.clone() },
        MagMsConfig { patch_size: [24, 32, 32], ..tiny(ModelKind::Unetr) },
    ] {
        assert!(matches!(MagMs::new(bad, &Device::Cpu), Err(ModelError::Config(_))));
    }
}

#[test]
fn checkpoint_round_trip() {
    for kind in [ModelKind::Unetr, ModelKind::Unet] {
        let cfg = tiny(kind);
        let model = MagMs::new(cfg.clone(), &Device::Cpu).unwrap();
        let dir = tempfile::tempdir().unwrap();
        model.save(dir.path().join("ckpt")).unwrap();
        let loaded = MagMs::load(dir.path().join("ckpt"), &Device::Cpu).unwrap();
        assert_eq!(loaded.config(), &cfg);
        let (a, b) = (model.named_vars(), loaded.named_vars());
        assert_eq!(a.len(), b.len());
        for ((na, va), (nb, vb)) in a.iter().zip(&b) {
            assert_eq!(na, nb);
            assert_eq!(max_abs_diff(va.as_tensor(), vb.as_tensor()), 0.0, "{na}");
        }
        let inp = inputs(&cfg, 0b1001, 1);
        assert_eq!(max_abs_diff(&model.predict(&inp).unwrap(), &loaded.predict(&inp).unwrap()), 0.0);
        // A checkpoint of the other backbone does not load into this one's weights.
        let other =
            MagMs::new(tiny(if kind == ModelKind::Unet { ModelKind::Unetr } else { ModelKind::Unet }), &Device::Cpu)
                .unwrap();
        let err = magseg_model::load_weights(other.varmap(), dir.path().join("ckpt").join(magseg_model::WEIGHTS_FILE));
        assert!(matches!(err, Err(ModelError::Keys { .. })));
        assert!(matches!(MagMs::load(dir.path().join("missing"), &Device::Cpu), Err(ModelError::Io { .. })));
    }
}

/// `frozen()` computes the same outputs bit for bit without an autograd graph, in f32 and bf16, and
/// shares the parameters' storage: a later change to a parameter shows through.
#[test]
fn frozen_network_is_the_same_function_without_a_graph() {
    for kind in [ModelKind::Unetr, ModelKind::Unet] {
        let cfg = tiny(kind);
        let mut model = MagMs::new(cfg.clone(), &Device::Cpu).unwrap();
        let x = inputs(&cfg, 0b1011, 2);
        for dtype in [candle_core::DType::F32, candle_core::DType::BF16] {
            model.set_compute_dtype(dtype).unwrap();
            let frozen = model.frozen().unwrap();
            assert_eq!(frozen.compute_dtype(), dtype);
            let (a, b) = (model.forward(&x, true).unwrap(), frozen.forward(&x, true).unwrap());
            assert!(a.fused.track_op(), "{kind:?}: the trainable network builds a graph");
            assert!(!b.fused.track_op(), "{kind:?}: the frozen one builds none");
            for (p, q) in [(&a.fused, &b.fused), (&a.modalities[2].logits, &b.modalities[2].logits)] {
                let (p, q) = (
                    p.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    q.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                );
                assert_eq!(p, q, "{kind:?} {dtype:?}: frozen outputs differ");
            }
        }
        model.set_compute_dtype(candle_core::DType::F32).unwrap();
        let frozen = model.frozen().unwrap();
        let before = frozen.forward(&x, false).unwrap().fused;
        for (_, var) in model.trainable_vars() {
            var.set(&var.as_tensor().affine(0.5, 0.01).unwrap()).unwrap();
        }
        let after = frozen.forward(&x, false).unwrap().fused;
        let fresh = model.forward(&x, false).unwrap().fused;
        assert!(max_abs_diff(&before, &after) > 0.0, "{kind:?}: the update shows through");
        assert_eq!(max_abs_diff(&after, &fresh), 0.0, "{kind:?}: frozen and trainable agree after it");
    }
}
