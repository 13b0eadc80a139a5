//! UNETR tests: MONAI's parameter count and state-dict names, output shape, MONAI weight import
//! with its key checks.

use candle_core::{DType, Device, Tensor};
use magseg_model::{import_monai_unetr, ModelError, Unetr, UnetrConfig};

fn tiny() -> UnetrConfig {
    UnetrConfig {
        in_channels: 2,
        out_channels: 3,
        img_size: [32, 32, 16],
        feature_size: 4,
        hidden_size: 48,
        mlp_dim: 96,
        num_heads: 2,
        num_layers: 2,
        ..UnetrConfig::default()
    }
}

#[test]
fn default_parameter_count_equals_monai() {
    // .peers/bin/python -c "from monai.networks.nets import UNETR; m=UNETR(4,4,(96,96,96),feature_size=16,hidden_size=768,mlp_dim=3072,num_heads=12,proj_type='perceptron',norm_name='instance',res_block=True); print(sum(p.numel() for p in m.parameters()))"
    // (MONAI 1.6.1) prints 102240836.
    let model = Unetr::new(UnetrConfig::default(), &Device::Cpu).unwrap();
    assert_eq!(model.num_parameters(), 102_240_836);
}

#[test]
fn parameter_names_and_shapes_equal_monai_state_dict() {
    // tests/data/monai_unetr_keys.txt: MONAI's state dict of
    // UNETR(1, 4, (32, 32, 32), feature_size=8, hidden_size=96, mlp_dim=192, num_heads=4, ...).
    let text = include_str!("data/monai_unetr_keys.txt");
    let mut monai: Vec<(String, Vec<usize>)> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut it = l.split_whitespace();
            let name = it.next().unwrap().to_string();
            (name, it.map(|d| d.parse().unwrap()).collect())
        })
        .collect();
    monai.sort();
    let cfg = UnetrConfig {
        in_channels: 1,
        out_channels: 4,
        img_size: [32; 3],
        feature_size: 8,
        hidden_size: 96,
        mlp_dim: 192,
        num_heads: 4,
        ..UnetrConfig::default()
    };
    let model = Unetr::new(cfg, &Device::Cpu).unwrap();
    let ours: Vec<(String, Vec<usize>)> = model.named_vars().into_iter().map(|(n, v)| (n, v.dims().to_vec())).collect();
    assert_eq!(ours, monai);
}

#[test]
fn forward_shape_and_input_errors() {
    let cfg = tiny();
    let model = Unetr::new(cfg, &Device::Cpu).unwrap();
    let x = Tensor::randn(0f32, 1.0, (1, 2, 32, 32, 16), &Device::Cpu).unwrap();
    let y = model.forward(&x).unwrap();
    assert_eq!(y.dims(), &[1, 3, 32, 32, 16]);
    let bad = Tensor::zeros((1, 1, 32, 32, 16), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(model.forward(&bad), Err(ModelError::Input(_))));
    let bad = Tensor::zeros((1, 2, 32, 32, 32), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(model.forward(&bad), Err(ModelError::Input(_))));
}

#[test]
fn invalid_configs_are_errors() {
    for cfg in [
        UnetrConfig { patch_size: 8, ..tiny() },
        UnetrConfig { img_size: [32, 32, 24], ..tiny() },
        UnetrConfig { num_heads: 5, ..tiny() },
        UnetrConfig { num_layers: 0, ..tiny() },
    ] {
        assert!(matches!(Unetr::new(cfg, &Device::Cpu), Err(ModelError::Config(_))), "{cfg:?}");
    }
}

#[test]
fn monai_import_round_trip_and_key_errors() {
    let dev = Device::Cpu;
    let src = Unetr::new(tiny(), &dev).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut tensors: std::collections::HashMap<String, Tensor> =
        src.named_vars().into_iter().map(|(n, v)| (n, v.as_tensor().clone())).collect();
    let path = dir.path().join("monai.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();

    let x = Tensor::randn(0f32, 1.0, (1, 2, 32, 32, 16), &dev).unwrap();
    let dst = Unetr::from_monai(tiny(), &path, &dev).unwrap();
    let diff = (src.forward(&x).unwrap() - dst.forward(&x).unwrap()).unwrap().abs().unwrap();
    assert_eq!(diff.max_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);

    let removed = tensors.remove("vit.blocks.1.attn.qkv.weight").unwrap();
    tensors.insert("vit.blocks.1.attn.qkv.bias".into(), removed.narrow(1, 0, 1).unwrap().squeeze(1).unwrap());
    let bad = dir.path().join("bad.safetensors");
    candle_core::safetensors::save(&tensors, &bad).unwrap();
    match import_monai_unetr(&dst, &bad) {
        Err(ModelError::Keys { missing, unexpected, .. }) => {
            assert_eq!(missing, ["vit.blocks.1.attn.qkv.weight"]);
            assert_eq!(unexpected, ["vit.blocks.1.attn.qkv.bias"]);
        }
        other => panic!("expected a key error, got {other:?}"),
    }

    tensors.remove("vit.blocks.1.attn.qkv.bias");
    tensors.insert("vit.blocks.1.attn.qkv.weight".into(), Tensor::zeros((3, 3), DType::F32, &dev).unwrap());
    candle_core::safetensors::save(&tensors, &bad).unwrap();
    assert!(matches!(import_monai_unetr(&dst, &bad), Err(ModelError::WeightShape { .. })));
    assert!(matches!(import_monai_unetr(&dst, dir.path().join("none.safetensors")), Err(ModelError::Io { .. })));
}
