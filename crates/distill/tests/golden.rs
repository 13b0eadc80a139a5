//! Compares the losses and their gradients with PyTorch / MONAI 1.6.1 golden values
//! (`tests/golden/gen.py`, see `tests/golden/README.md`).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use magseg_distill::{dice_ce, feature_mse, kl_distill, magms_loss, KlOptions, LossConfig};

const RTOL: f64 = 1e-4;

fn load() -> HashMap<String, Tensor> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/golden.safetensors");
    candle_core::safetensors::load(path, &Device::Cpu).expect("golden file")
}

fn vec64(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

fn scalar(t: &Tensor) -> f64 {
    vec64(t)[0]
}

fn close(name: &str, got: f64, want: f64) {
    let tol = RTOL * want.abs().max(1e-6);
    assert!((got - want).abs() <= tol, "{name}: got {got}, want {want} (|diff| {} > {tol})", (got - want).abs());
}

/// Element-wise relative comparison; elements much smaller than the tensor's largest one are
/// compared relative to 1e-2 of that maximum (gradients have many near-zero entries).
fn close_tensor(name: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.dims(), want.dims(), "{name}: shape");
    let (g, w) = (vec64(got), vec64(want));
    let max = w.iter().fold(0f64, |a, b| a.max(b.abs()));
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let tol = RTOL * b.abs().max(1e-2 * max);
        assert!((a - b).abs() <= tol, "{name}[{i}]: got {a}, want {b} (|diff| {} > {tol})", (a - b).abs());
    }
}

struct Case {
    lambda: f64,
    gamma: f64,
    t: f64,
    soften: bool,
    z: Vec<Tensor>,
    target: Tensor,
    feats: Vec<Vec<Tensor>>,
    fbar: Vec<Tensor>,
}

fn case(g: &HashMap<String, Tensor>, i: usize) -> Option<Case> {
    let p = format!("c{i}.");
    let cfg = vec64(g.get(&format!("{p}cfg"))?);
    let (m, levels) = (cfg[4] as usize, cfg[5] as usize);
    let z = (0..=m).map(|k| g[&format!("{p}z{k}")].clone()).collect();
    let feats = (1..=m).map(|k| (0..levels).map(|l| g[&format!("{p}f{k}.{l}")].clone()).collect()).collect();
    let fbar = (0..levels).map(|l| g[&format!("{p}fbar.{l}")].clone()).collect();
    Some(Case {
        lambda: cfg[0],
        gamma: cfg[1],
        t: cfg[2],
        soften: cfg[3] != 0.0,
        z,
        target: g[&format!("{p}target")].clone(),
        feats,
        fbar,
    })
}

#[test]
fn golden_parts() {
    let g = load();
    let mut n = 0;
    while let Some(c) = case(&g, n) {
        let p = format!("c{n}.");
        let dice_want = vec64(&g[&format!("{p}dice_ce")]);
        for (k, z) in c.z.iter().enumerate() {
            let got = scalar(&dice_ce(z, &c.target).unwrap());
            close(&format!("{p}dice_ce[{k}]"), got, dice_want[k]);
        }
        let kl_want = vec64(&g[&format!("{p}kl")]);
        let mse_want = vec64(&g[&format!("{p}mse")]);
        let opts = KlOptions { soften_teacher: c.soften, detach_teacher: false };
        for k in 1..c.z.len() {
            let got = scalar(&kl_distill(&c.z[k], &c.z[0], c.t, opts).unwrap());
            close(&format!("{p}kl[{k}]"), got, kl_want[k - 1]);
            let got = scalar(&feature_mse(&c.feats[k - 1], &c.fbar).unwrap());
            close(&format!("{p}mse[{k}]"), got, mse_want[k - 1]);
        }
        n += 1;
    }
    assert_eq!(n, 7, "expected 7 golden cases");
}

#[test]
fn golden_total_and_gradients() {
    let g = load();
    let mut n = 0;
    while let Some(c) = case(&g, n) {
        let p = format!("c{n}.");
        for detach in [false, true] {
            let tag = if detach { "detach" } else { "ref" };
            let vars: Vec<Var> = c.z.iter().map(|z| Var::from_tensor(z).unwrap()).collect();
            let zs: Vec<Tensor> = vars[1..].iter().map(|v| v.as_tensor().clone()).collect();
            let cfg = LossConfig {
                lambda: c.lambda,
                gamma: c.gamma,
                temperature: c.t,
                soften_teacher: c.soften,
                detach_teacher: detach,
            };
            let parts = magms_loss(vars[0].as_tensor(), &zs, &c.feats, &c.fbar, &c.target, cfg).unwrap();
            let want_total = scalar(&g[&format!("{p}{tag}.total")]);
            close(&format!("{p}{tag}.total"), scalar(&parts.total), want_total);
            let dice_want = vec64(&g[&format!("{p}dice_ce")]);
            for (k, d) in parts.dice_ce.iter().enumerate() {
                close(&format!("{p}parts.dice_ce[{k}]"), *d, dice_want[k]);
            }
            if c.lambda != 0.0 {
                let kl: f64 = vec64(&g[&format!("{p}kl")]).iter().sum();
                close(&format!("{p}parts.kl"), parts.kl, kl);
            } else {
                assert_eq!(parts.kl, 0.0);
            }
            if c.gamma != 0.0 {
                let mse: f64 = vec64(&g[&format!("{p}mse")]).iter().sum();
                close(&format!("{p}parts.mse"), parts.mse, mse);
            } else {
                assert_eq!(parts.mse, 0.0);
            }
            let grads = parts.total.backward().unwrap();
            for k in [0usize, 1] {
                let got = grads.get(vars[k].as_tensor()).expect("gradient");
                let want = &g[&format!("{p}{tag}.grad_z{k}")];
                close_tensor(&format!("{p}{tag}.grad_z{k}"), got, want);
            }
        }
        n += 1;
    }
    assert_eq!(n, 7, "expected 7 golden cases");
}
