//! The optimiser against torch.optim.Adam / AdamW (golden values from tests/golden/gen_optim.py),
//! and its state surviving a save/restore.

use candle_core::{Device, Tensor, Var};
use magseg_train::{Adam, OptimConfig, OptimizerKind};
use serde_json::Value;

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn golden() -> Value {
    serde_json::from_str(include_str!("golden/optim.json")).unwrap()
}

/// A GradStore holding exactly `grads` for `vars`: the gradient of Σ p·g is g.
fn grad_store(vars: &[Var], grads: &[Vec<f32>]) -> candle_core::backprop::GradStore {
    let mut loss: Option<Tensor> = None;
    for (v, g) in vars.iter().zip(grads) {
        let g = Tensor::from_vec(g.clone(), v.dims(), &Device::Cpu).unwrap();
        let term = (v.as_tensor() * g).unwrap().sum_all().unwrap();
        loss = Some(match loss {
            None => term,
            Some(l) => (l + term).unwrap(),
        });
    }
    loss.unwrap().backward().unwrap()
}

fn make(g: &Value, config: &Value) -> (Vec<Var>, Adam) {
    let shapes: Vec<Vec<usize>> = serde_json::from_value(g["shapes"].clone()).unwrap();
    let vars: Vec<Var> = (shapes.iter().zip(g["init"].as_array().unwrap()))
        .map(|(s, v)| Var::from_tensor(&Tensor::from_vec(floats(v), s.as_slice(), &Device::Cpu).unwrap()).unwrap())
        .collect();
    let cfg = OptimConfig {
        kind: if config["kind"] == "adam" { OptimizerKind::Adam } else { OptimizerKind::Adamw },
        lr: 1.0,
        weight_decay: config["weight_decay"].as_f64().unwrap(),
        amsgrad: config["amsgrad"].as_bool().unwrap(),
        betas: [0.9, 0.999],
        eps: 1e-8,
        clip_value: config["clip_value"].as_f64(),
        clip_norm: config["clip_norm"].as_f64(),
    };
    let named = vars.iter().enumerate().map(|(i, v)| (format!("p{i}"), v.clone())).collect();
    (vars, Adam::new(named, cfg).unwrap())
}

#[test]
fn matches_torch_adam_and_adamw() {
    let g = golden();
    let grads: Vec<Vec<Vec<f32>>> =
        (g["grads"].as_array().unwrap().iter()).map(|s| s.as_array().unwrap().iter().map(floats).collect()).collect();
    let lrs: Vec<f64> = serde_json::from_value(g["lrs"].clone()).unwrap();
    for (name, case) in g["cases"].as_object().unwrap() {
        let (vars, mut opt) = make(&g, &case["config"]);
        let want = case["params_after_each_step"].as_array().unwrap();
        for (step, gs) in grads.iter().enumerate() {
            opt.step(&grad_store(&vars, gs), lrs[step]).unwrap();
            for (i, v) in vars.iter().enumerate() {
                let got = v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let exp = floats(&want[step][i]);
                assert_eq!(got.len(), exp.len());
                for (a, b) in got.iter().zip(&exp) {
                    assert!((a - b).abs() <= 2e-6 * (1.0 + b.abs()), "{name} step {step} param {i}: {a} vs {b}");
                }
            }
        }
        assert_eq!(opt.steps(), grads.len() as u64);
    }
}

#[test]
fn state_round_trip_continues_identically() {
    let g = golden();
    let grads: Vec<Vec<Vec<f32>>> =
        (g["grads"].as_array().unwrap().iter()).map(|s| s.as_array().unwrap().iter().map(floats).collect()).collect();
    let config = &g["cases"]["adam_amsgrad_wd_clamp"]["config"];
    let (vars_a, mut a) = make(&g, config);
    let (vars_b, mut b) = make(&g, config);
    for gs in &grads[..3] {
        a.step(&grad_store(&vars_a, gs), 0.01).unwrap();
        b.step(&grad_store(&vars_b, gs), 0.01).unwrap();
    }
    // Restore b's state into a fresh optimiser over b's variables, then continue both.
    let state = b.state_tensors();
    assert_eq!(state.len(), 6, "m, v and vmax for two parameters");
    let named = vars_b.iter().enumerate().map(|(i, v)| (format!("p{i}"), v.clone())).collect();
    let mut c = Adam::new(named, b.config().clone()).unwrap();
    c.load_state(state, b.steps()).unwrap();
    for gs in &grads[3..] {
        a.step(&grad_store(&vars_a, gs), 0.01).unwrap();
        c.step(&grad_store(&vars_b, gs), 0.01).unwrap();
    }
    for (x, y) in vars_a.iter().zip(&vars_b) {
        let x = x.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let y = y.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(x, y, "bit-identical after restoring the state");
    }
    // A state with a wrong shape or an unknown name is refused.
    let mut bad = b.state_tensors();
    bad.insert("m.nope".into(), Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap());
    assert!(c.load_state(bad, 3).is_err());
}

#[test]
fn non_finite_gradients_are_an_error_and_change_nothing() {
    let v = Var::from_tensor(&Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap()).unwrap();
    let cfg = OptimConfig { clip_value: None, ..OptimConfig::default() };
    let mut opt = Adam::new(vec![("p".into(), v.clone())], cfg).unwrap();
    let err = opt.step(&grad_store(std::slice::from_ref(&v), &[vec![f32::NAN, 1.0]]), 0.1).unwrap_err();
    assert!(err.to_string().contains("diverged"), "{err}");
    assert_eq!(v.as_tensor().to_vec1::<f32>().unwrap(), vec![1.0, 2.0]);
    assert_eq!(opt.steps(), 0);
    assert!(Adam::new(vec![], OptimConfig { lr: -1.0, ..OptimConfig::default() }).is_err());
}
