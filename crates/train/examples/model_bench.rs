//! MAG-MS timing on any device, printed as one JSON line (run by the GPU bundle's run.sh next to
//! the PyTorch peer, ../shared/peers/gpu_peer.py):
//!
//! * `model_bench step`: one training step (all modalities' forward, fused and single outputs,
//!   DiceCE + KL + feature MSE, backward, AdamW) — `magseg_train::train_step`, as `magseg train` runs it;
//! * `model_bench infer`: Gaussian sliding-window inference of one whole multi-modal case
//!   (`magseg_train::sliding_window_probs`, as `magseg predict` runs it, host blending included);
//! * `model_bench graph`: the size of the autograd graph of one training step's loss (the step's
//!   forward and MAG-MS loss, no backward), `{"graph_ops": …, "graph_variables": …}` — candle
//!   launches about one kernel per op node forward and a few per node backward, so on a GPU, where
//!   small ops cost their launch, this counts what the step pays besides arithmetic.
//!
//! Options: `--device cpu|cuda|cuda:N` (cpu), `--backbone unetr|unet` (unetr, MONAI's sizes as the
//! peer), `--size S` (96, the patch / window side), `--batch B` (1), `--modalities M` (4),
//! `--precision f32|bf16|tf32` (f32), `--iters N` (5), `--warmup N` (2), and for `infer`
//! `--dims I,J,K` (240,240,155), `--overlap F` (0.5), `--windows N` (4, windows per batch), and
//! `--profile` (off).
//! Host memory is tuned as in the `magseg` binary (`magseg_kernels::alloc::keep_freed_memory`) unless
//! `MAGSEG_DEFAULT_MALLOC` is set.
//!
//! `--profile` says where the time goes without nsys: it installs a `tracing` layer that times every
//! span of the magseg crates (targets `magseg*`, every level, TRACE included: the conv passes'
//! `conv3d_cuda_fwd` / `_bwd_data` / `_bwd_weight` and `adam_step` are TRACE spans) during the timed
//! iterations only (not the warm-up). It synchronises the device when a span is entered and again
//! when it is exited, so each span's time is the device work it launched, but the run as a whole
//! (the usual `…_ms` keys) is slower than a plain run: compare those only between plain runs. Keys
//! added to the JSON line:
//!
//! * `"profile"`: span name → `{"ms": total per timed iteration (the span's closes during the timed
//!   iterations summed, divided by --iters), "calls": closes per iteration}`. Times are inclusive
//!   (a span's time contains its children's, e.g. `train_step` ⊃ `step_backward` ⊃
//!   `conv3d_cuda_bwd_data`), so they do not add up across nesting levels. Spans of the same name
//!   are summed whatever their fields (all conv shapes in one `conv3d`).
//! * `"phases"`: the median over the timed iterations of each phase's per-iteration time (ms) —
//!   `step`: forward (`model.forward`), loss (the MAG-MS loss and its host read-back), backward
//!   (`total.backward()`), optimizer (`optim.step`); `infer`: upload (window extraction and host →
//!   device copy), encode (`model.encode`), decode (mean fusion and `model.decode`), download
//!   (softmax and device → host copy), accumulate (host Gaussian blending) — and `other`, the median
//!   of (iteration time − the phases' sum).
//!
//! On a CUDA device the line also has `…_peak_GiB` (the most device memory in live tensors at any
//! time in the process, warm-up and model included: as the peer's `torch.cuda.max_memory_allocated`)
//! and `…_reserved_GiB` (what the memory pool holds at the end; `magseg_kernels::alloc::cuda_device`
//! makes it keep freed memory).
//!
//! Without `--profile` no subscriber is installed and the spans cost nothing measurable.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use magseg_distill::{magms_loss, magms_loss_stacked, LossConfig};
use magseg_model::{MagMs, MagMsConfig, ModelKind};
use magseg_train::{
    parse_device, sliding_window_probs, train_step, Adam, InferInput, OptimConfig, OptimizerKind, Precision, StepPlan,
    WindowConfig,
};
use tracing::span::Id;
use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

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
    profile: bool,
}

fn parse() -> Res<Opts> {
    let mut args = std::env::args().skip(1);
    let what = args.next().ok_or("usage: model_bench step|infer|graph [options] (see the file's header)")?;
    if !["step", "infer", "graph"].contains(&what.as_str()) {
        return Err(format!("unknown benchmark '{what}': step, infer or graph").into());
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
        profile: false,
    };
    while let Some(flag) = args.next() {
        if flag == "--profile" {
            o.profile = true;
            continue;
        }
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
    o.precision.apply()?;
    net.set_compute_dtype(o.precision.dtype())?;
    Ok(net)
}

/// Each span name's total time and number of closes.
type Totals = HashMap<&'static str, (Duration, u64)>;

/// What `--profile` counts: the spans closed while `active` (the timed iterations), by name.
struct Profiler {
    device: Device,
    active: AtomicBool,
    totals: Mutex<Totals>,
}

impl Profiler {
    fn new(device: &Device) -> Self {
        Self { device: device.clone(), active: AtomicBool::new(false), totals: Mutex::default() }
    }

    fn set_active(&self, on: bool) {
        self.active.store(on, Ordering::SeqCst);
    }

    /// The totals so far.
    fn snapshot(&self) -> Totals {
        self.totals.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// The `tracing` layer of `--profile`: times magseg's spans between device synchronisations.
struct SyncTimer(Arc<Profiler>);

/// When a counted span was entered (kept in the span's extensions).
struct Entered(Instant);

/// Spans of the magseg crates, at every level.
fn counted(meta: &Metadata<'_>) -> bool {
    meta.is_span() && meta.target().starts_with("magseg")
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for SyncTimer {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if counted(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>, _: Context<'_, S>) -> bool {
        counted(meta)
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if !self.0.active.load(Ordering::Relaxed) {
            return;
        }
        if let Some(span) = ctx.span(id) {
            // A failed synchronisation fails the benchmark's own one at the end of the iteration.
            self.0.device.synchronize().ok();
            span.extensions_mut().replace(Entered(Instant::now()));
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let Some(Entered(t0)) = span.extensions_mut().remove::<Entered>() else { return };
        self.0.device.synchronize().ok();
        let dt = t0.elapsed();
        let mut totals = self.0.totals.lock().unwrap_or_else(PoisonError::into_inner);
        let e = totals.entry(span.name()).or_default();
        e.0 += dt;
        e.1 += 1;
    }
}

/// The median of `v` (the upper one of an even count), NaN when empty.
fn median(v: &[f64]) -> f64 {
    let mut sorted = v.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// Median and all times (ms) of `iters` runs of `f` after `warmup` runs, synchronising `device`;
/// with a `profiler`, also its totals after each timed run (counting only during those).
fn time(
    device: &Device,
    warmup: usize,
    iters: usize,
    profiler: Option<&Profiler>,
    mut f: impl FnMut() -> Res,
) -> Res<(f64, Vec<f64>, Vec<Totals>)> {
    for _ in 0..warmup {
        f()?;
    }
    device.synchronize()?;
    let mut ms = Vec::with_capacity(iters);
    let mut snapshots = Vec::new();
    if let Some(p) = profiler {
        p.set_active(true);
    }
    for _ in 0..iters {
        let t = Instant::now();
        f()?;
        device.synchronize()?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        if let Some(p) = profiler {
            snapshots.push(p.snapshot());
        }
    }
    if let Some(p) = profiler {
        p.set_active(false);
    }
    Ok((median(&ms), ms, snapshots))
}

/// `"profile"`: span name → {"ms": total per iteration, "calls": closes per iteration}.
fn profile_json(snapshots: &[Totals], iters: usize) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (name, (total, closes)) in snapshots.last().into_iter().flatten() {
        let calls: serde_json::Value = if closes % iters as u64 == 0 {
            (closes / iters as u64).into()
        } else {
            round(*closes as f64 / iters as f64, 2).into()
        };
        let ms = round(total.as_secs_f64() * 1e3 / iters as f64, 3);
        out.insert((*name).into(), serde_json::json!({ "ms": ms, "calls": calls }));
    }
    out.into()
}

/// `"phases"`: per phase (key, span name) the median of its per-iteration time (ms), and `other`,
/// the median of each iteration's time less its phases.
fn phases_json(snapshots: &[Totals], all_ms: &[f64], phases: &[(&str, &str)]) -> serde_json::Value {
    let ms_of = |t: &Totals, span: &str| t.get(span).map_or(0.0, |(d, _)| d.as_secs_f64() * 1e3);
    let empty = Totals::new();
    let mut out = serde_json::Map::new();
    let mut other: Vec<f64> = all_ms.to_vec();
    for (key, span) in phases {
        let per_iter: Vec<f64> = snapshots
            .iter()
            .enumerate()
            .map(|(i, t)| ms_of(t, span) - ms_of(if i == 0 { &empty } else { &snapshots[i - 1] }, span))
            .collect();
        for (o, p) in other.iter_mut().zip(&per_iter) {
            *o -= p;
        }
        out.insert((*key).into(), round(median(&per_iter), 3).into());
    }
    out.insert("other".into(), round(median(&other), 3).into());
    out.into()
}

fn main() -> Res {
    // Host memory as the `magseg` binary tunes it (large freed blocks kept, no trimming): without it a
    // CPU step at 64³ spends most of its time in page faults (39 s instead of 15 s per step).
    if std::env::var_os("MAGSEG_DEFAULT_MALLOC").is_none() {
        magseg_kernels::alloc::keep_freed_memory();
    }
    let o = parse()?;
    let device = parse_device(&o.device)?;
    let profiler = o.profile.then(|| Arc::new(Profiler::new(&device)));
    if let Some(p) = &profiler {
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(SyncTimer(p.clone())))?;
    }
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
            Precision::Tf32 => "tf32",
        }
    );
    let mut res = serde_json::Map::new();
    res.insert("device".into(), o.device.clone().into());
    res.insert("parameters".into(), net.num_parameters().into());
    let prof = profiler.as_deref();
    if o.what == "graph" {
        let s = o.size;
        let inputs: Vec<Option<Tensor>> = (0..o.modalities)
            .map(|_| Tensor::randn(0f32, 1.0, (o.batch, 1, s, s, s), &device).map(Some))
            .collect::<Result<_, _>>()?;
        let target = Tensor::rand(0f32, 4.0, (o.batch, s, s, s), &device)?.floor()?.to_dtype(DType::U8)?;
        let fwd = net.forward(&inputs, true)?;
        let (logits, feats): (Vec<Tensor>, Vec<Vec<Tensor>>) =
            fwd.modalities.iter().map(|m| (m.logits.clone(), m.features.clone())).unzip();
        let loss = match &fwd.stacked {
            Some(st) => magms_loss_stacked(&st.logits, logits.len() + 1, &st.features, &target, LossConfig::default())?,
            None => magms_loss(&fwd.fused, &logits, &feats, &fwd.fused_features, &target, LossConfig::default())?,
        };
        let nodes = loss.total.sorted_nodes();
        let vars = nodes.iter().filter(|n| n.is_variable()).count();
        res.insert("size".into(), s.into());
        res.insert("graph_ops".into(), (nodes.len() - vars).into());
        res.insert("graph_variables".into(), vars.into());
        println!("{}", serde_json::Value::Object(res));
        return Ok(());
    }
    let (median, all, snapshots) = if o.what == "step" {
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
        time(&device, o.warmup, o.iters, prof, || {
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
        time(&device, o.warmup, o.iters, prof, || {
            sliding_window_probs(&net, input, &cfg)?;
            Ok(())
        })?
    };
    res.insert(format!("{tag}_ms"), ((median * 100.0).round() / 100.0).into());
    res.insert(
        format!("{tag}_all_ms"),
        serde_json::json!(all.iter().map(|v| (v * 10.0).round() / 10.0).collect::<Vec<_>>()),
    );
    #[cfg(feature = "cuda")]
    if device.is_cuda() {
        let pool = magseg_kernels::alloc::cuda_pool_bytes(&device)?;
        let gib = |b: u64| (b as f64 / f64::from(1u32 << 30) * 100.0).round() / 100.0;
        res.insert(format!("{tag}_peak_GiB"), gib(pool.used_high).into());
        res.insert(format!("{tag}_reserved_GiB"), gib(pool.reserved).into());
    }
    if o.profile {
        let phases: &[(&str, &str)] = if o.what == "step" {
            &[
                ("forward", "step_forward"),
                ("loss", "step_loss"),
                ("backward", "step_backward"),
                ("optimizer", "step_optimizer"),
            ]
        } else {
            &[
                ("upload", "window_upload"),
                ("encode", "window_encode"),
                ("decode", "window_decode"),
                ("download", "window_download"),
                ("accumulate", "window_accumulate"),
            ]
        };
        res.insert("profile".into(), profile_json(&snapshots, o.iters));
        res.insert("phases".into(), phases_json(&snapshots, &all, phases));
    }
    println!("{}", serde_json::Value::Object(res));
    Ok(())
}
