//! `magseg predict`: segment one case (files per modality) or many case folders with a trained model,
//! from any subset of its modalities; the label map is written on the inputs' own grid.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use magseg_train::{parse_device, PredictOptions, Predictor, WindowConfig};
use magseg_volume::{discover, load_images, read_image, write_image, write_labels, Image};

use crate::CliResult;

/// Arguments of `magseg predict`.
#[derive(clap::Args)]
pub struct Args {
    /// The trained model directory (a run's `best/` or `last/`).
    #[arg(long)]
    model: PathBuf,
    /// FLAIR image.
    #[arg(long)]
    flair: Option<PathBuf>,
    /// T1 image.
    #[arg(long)]
    t1: Option<PathBuf>,
    /// T1 with gadolinium (T1gd / T1ce) image.
    #[arg(long)]
    t1ce: Option<PathBuf>,
    /// T2 image.
    #[arg(long)]
    t2: Option<PathBuf>,
    /// Any modality by the model's name for it: NAME=FILE (repeatable), e.g. --image t2f=case-t2f.nii.gz.
    #[arg(long = "image", value_name = "NAME=FILE")]
    images: Vec<String>,
    /// Case folders or data sets (BraTS, BraTS 2023, MSD layouts) instead of single files; every case is
    /// predicted into --out (a folder) as <case>.nii.gz.
    #[arg(long = "input-dir", value_name = "DIR")]
    input_dirs: Vec<PathBuf>,
    /// With --input-dir: use only these modalities (comma-separated); default: every model modality a case has.
    #[arg(long, value_delimiter = ',')]
    modalities: Vec<String>,
    /// Output label map (.nii.gz), or the output folder with --input-dir.
    #[arg(long)]
    out: PathBuf,
    /// Also write per-class probabilities (float32, one channel per class): a file, or <case>_probs.nii.gz
    /// next to each output with --input-dir.
    #[arg(long)]
    probs: Option<Option<PathBuf>>,
    /// Sliding-window overlap in [0, 1).
    #[arg(long, default_value_t = 0.5)]
    overlap: f32,
    /// Gaussian σ of the window blending, as a fraction of the window.
    #[arg(long, default_value_t = 0.125)]
    sigma_scale: f32,
    /// Windows run through the network at once.
    #[arg(long, default_value_t = 1)]
    windows_per_batch: usize,
    /// Run the whole volume through the network at once instead of sliding windows (U-Net models
    /// only; needs memory for the whole volume's activations).
    #[arg(long)]
    whole: bool,
    /// Test-time augmentation: average over the 8 mirrorings of the three axes (8× slower).
    #[arg(long)]
    mirror: bool,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// f32; bf16 (mixed precision: bf16 activations, f32 weights, norms and probabilities); tf32 (f32
    /// with the GPU convolutions on tensor cores as tf32).
    #[arg(long, default_value = "f32")]
    precision: String,
}

/// One case to predict: (modality, file) pairs, the output and the probabilities file.
struct Job {
    id: String,
    /// The data set case (multi-channel MSD files are split by modality), when from --input-dir.
    case: Option<magseg_volume::Case>,
    files: Vec<(String, PathBuf)>,
    out: PathBuf,
    probs: Option<PathBuf>,
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

fn jobs(a: &Args, predictor: &Predictor) -> CliResult<Vec<Job>> {
    let named = [("flair", &a.flair), ("t1", &a.t1), ("t1ce", &a.t1ce), ("t2", &a.t2)];
    let mut files: Vec<(String, PathBuf)> =
        named.iter().filter_map(|(n, p)| p.as_ref().map(|p| (n.to_string(), p.clone()))).collect();
    for spec in &a.images {
        let (name, path) = spec.split_once('=').ok_or_else(|| format!("--image {spec}: expected NAME=FILE"))?;
        files.push((name.to_string(), PathBuf::from(path)));
    }
    if !a.input_dirs.is_empty() {
        if !files.is_empty() {
            return Err("give either image files (--flair, --image, ...) or --input-dir, not both".into());
        }
        let mut out = Vec::new();
        for dir in &a.input_dirs {
            for case in discover(dir)?.cases {
                let wanted: Vec<String> = predictor
                    .modalities()
                    .iter()
                    .filter(|m| a.modalities.is_empty() || a.modalities.contains(m))
                    .filter(|m| case.modality(m).is_some())
                    .cloned()
                    .collect();
                for m in &a.modalities {
                    if !predictor.modalities().contains(m) {
                        return Err(format!(
                            "--modalities: the model knows no modality '{m}' (it has {})",
                            predictor.modalities().join(", ")
                        )
                        .into());
                    }
                    if case.modality(m).is_none() {
                        return Err(format!("case {} has no {m} image", case.id).into());
                    }
                }
                if wanted.is_empty() {
                    return Err(format!(
                        "case {} has none of the model's modalities ({})",
                        case.id,
                        predictor.modalities().join(", ")
                    )
                    .into());
                }
                let files = wanted
                    .iter()
                    .map(|m| (m.clone(), case.modality(m).map(|f| f.path.clone()).unwrap_or_default()))
                    .collect();
                let probs = a.probs.as_ref().map(|_| a.out.join(format!("{}_probs.nii.gz", case.id)));
                out.push(Job {
                    out: a.out.join(format!("{}.nii.gz", case.id)),
                    id: case.id.clone(),
                    case: Some(case),
                    files,
                    probs,
                });
            }
        }
        return Ok(out);
    }
    if files.is_empty() {
        return Err("no input: give image files (--flair, --t1, --t1ce, --t2, --image NAME=FILE) or --input-dir".into());
    }
    let probs = match &a.probs {
        None => None,
        Some(Some(p)) => Some(p.clone()),
        Some(None) => return Err("--probs needs a file name when predicting single files".into()),
    };
    Ok(vec![Job { id: "case".into(), case: None, files, out: a.out.clone(), probs }])
}

/// Peak resident memory of this process in MiB (Linux), if known.
fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Run the command.
pub fn run(a: &Args, verbose: bool) -> CliResult {
    let device = parse_device(&a.device)?;
    let mut predictor = Predictor::load(&a.model, &device)?;
    predictor.set_precision(a.precision.parse()?)?;
    let jobs = jobs(a, &predictor)?;
    // Refuse every bad input before writing anything.
    for job in &jobs {
        let names: Vec<&str> = job.files.iter().map(|(n, _)| n.as_str()).collect();
        predictor.subset_of(&names)?;
        for (_, f) in &job.files {
            for o in std::iter::once(&job.out).chain(job.probs.as_ref()) {
                if same_file(f, o) {
                    return Err(format!("output {} is an input image; choose another output", o.display()).into());
                }
            }
            if !f.is_file() {
                return Err(format!("{}: no such file", f.display()).into());
            }
        }
    }
    if !a.input_dirs.is_empty() {
        std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    }
    let opts = PredictOptions {
        window: WindowConfig {
            overlap: a.overlap,
            sigma_scale: a.sigma_scale,
            windows_per_batch: a.windows_per_batch,
            whole: a.whole,
        },
        mirror: a.mirror,
        probabilities: a.probs.is_some(),
    };
    opts.window.validate()?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} windows ({eta})")?.progress_chars("=> "),
    );
    for job in &jobs {
        bar.set_message(job.id.clone());
        let start = std::time::Instant::now();
        let inputs = read_inputs(job)?;
        let pred = predictor.predict(&inputs, &opts, &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })?;
        let input_paths: Vec<PathBuf> = job.files.iter().map(|(_, p)| p.clone()).collect();
        write_labels(&job.out, &pred.labels, &input_paths)?;
        if let (Some(p), Some(probs)) = (&job.probs, &pred.probabilities) {
            write_image(p, probs, &input_paths)?;
        }
        let mods: Vec<&str> = job.files.iter().map(|(n, _)| n.as_str()).collect();
        bar.suspend(|| {
            println!("{}: {} → {} ({:.1} s)", job.id, mods.join("+"), job.out.display(), start.elapsed().as_secs_f64())
        });
    }
    bar.finish_and_clear();
    if verbose {
        if let Some(mib) = peak_memory_mib() {
            eprintln!("peak memory: {mib:.0} MiB");
        }
    }
    Ok(())
}

fn read_inputs(job: &Job) -> CliResult<Vec<(String, Image)>> {
    if let Some(case) = &job.case {
        let names: Vec<&str> = job.files.iter().map(|(n, _)| n.as_str()).collect();
        return Ok(load_images(case, &names)?.images);
    }
    let mut out = Vec::with_capacity(job.files.len());
    for (name, path) in &job.files {
        out.push((name.clone(), read_image(path)?));
    }
    Ok(out)
}
