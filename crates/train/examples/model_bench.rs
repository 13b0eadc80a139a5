//! MAG-MS timing on any device, printed as one JSON line (run by the GPU bundle's run.sh next to
//! the PyTorch peer, ../shared/peers/gpu_peer.py):
//!
//! * `model_bench step`: one training step (all modalities' forward, fused and single outputs,
//!   DiceCE + KL + feature MSE, backward, AdamW) — `magseg_train::train_step`, as `magseg train` runs it;
//! * `model_bench infer`: Gaussian sliding-window inference of one whole multi-modal case
//!   (`magseg_train::sliding_window_probs`, as `magseg predict` runs it, host blending included).
//!
//! Options: `--device cpu|cuda|cuda:N` (cpu), `--backbone unetr|unet` (unetr, MONAI's sizes as the
//! peer), `--size S` (96, the patch / window side), `--batch B` (1), `--modalities M` (4),
//! `--precision f32|bf16` (f32), `--iters N` (5), `--warmup N` (2), and for `infer`
//! `--dims I,J,K` (240,240,155), `--overlap F` (0.5), `--windows N` (4, windows per batch).
//! Host memory is tuned as in the `magseg` binary (`magseg_kernels::alloc::keep_freed_memory`) unless
//! `MAGSEG_DEFAULT_MALLOC` is set.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use magseg_distill::LossConfig;
use magseg_model::{MagMs, MagMsConfig, ModelKind};
use magseg_train::{
    parse_device, sliding_window_probs, train_step, Adam, InferInput, OptimConfig, OptimizerKind, Precision, StepPlan,
    WindowConfig,
};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

struct Opts {
    what: String,
    device: String,
    backbone: ModelKind,
    size: usize,
    batch: usize,
    modalities: usize,
    precision: Precision,
    iters: usize,
    warmup: usize,
    dims: [usize; 3],
    overlap: f32,
    windows: usize,
}

fn parse() -> Res<Opts> {
    let mut args = std::env::args().skip(1);
    let what = args.next().ok_or("usage: model_bench step|infer [options] (see the file's header)")?;
    if what != "step" && what != "infer" {
        return Err(format!("unknown benchmark '{what}': step or infer").into());
    }
    let mut o = Opts {
        what,
        device: "cpu".into(),
        backbone: ModelKind::Unetr,
        size: 96,
        batch: 1,
        modalities: 4,
        precision: Precision::F32,
        iters: 5,
        warmup: 2,
        dims: [240, 240, 155],
        overlap: 0.5,
        windows: 4,
    };
    while let Some(flag) = args.next() {
        let v = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--device" => o.device = v,
            "--backbone" => {
                o.backbone = match v.as_str() {
                    "unetr" => ModelKind::Unetr,
                    "unet" => ModelKind::Unet,
                    _ => return Err(format!("--backbone {v}: unetr or unet").into()),
                }
            }
            "--size" => o.size = v.parse()?,
            "--batch" => o.batch = v.parse()?,
            "--modalities" => o.modalities = v.parse()?,
            "--precision" => o.precision = v.parse()?,
            "--iters" => o.iters = v.parse()?,
            "--warmup" => o.warmup = v.parse()?,
            "--overlap" => o.overlap = v.parse()?,
            "--windows" => o.windows = v.parse()?,
            "--dims" => {
                let d: Vec<usize> = v.split(',').map(str::parse).collect::<Result<_, _>>()?;
                o.dims = d.try_into().map_err(|_| "--dims needs I,J,K")?;
            }
            _ => return Err(format!("unknown option {flag}").into()),
        }
    }
    if o.iters == 0 {
        return Err("--iters must be ≥ 1".into());
    }
    Ok(o)
}

fn model(o: &Opts, device: &Device) -> Res<MagMs> {
    let config = MagMsConfig {
        kind: o.backbone,
        modalities: (0..o.modalities).map(|m| format!("m{m}")).collect(),
        patch_size: [o.size; 3],
        ..MagMsConfig::default()
    };
    let mut net = MagMs::with_seed(config, device, 0)?;
    net.set_compute_dtype(o.precision.dtype())?;
    Ok(net)
}

/// Median and all times (ms) of `iters` runs of `f` after `warmup` runs, synchronising `device`.
fn time(device: &Device, warmup: usize, iters: usize, mut f: impl FnMut() -> Res) -> Res<(f64, Vec<f64>)> {
    for _ in 0..warmup {
        f()?;
    }
    device.synchronize()?;
    let mut ms = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        f()?;
        device.synchronize()?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mut sorted = ms.clone();
    sorted.sort_by(f64::total_cmp);
    Ok((sorted[sorted.len() / 2], ms))
}

fn main() -> Res {
    // Host memory as the `magseg` binary tunes it (large freed blocks kept, no trimming): without it a
    // CPU step at 64³ spends most of its time in page faults (39 s instead of 15 s per step).
    if std::env::var_os("MAGSEG_DEFAULT_MALLOC").is_none() {
        magseg_kernels::alloc::keep_freed_memory();
    }
    let o = parse()?;
    let device = parse_device(&o.device)?;
    let net = model(&o, &device)?;
    let tag = format!(
        "magseg_{}_{}_M{}_roi{}_bs{}_{}",
        o.what,
        match o.backbone {
            ModelKind::Unetr => "unetr",
            ModelKind::Unet => "unet",
        },
        o.modalities,
        o.size,
        o.batch,
        match o.precision {
            Precision::F32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    );
    let mut res = serde_json::Map::new();
    res.insert("device".into(), o.device.clone().into());
    res.insert("parameters".into(), net.num_parameters().into());
    let (median, all) = if o.what == "step" {
        let s = o.size;
        let inputs: Vec<Tensor> = (0..o.modalities)
            .map(|_| Tensor::randn(0f32, 1.0, (o.batch, 1, s, s, s), &device))
            .collect::<Result<_, _>>()?;
        let target = Tensor::rand(0f32, 4.0, (o.batch, s, s, s), &device)?.floor()?.to_dtype(DType::U8)?;
        // The peer's optimiser: AdamW, lr 1e-4, no AMSGrad, no clipping.
        let cfg = OptimConfig {
            kind: OptimizerKind::Adamw,
            lr: 1e-4,
            amsgrad: false,
            clip_value: None,
            ..OptimConfig::default()
        };
        let mut optim = Adam::new(net.trainable_vars(), cfg)?;
        let mut step = 0;
        time(&device, o.warmup, o.iters, || {
            let plan = StepPlan { loss: LossConfig::default(), subsets: &[], lr: 1e-4, step };
            train_step(&net, &mut optim, inputs.clone(), &target, plan)?;
            step += 1;
            Ok(())
        })?
    } else {
        let [i, j, k] = o.dims;
        let n = i * j * k;
        let image: Vec<f32> = Tensor::randn(0f32, 1.0, o.modalities * n, &Device::Cpu)?.to_vec1()?;
        let slots: Vec<Option<usize>> = (0..o.modalities).map(Some).collect();
        let input = InferInput { dims: o.dims, image: &image, slots: &slots };
        let cfg = WindowConfig { overlap: o.overlap, windows_per_batch: o.windows, ..WindowConfig::default() };
        res.insert("dims".into(), serde_json::json!(o.dims));
        res.insert("overlap".into(), o.overlap.into());
        res.insert("windows_per_batch".into(), o.windows.into());
        time(&device, o.warmup, o.iters, || {
            sliding_window_probs(&net, input, &cfg)?;
            Ok(())
        })?
    };
    res.insert(format!("{tag}_ms"), ((median * 100.0).round() / 100.0).into());
    res.insert(
        format!("{tag}_all_ms"),
        serde_json::json!(all.iter().map(|v| (v * 10.0).round() / 10.0).collect::<Vec<_>>()),
    );
    println!("{}", serde_json::Value::Object(res));
    Ok(())
}
