//! A small network of these ops plus candle's layer_norm_slow and softmax(x, dim): every trainable
//! variable must receive a non-zero gradient (candle's fast LayerNorm / softmax_last_dim give none).

mod common;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder, VarMap};
use common::Rng;
use magseg_kernels::{conv3d, conv_transpose3d, instance_norm, Conv3dConfig};

fn forward(vb: &VarBuilder, x: &Tensor) -> candle_core::Result<Tensor> {
    let init = Init::Randn { mean: 0.0, stdev: 0.3 };
    let get = |shape: &[usize], name: &str| vb.get_with_hints(shape, name, init);
    let p1 = Conv3dConfig { stride: [1; 3], padding: [1; 3] };
    let down = Conv3dConfig { stride: [2; 3], padding: [0; 3] };
    // conv (no bias before a norm) → instance norm → LeakyReLU-ish
    let h = conv3d(x, &get(&[4, 2, 3, 3, 3], "conv1.weight")?, None, p1)?;
    let h = instance_norm(&h, Some(&get(&[4], "norm1.weight")?), Some(&get(&[4], "norm1.bias")?), 1e-5)?;
    let h = (h.relu()? + (h * 0.2)?)?;
    // strided conv with bias → layer norm over channels (channels-last) → gelu
    let h = conv3d(&h, &get(&[6, 4, 2, 2, 2], "down.weight")?, Some(&get(&[6], "down.bias")?), down)?;
    let h = h.permute((0, 2, 3, 4, 1))?;
    let h = candle_nn::ops::layer_norm_slow(&h, &get(&[6], "ln.weight")?, &get(&[6], "ln.bias")?, 1e-5)?;
    let h = h.permute((0, 4, 1, 2, 3))?.gelu()?;
    // up-sampling back to the input grid, 1×1×1 output conv, softmax over classes
    let h = conv_transpose3d(&h, &get(&[6, 4, 2, 2, 2], "up.weight")?, Some(&get(&[4], "up.bias")?), [2; 3])?;
    let logits =
        conv3d(&h, &get(&[3, 4, 1, 1, 1], "out.weight")?, Some(&get(&[3], "out.bias")?), Conv3dConfig::default())?;
    candle_nn::ops::softmax(&logits, 1)
}

#[test]
fn every_variable_gets_a_nonzero_gradient() {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let mut rng = Rng(11);
    let x = rng.tensor(&[2, 2, 6, 6, 6]);
    let p = forward(&vb, &x).unwrap();
    assert_eq!(p.dims(), [2, 3, 6, 6, 6]);
    let sums = p.sum(1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "softmax over classes sums to 1");
    let target = rng.tensor(&[2, 3, 6, 6, 6]);
    let loss = (p.log().unwrap() * target).unwrap().mean_all().unwrap();
    let grads = loss.backward().unwrap();
    assert!(grads.get(&x).is_none(), "the input image is no variable: no gradient computed for it");
    let data = varmap.data().lock().unwrap();
    assert_eq!(data.len(), 11, "all variables were created");
    for (name, var) in data.iter() {
        let g = grads.get(var).unwrap_or_else(|| panic!("{name}: no gradient at all"));
        let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(norm > 1e-12 && norm.is_finite(), "{name}: gradient norm² {norm}");
    }
}
