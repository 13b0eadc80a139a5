//! One MAG-MS training step with the 3-D U-Net backbone against the PyTorch accuracy peer
//! (`../shared/peers/magms_unet_ref.py`'s network and loss, golden values from
//! `tests/golden/gen_unet_step.py`, float64): the fused logits, the loss and its parts, and the
//! gradient of every parameter, through the calls the trainer's step makes (`MagMs::forward` in
//! training mode, `magms_loss_stacked`, backward).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use magseg_distill::{magms_loss_stacked, LossConfig};
use magseg_model::{load_weights, MagMs, MagMsConfig, ModelKind};

/// Bound on max-abs-error / max|reference| per tensor. Seen (2026-12-07, CPU): fused logits 1.3e-6,
/// gradients ≤ 4.6e-5 (an instance-norm weight: the float32 sums over each norm's ~6000 voxels
/// and over the batch are what separates the two); the loss parts agree to 1e-7.
const REL_TOL: f32 = 5e-4;

fn golden() -> HashMap<String, Tensor> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/unet_step.safetensors");
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn scalar(t: &HashMap<String, Tensor>, name: &str) -> Vec<f64> {
    t[name].to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap()
}

/// Max-abs-error relative to max|reference|.
fn relative_error(got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.dims(), want.dims());
    let max = |t: Tensor| t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    max((got - want).unwrap()) / max(want.clone())
}

#[test]
fn unet_training_step_matches_the_pytorch_peer() {
    let g = golden();
    let config = MagMsConfig {
        kind: ModelKind::Unet,
        modalities: ["flair", "t1", "t1ce", "t2"].map(String::from).to_vec(),
        out_channels: 4,
        patch_size: [16, 16, 24],
        unet_base_channels: 2,
        ..MagMsConfig::default()
    };
    let model = MagMs::new(config, &Device::Cpu).unwrap();
    // The golden parameters (float16, cast exactly to f32) under magseg's names, through the
    // checkpoint loader, which insists that every name and shape matches.
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("model.safetensors");
    let params: HashMap<String, Tensor> = g
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("param.").map(|n| (n.to_string(), v.to_dtype(DType::F32).unwrap())))
        .collect();
    candle_core::safetensors::save(&params, &weights).unwrap();
    load_weights(model.varmap(), &weights).unwrap();

    let inputs: Vec<Option<Tensor>> = (0..4).map(|m| Some(g[&format!("input_{m}")].clone())).collect();
    let out = model.forward(&inputs, true).unwrap();
    let e = relative_error(&out.fused, &g["fused_logits"]);
    eprintln!("fused logits: relative error {e:.2e}");
    assert!(e <= REL_TOL, "fused logits: relative error {e:e}");

    let stacked = out.stacked.expect("four modalities decode as one stacked batch");
    let parts = magms_loss_stacked(&stacked.logits, 5, &stacked.features, &g["target"], LossConfig::default()).unwrap();
    let total = parts.total.to_scalar::<f32>().unwrap() as f64;
    let close = |what: &str, got: f64, want: f64| {
        eprintln!("{what}: {got:.7} vs {want:.7}");
        assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "{what}: {got} vs {want}");
    };
    close("total", total, scalar(&g, "loss_total")[0]);
    for (i, (got, want)) in parts.dice_ce.iter().zip(scalar(&g, "loss_dice_ce")).enumerate() {
        close(&format!("dice_ce[{i}]"), *got, want);
    }
    close("kl", parts.kl, scalar(&g, "loss_kl")[0]);
    close("mse", parts.mse, scalar(&g, "loss_mse")[0]);

    let grads = parts.total.backward().unwrap();
    let vars = model.trainable_vars();
    assert_eq!(vars.len(), params.len(), "every golden parameter is a trainable variable");
    let mut worst = (0f32, String::new());
    for (name, var) in &vars {
        let got = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{name}: no gradient"));
        let e = relative_error(got, &g[&format!("grad.{name}")]);
        assert!(e <= REL_TOL, "{name}: gradient relative error {e:e}");
        if e > worst.0 {
            worst = (e, name.clone());
        }
    }
    eprintln!("gradients of {} parameters: worst relative error {:.2e} ({})", vars.len(), worst.0, worst.1);
}
