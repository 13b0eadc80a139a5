//! Mixed precision (bf16 activations, f32 parameters) against the f32 network on the CPU: logits and
//! gradients within the deviations PyTorch's own bf16 autocast shows on the same architecture
//! (tests/golden/bf16_autocast_torch.py), f32 logits and parameter gradients, and the dtype rules of
//! `MagMs::set_compute_dtype`.

use candle_core::{DType, Device, Tensor};
use magseg_model::{MagMs, MagMsConfig};

mod common;
use common::{check_bf16, noise, unet, unetr, GradTol, UNETR_GRAD, UNET_GRAD};

type Run = (Vec<Tensor>, Vec<(String, Tensor)>, Vec<DType>);

/// Training forward in `dtype`, loss `Σ_outputs sum(logits · r)`, backward: the logits (fused first),
/// the gradients by variable name and the dtypes of the fused features.
fn run(config: MagMsConfig, dtype: DType, inputs: &[Tensor], r: &Tensor) -> Run {
    let mut model = MagMs::with_seed(config, &Device::Cpu, 3).unwrap();
    model.set_compute_dtype(dtype).unwrap();
    assert_eq!(model.compute_dtype(), dtype);
    let xs: Vec<Option<Tensor>> = inputs.iter().map(|x| Some(x.clone())).collect();
    let out = model.forward(&xs, true).unwrap();
    let mut logits = vec![out.fused.clone()];
    logits.extend(out.modalities.iter().map(|m| m.logits.clone()));
    let mut loss = Tensor::zeros((), DType::F32, &Device::Cpu).unwrap();
    for l in &logits {
        assert_eq!(l.dtype(), DType::F32, "logits are f32 whatever the compute dtype");
        loss = (loss + (l * r).unwrap().sum_all().unwrap()).unwrap();
    }
    let grads = loss.backward().unwrap();
    let mut g: Vec<(String, Tensor)> = model
        .trainable_vars()
        .into_iter()
        .map(|(name, v)| {
            assert_eq!(v.dtype(), DType::F32, "{name}: parameters stay f32");
            let g = grads.get(&v).unwrap_or_else(|| panic!("no gradient for {name}")).clone();
            assert_eq!(g.dtype(), DType::F32, "{name}: gradients reach the f32 parameter as f32");
            (name, g)
        })
        .collect();
    g.sort_by(|a, b| a.0.cmp(&b.0));
    (logits, g, out.fused_features.iter().map(|f| f.dtype()).collect())
}

fn compare(config: MagMsConfig, tol: GradTol) {
    let inputs: Vec<Tensor> = (0..2).map(|m| noise(&[2, 1, 16, 16, 16], m + 1)).collect();
    let r = noise(&[2, 3, 16, 16, 16], 9);
    let (l32, g32, d32) = run(config.clone(), DType::F32, &inputs, &r);
    let (l16, g16, d16) = run(config, DType::BF16, &inputs, &r);
    assert!(d32.iter().all(|&d| d == DType::F32));
    assert!(d16.iter().all(|&d| d == DType::BF16), "features are computed in bf16: {d16:?}");
    check_bf16(&l32, &g32, &l16, &g16, tol);
}

#[test]
fn unet_bf16_matches_f32_within_rounding() {
    compare(unet(), UNET_GRAD);
}

#[test]
fn unetr_bf16_matches_f32_within_rounding() {
    compare(unetr(), UNETR_GRAD);
}

#[test]
fn unsupported_compute_dtypes_are_refused() {
    let mut model = MagMs::with_seed(unet(), &Device::Cpu, 0).unwrap();
    for d in [DType::F16, DType::F64, DType::U8] {
        let e = model.set_compute_dtype(d).unwrap_err().to_string();
        assert!(e.contains("not supported"), "{d:?}: {e}");
    }
    assert_eq!(model.compute_dtype(), DType::F32);
}
