//! The optimiser against torch.optim.Adam / AdamW (golden values from tests/golden/gen_optim.py),
//! and its state surviving a save/restore; the accuracy configurations follow the peer's recipe.

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
    let state = b.state_tensors().unwrap();
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
    let mut bad = b.state_tensors().unwrap();
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

/// The update composed from candle ops, one tensor at a time (the optimiser's arithmetic before it
/// was fused): the reference the fused passes must equal bit for bit when no norm clipping scales
/// the gradients (the norm's partial sums round differently).
struct Composed {
    cfg: OptimConfig,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    vmax: Vec<Tensor>,
    t: i32,
}

impl Composed {
    fn step(&mut self, vars: &[Var], grads: &[Tensor], lr: f64) {
        let c = &self.cfg;
        let gs: Vec<Tensor> = grads
            .iter()
            .map(|g| match c.clip_value {
                Some(cv) => g.clamp(-cv as f32, cv as f32).unwrap(),
                None => g.clone(),
            })
            .collect();
        let norm: f64 = gs.iter().map(|g| g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() as f64).sum();
        let norm = norm.sqrt();
        let scale = match c.clip_norm {
            Some(max) if norm > max => max / (norm + 1e-6),
            _ => 1.0,
        };
        self.t += 1;
        let [b1, b2] = c.betas;
        let (bc1, bc2) = (1.0 - b1.powi(self.t), 1.0 - b2.powi(self.t));
        for (i, (var, g)) in vars.iter().zip(gs).enumerate() {
            let mut g = if scale != 1.0 { g.affine(scale, 0.0).unwrap() } else { g };
            let mut p = var.as_tensor().clone();
            match c.kind {
                OptimizerKind::Adam => g = (g + p.affine(c.weight_decay, 0.0).unwrap()).unwrap(),
                OptimizerKind::Adamw => p = p.affine(1.0 - lr * c.weight_decay, 0.0).unwrap(),
            }
            self.m[i] = (self.m[i].affine(b1, 0.0).unwrap() + g.affine(1.0 - b1, 0.0).unwrap()).unwrap();
            self.v[i] = (self.v[i].affine(b2, 0.0).unwrap() + g.sqr().unwrap().affine(1.0 - b2, 0.0).unwrap()).unwrap();
            self.vmax[i] = self.vmax[i].maximum(&self.v[i]).unwrap();
            let second = if c.amsgrad { &self.vmax[i] } else { &self.v[i] };
            let denom = second.sqrt().unwrap().affine(1.0 / bc2.sqrt(), c.eps).unwrap();
            let update = (self.m[i].affine(lr / bc1, 0.0).unwrap() / denom).unwrap();
            var.set(&(p - update).unwrap()).unwrap();
        }
    }
}

#[test]
fn fused_passes_equal_the_update_composed_from_candle_ops() {
    // Shapes beyond one partial sum of the norm and one rayon run of the CPU passes.
    let shapes: [&[usize]; 3] = [&[3, 7000], &[17], &[40000]];
    let configs = [
        (OptimizerKind::Adam, true, 0.01, Some(0.5), None),
        (OptimizerKind::Adamw, false, 0.1, None, None),
        (OptimizerKind::Adamw, true, 0.05, Some(2.0), Some(5.0)),
    ];
    for (kind, amsgrad, weight_decay, clip_value, clip_norm) in configs {
        let cfg =
            OptimConfig { kind, lr: 1.0, weight_decay, amsgrad, betas: [0.9, 0.999], eps: 1e-8, clip_value, clip_norm };
        let mut rng = Lcg(7);
        let init: Vec<Tensor> = shapes.iter().map(|s| rng.tensor(s, 1.0)).collect();
        let fused_vars: Vec<Var> = init.iter().map(|t| Var::from_tensor(t).unwrap()).collect();
        let ref_vars: Vec<Var> = init.iter().map(|t| Var::from_tensor(t).unwrap()).collect();
        let named = fused_vars.iter().enumerate().map(|(i, v)| (format!("p{i}"), v.clone())).collect();
        let mut fused = Adam::new(named, cfg.clone()).unwrap();
        let zeros: Vec<Tensor> = init.iter().map(|t| t.zeros_like().unwrap()).collect();
        let mut composed = Composed { cfg: cfg.clone(), m: zeros.clone(), v: zeros.clone(), vmax: zeros, t: 0 };
        for (step, lr) in [0.01, 0.02, 0.005, 0.01].into_iter().enumerate() {
            let grads: Vec<Tensor> = shapes.iter().map(|s| rng.tensor(s, 3.0)).collect();
            let gs: Vec<Vec<f32>> = grads.iter().map(|g| g.flatten_all().unwrap().to_vec1().unwrap()).collect();
            let info = fused.step(&grad_store(&fused_vars, &gs), lr).unwrap();
            assert_eq!(info.updated, shapes.len());
            composed.step(&ref_vars, &grads, lr);
            for (i, (a, b)) in fused_vars.iter().zip(&ref_vars).enumerate() {
                let a = a.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let b = b.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                if clip_norm.is_none() {
                    assert_eq!(a, b, "{kind:?} step {step} param {i}: bit for bit");
                } else {
                    for (x, y) in a.iter().zip(&b) {
                        assert!((x - y).abs() <= 1e-6 * (1.0 + y.abs()), "{kind:?} step {step} param {i}: {x} vs {y}");
                    }
                }
            }
        }
    }
}

/// A small deterministic generator of uniform values in [−scale, scale).
struct Lcg(u64);

impl Lcg {
    fn tensor(&mut self, shape: &[usize], scale: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }
}

#[test]
fn clipping_can_be_switched_off_in_toml_and_json() {
    let parse = |text: &str| toml::from_str::<OptimConfig>(text);
    // Left out: the default (the reference clamps values to ±1, no norm clipping).
    let d = parse("").unwrap();
    assert_eq!((d.clip_value, d.clip_norm), (Some(1.0), None));
    let c = parse("clip_value = \"none\"\nclip_norm = 12").unwrap();
    assert_eq!((c.clip_value, c.clip_norm), (None, Some(12.0)));
    assert_eq!(parse("clip_value = \"None\"").unwrap().clip_value, None);
    assert_eq!(parse("clip_value = 0.5").unwrap().clip_value, Some(0.5));
    let err = parse("clip_value = \"off\"").unwrap_err().to_string();
    assert!(err.contains("\"none\""), "{err}");
    // A saved run configuration (JSON) keeps `None` as null and reads it back as `None`.
    let text = serde_json::to_string(&c).unwrap();
    assert!(text.contains("\"clip_value\":null"), "{text}");
    assert_eq!(serde_json::from_str::<OptimConfig>(&text).unwrap(), c);
}

#[test]
fn accuracy_configurations_follow_the_peer_recipe() {
    // The accuracy configurations (GPU, and its CPU stand-in) clip as the PyTorch peer does: the norm
    // at 12, no value clamp; augment as it does, flips (p 0.5 per axis) only; and score as it does,
    // on whole volumes.
    for name in ["train-brats-2mm-gpu.toml", "train-brats-2mm-cpu-steps.toml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/examples").join(name);
        let config: magseg_train::TrainConfig = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!((config.optim.clip_value, config.optim.clip_norm), (None, Some(12.0)), "{name}");
        let a = &config.sampling.augment;
        assert_eq!((a.flip_p, a.rot90_p, a.scale_p, a.shift_p), (0.5, 0.0, 0.0, 0.0), "{name}");
        assert!(config.validation.window.whole, "{name}");
    }
}
