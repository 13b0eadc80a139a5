//! Golden tests against PyTorch: forward values and autograd gradients of conv3d, conv_transpose3d and
//! instance_norm, for every case in tests/golden/kernels.safetensors (made by tests/golden/gen.py,
//! torch 2.15 in float64, stored as float32; see tests/golden/README.md).
//!
//! Each case stores the inputs, a fixed upstream gradient `g` of the output's shape, the output `y` and
//! the gradients of `L = sum(y * g)` with respect to every input. Here the same inputs become `Var`s,
//! the magseg-kernels op runs forward, `(y * g).sum_all().backward()` runs candle's autograd through
//! the op's backward, and `y` and every gradient are compared with torch's.
//!
//! Tolerance, per tensor: `max_i |ours_i - torch_i| <= 1e-4 * max_i |torch_i|` (infinity-norm relative
//! error). An element-wise relative test would be meaningless here: outputs and gradients are sums of
//! up to ~2000 products of mixed sign, and elements that cancel to almost zero carry an absolute
//! rounding error of the size of the terms, not of the result. The norm-wise measure is what float32
//! summation guarantees. PyTorch's own float32 path is within ~1e-6 of the float64 reference on this
//! measure for every case (cases.json, `torch_f32_rel_err`), so 1e-4 leaves two orders of magnitude
//! for a different summation order, while any indexing mistake (a wrong tap, a dropped border
//! plane, a misplaced stride) shows up as an error of order 1.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor, Var};
use magseg_kernels::{conv3d, conv_transpose3d, instance_norm, Conv3dConfig};

/// Requested tolerance: 1e-4 relative to the largest magnitude of the reference tensor.
const REL_TOL: f64 = 1e-4;

fn golden() -> HashMap<String, Tensor> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/kernels.safetensors");
    candle_core::safetensors::load(&path, &Device::Cpu).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Names of the cases whose name starts with `prefix` followed by two digits (`conv3d_07`), sorted.
fn cases(g: &HashMap<String, Tensor>, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = g
        .keys()
        .filter_map(|k| k.strip_suffix(".params"))
        .filter(|c| c.strip_prefix(prefix).is_some_and(|n| n.len() == 2 && n.bytes().all(|b| b.is_ascii_digit())))
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

fn get<'a>(g: &'a HashMap<String, Tensor>, case: &str, what: &str) -> &'a Tensor {
    g.get(&format!("{case}.{what}")).unwrap_or_else(|| panic!("golden file has no tensor {case}.{what}"))
}

fn params(g: &HashMap<String, Tensor>, case: &str) -> Vec<usize> {
    get(g, case, "params").to_vec1::<i64>().unwrap().into_iter().map(|p| usize::try_from(p).unwrap()).collect()
}

/// Infinity-norm relative error of `ours` against `reference`, with the location of the worst element.
struct Cmp {
    rel: f64,
    max_abs_err: f64,
    max_abs_ref: f64,
    worst_index: usize,
    ours_at_worst: f64,
    ref_at_worst: f64,
}

fn compare(ours: &Tensor, reference: &Tensor) -> Result<Cmp, String> {
    if ours.dims() != reference.dims() {
        return Err(format!("shape {:?}, torch has {:?}", ours.dims(), reference.dims()));
    }
    let a = ours.to_dtype(DType::F64).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f64>());
    let a = a.map_err(|e| e.to_string())?;
    let b = reference.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let max_abs_ref = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let (mut worst_index, mut max_abs_err) = (0, 0.0f64);
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let e = (x - y).abs();
        // NaN in ours compares false with everything: treat it as infinitely wrong.
        if e.is_nan() || e > max_abs_err {
            worst_index = i;
            max_abs_err = if e.is_nan() { f64::INFINITY } else { e };
        }
    }
    let rel = if max_abs_ref > 0.0 { max_abs_err / max_abs_ref } else { max_abs_err };
    Ok(Cmp { rel, max_abs_err, max_abs_ref, worst_index, ours_at_worst: a[worst_index], ref_at_worst: b[worst_index] })
}

/// Runs `op` on Vars made from `inputs` (name, tensor), backpropagates `sum(y * g)`, and compares `y` and
/// the gradient of every input (`d<name>`) with the golden tensors. Returns one line per tensor and
/// whether everything was within tolerance.
fn check_case(
    g: &HashMap<String, Tensor>,
    case: &str,
    inputs: &[(&str, Option<&Tensor>)],
    op: impl FnOnce(&[Option<Tensor>]) -> candle_core::Result<Tensor>,
) -> (Vec<String>, bool) {
    let vars: Vec<Option<Var>> = inputs.iter().map(|(_, t)| t.map(|t| Var::from_tensor(t).unwrap())).collect();
    let args: Vec<Option<Tensor>> = vars.iter().map(|v| v.as_ref().map(|v| v.as_tensor().clone())).collect();
    let upstream = get(g, case, "g");
    let run = || -> candle_core::Result<(Tensor, candle_core::backprop::GradStore)> {
        let y = op(&args)?;
        let loss = y.mul(upstream)?.sum_all()?;
        let grads = loss.backward()?;
        Ok((y, grads))
    };
    let (y, grads) = match run() {
        Ok(r) => r,
        Err(e) => return (vec![format!("{case}: error: {e}")], false),
    };
    if y.dims() != upstream.dims() {
        return (vec![format!("{case}: output shape {:?}, torch has {:?}", y.dims(), upstream.dims())], false);
    }

    let mut lines = Vec::new();
    let mut ok = true;
    let mut report = |what: &str, ours: Option<&Tensor>| {
        let reference = get(g, case, what);
        let line = match ours.map(|t| compare(t, reference)) {
            None => {
                ok = false;
                format!("{case}.{what}: FAIL no gradient produced")
            }
            Some(Err(msg)) => {
                ok = false;
                format!("{case}.{what}: FAIL {msg}")
            }
            Some(Ok(c)) => {
                let pass = c.rel <= REL_TOL;
                ok &= pass;
                format!(
                    "{case}.{what}: {} rel {:.2e} (max |err| {:.3e}, max |torch| {:.3e}; worst flat index {}: ours {:.7e}, torch {:.7e})",
                    if pass { "ok  " } else { "FAIL" },
                    c.rel,
                    c.max_abs_err,
                    c.max_abs_ref,
                    c.worst_index,
                    c.ours_at_worst,
                    c.ref_at_worst
                )
            }
        };
        lines.push(line);
    };
    report("y", Some(&y));
    for ((name, _), var) in inputs.iter().zip(&vars) {
        if let Some(var) = var {
            report(&format!("d{name}"), grads.get(var.as_tensor()));
        }
    }
    (lines, ok)
}

/// Prints every line, then fails listing the cases that were out of tolerance.
fn finish(family: &str, expected_cases: usize, results: Vec<(String, Vec<String>, bool)>) {
    assert_eq!(results.len(), expected_cases, "{family}: golden file has {} cases", results.len());
    let mut failed = Vec::new();
    for (case, lines, ok) in &results {
        for l in lines {
            println!("{l}");
        }
        if !ok {
            failed.push(case.clone());
        }
    }
    assert!(
        failed.is_empty(),
        "{family}: {} of {} cases outside {REL_TOL:e} relative: {failed:?} (run with --nocapture for the numbers)",
        failed.len(),
        results.len()
    );
}

#[test]
fn conv3d_matches_torch() {
    let g = golden();
    let mut results = Vec::new();
    for case in cases(&g, "conv3d_") {
        let p = params(&g, &case);
        let cfg = Conv3dConfig { stride: [p[0], p[1], p[2]], padding: [p[3], p[4], p[5]] };
        let bias = (p[6] == 1).then(|| get(&g, &case, "b"));
        let inputs = [("x", Some(get(&g, &case, "x"))), ("w", Some(get(&g, &case, "w"))), ("b", bias)];
        let (lines, ok) = check_case(&g, &case, &inputs, |a| {
            conv3d(a[0].as_ref().unwrap(), a[1].as_ref().unwrap(), a[2].as_ref(), cfg)
        });
        results.push((case, lines, ok));
    }
    finish("conv3d", 15, results);
}

#[test]
fn conv_transpose3d_matches_torch() {
    let g = golden();
    let mut results = Vec::new();
    for case in cases(&g, "conv_transpose3d_") {
        let p = params(&g, &case);
        assert_eq!(&p[3..6], &[0, 0, 0], "{case}: conv_transpose3d golden cases have padding 0");
        let stride = [p[0], p[1], p[2]];
        let bias = (p[6] == 1).then(|| get(&g, &case, "b"));
        let inputs = [("x", Some(get(&g, &case, "x"))), ("w", Some(get(&g, &case, "w"))), ("b", bias)];
        let (lines, ok) = check_case(&g, &case, &inputs, |a| {
            conv_transpose3d(a[0].as_ref().unwrap(), a[1].as_ref().unwrap(), a[2].as_ref(), stride)
        });
        results.push((case, lines, ok));
    }
    finish("conv_transpose3d", 3, results);
}

#[test]
fn instance_norm_matches_torch() {
    let g = golden();
    let mut results = Vec::new();
    for case in cases(&g, "instance_norm_") {
        let affine = params(&g, &case)[0] == 1;
        let eps = get(&g, &case, "eps").to_vec1::<f64>().unwrap()[0];
        let gamma = affine.then(|| get(&g, &case, "gamma"));
        let beta = affine.then(|| get(&g, &case, "beta"));
        let inputs = [("x", Some(get(&g, &case, "x"))), ("gamma", gamma), ("beta", beta)];
        let (lines, ok) = check_case(&g, &case, &inputs, |a| {
            instance_norm(a[0].as_ref().unwrap(), a[1].as_ref(), a[2].as_ref(), eps)
        });
        results.push((case, lines, ok));
    }
    finish("instance_norm", 2, results);
}
