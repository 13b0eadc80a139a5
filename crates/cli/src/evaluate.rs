//! `magseg evaluate`: Dice, HD95 and ASSD per case and region, with means that count what they exclude.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use magseg_metrics::{evaluate_labels, summarize, BothEmpty, Connectivity, EvalOptions, Grid, Hd95Convention};
use magseg_metrics::{RegionMetrics, RegionSummary};
use magseg_volume::labels::{LabelPreset, Region};
use magseg_volume::{read_labels, LabelMap};
use serde::Serialize;

use crate::pairing::{pair, Pair};
use crate::CliResult;

/// Arguments of `magseg evaluate`.
#[derive(clap::Args)]
pub struct Args {
    /// Prediction: a label-map file, or a folder of them (matched to the reference by case id).
    #[arg(long, required_unless_present = "model", conflicts_with = "model")]
    pred: Option<PathBuf>,
    /// Reference: a label-map file, or a folder (a BraTS/MSD/iSEG dataset or a folder of label maps).
    #[arg(long = "ref", required_unless_present = "model", conflicts_with = "model")]
    reference: Option<PathBuf>,
    /// A trained model (a run's `best/`): predict every case of --data for every non-empty modality
    /// subset and report Dice and HD95 per subset and region, and each modality's importance (Shapley).
    #[arg(long, requires = "data")]
    pub(crate) model: Option<PathBuf>,
    /// With --model: the data set (with label maps) to evaluate on.
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// With --model: use only these case ids (comma-separated); default: every case.
    #[arg(long, value_delimiter = ',')]
    pub(crate) cases: Vec<String>,
    /// With --model: write the heat map (subsets × regions) and one overlay picture per case here.
    #[arg(long)]
    pub(crate) pictures: Option<PathBuf>,
    /// With --model: sliding-window overlap in [0, 1).
    #[arg(long, default_value_t = 0.5)]
    pub(crate) overlap: f32,
    /// With --model: windows run through the network at once.
    #[arg(long, default_value_t = 2)]
    pub(crate) windows_per_batch: usize,
    /// With --model: run each whole volume through the network at once instead of sliding windows
    /// (U-Net models only), as the PyTorch accuracy peer evaluates.
    #[arg(long)]
    pub(crate) whole: bool,
    /// With --model: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub(crate) device: String,
    /// With --model: f32, bf16 (mixed precision) or tf32 (GPU convolutions as tf32).
    #[arg(long, default_value = "f32")]
    pub(crate) precision: String,
    /// Label preset (brats, brats2023, msd-brain, iseg, binary); default: the reference dataset's, else brats.
    #[arg(long)]
    labels: Option<String>,
    /// HD95 convention: monai = max of the two directed 95th percentiles; pooled = 95th percentile of
    /// both directions' distances together (MedPy, panoptica, BraTS).
    #[arg(long, value_enum, default_value_t = Hd95Arg::Monai)]
    pub(crate) hd95: Hd95Arg,
    /// Neighbourhood defining surface voxels (mask XOR erosion).
    #[arg(long, value_parser = ["6", "26"], default_value = "6")]
    pub(crate) connectivity: String,
    /// Distance (mm) scored when exactly one of prediction and reference is empty (BraTS convention).
    #[arg(long, default_value_t = 373.13)]
    pub(crate) empty_penalty: f64,
    /// Score when both are empty: nan (excluded from means and counted) or one (Dice 1, distances 0).
    #[arg(long, value_enum, default_value_t = BothEmptyArg::Nan)]
    pub(crate) both_empty: BothEmptyArg,
    /// Write per-case rows and means as CSV ("-" or /dev/stdout for standard output).
    #[arg(long)]
    pub(crate) csv: Option<PathBuf>,
    /// Write everything as JSON ("-" or /dev/stdout for standard output).
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Evaluate only the reference cases that have a prediction (default: a missing one is an error).
    #[arg(long)]
    allow_missing: bool,
    /// Also score every single label value (regions named L<value>, e.g. L1, L2, L4) besides the
    /// preset's regions.
    #[arg(long)]
    per_label: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum Hd95Arg {
    Monai,
    Pooled,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum BothEmptyArg {
    Nan,
    One,
}

struct CaseResult {
    case: String,
    pred: PathBuf,
    reference: PathBuf,
    regions: Vec<RegionMetrics>,
}

/// JSON of one case: `regions` maps each region name to its `dice`, `hd95`, `hd`, `assd`, `note`.
#[derive(Serialize)]
struct CaseJson<'a> {
    case: &'a str,
    pred: &'a Path,
    reference: &'a Path,
    regions: BTreeMap<&'a str, &'a magseg_metrics::PairMetrics>,
}

#[derive(Serialize)]
struct Report<'a> {
    labels: &'a str,
    hd95_convention: &'a str,
    connectivity: &'a str,
    empty_penalty_mm: f64,
    cases: Vec<CaseJson<'a>>,
    /// Region name → means, standard deviations and the counts of NaN (excluded) and penalised cases.
    summary: BTreeMap<&'a str, &'a RegionSummary>,
}

pub(crate) fn is_stdout(p: &Path) -> bool {
    p == Path::new("-") || p == Path::new("/dev/stdout")
}

/// The metric options of the arguments.
pub(crate) fn eval_options(a: &Args) -> CliResult<EvalOptions> {
    let opts = EvalOptions {
        connectivity: if a.connectivity == "26" { Connectivity::TwentySix } else { Connectivity::Six },
        hd95: match a.hd95 {
            Hd95Arg::Monai => Hd95Convention::Monai,
            Hd95Arg::Pooled => Hd95Convention::Pooled,
        },
        empty_penalty_mm: a.empty_penalty,
        both_empty: match a.both_empty {
            BothEmptyArg::Nan => BothEmpty::Nan,
            BothEmptyArg::One => BothEmpty::Perfect,
        },
    };
    if !(opts.empty_penalty_mm.is_finite() && opts.empty_penalty_mm >= 0.0) {
        return Err("--empty-penalty must be a finite distance ≥ 0".into());
    }
    Ok(opts)
}

/// Run the command.
pub fn run(a: &Args) -> CliResult {
    if a.model.is_some() {
        return crate::subset_eval::run(a);
    }
    let (Some(pred), Some(reference)) = (&a.pred, &a.reference) else {
        return Err("give --pred and --ref, or --model and --data".into());
    };
    let pairing = pair(pred, reference)?;
    let mut preset = match (&a.labels, &pairing.preset) {
        (Some(name), _) => LabelPreset::named(name)?,
        (None, Some(p)) => p.clone(),
        (None, None) => LabelPreset::named("brats")?,
    };
    if a.per_label && !preset.nonzero_is_foreground {
        let singles: Vec<Region> = preset
            .classes
            .iter()
            .filter(|(v, _)| *v != 0)
            .map(|(v, _)| Region { name: format!("L{v}"), labels: vec![*v] })
            .collect();
        preset.regions.extend(singles);
    }
    if !pairing.missing_pred.is_empty() {
        let msg = format!(
            "{} reference case(s) have no prediction in {}: {}",
            pairing.missing_pred.len(),
            pred.display(),
            pairing.missing_pred.join(", ")
        );
        if !a.allow_missing {
            return Err(format!("{msg} (use --allow-missing to evaluate the others)").into());
        }
        eprintln!("note: {msg}; they are not evaluated");
    }
    if pairing.pairs.is_empty() {
        return Err(format!("no prediction in {} matches a reference case id", pred.display()).into());
    }
    if !pairing.unmatched_pred.is_empty() {
        let shown: Vec<String> = pairing.unmatched_pred.iter().take(5).map(|p| p.display().to_string()).collect();
        eprintln!(
            "note: {} file(s) in --pred match no reference case and are not evaluated: {}{}",
            pairing.unmatched_pred.len(),
            shown.join(", "),
            if pairing.unmatched_pred.len() > 5 { ", ..." } else { "" }
        );
    }
    let opts = eval_options(a)?;
    let bar = ProgressBar::new(pairing.pairs.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} evaluating [{bar:30}] {pos}/{len} {msg} ({eta})")?
            .progress_chars("=> "),
    );
    let mut cases = Vec::with_capacity(pairing.pairs.len());
    for p in &pairing.pairs {
        bar.set_message(p.id.clone());
        cases.push(evaluate_pair(p, &preset, &opts)?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let per_case: Vec<Vec<RegionMetrics>> = cases.iter().map(|c| c.regions.clone()).collect();
    let summary = summarize(&per_case);
    let to_stdout = a.csv.as_deref().is_some_and(is_stdout) || a.json.as_deref().is_some_and(is_stdout);
    if !to_stdout {
        print_table(&cases, &summary, &opts);
    }
    if let Some(p) = &a.csv {
        write_out(p, &csv(&cases, &summary))?;
    }
    if let Some(p) = &a.json {
        let report = Report {
            labels: &preset.name,
            hd95_convention: if matches!(a.hd95, Hd95Arg::Monai) { "monai" } else { "pooled" },
            connectivity: &a.connectivity,
            empty_penalty_mm: a.empty_penalty,
            cases: cases
                .iter()
                .map(|c| CaseJson {
                    case: &c.case,
                    pred: &c.pred,
                    reference: &c.reference,
                    regions: c.regions.iter().map(|r| (r.region.as_str(), &r.metrics)).collect(),
                })
                .collect(),
            summary: summary.iter().map(|s| (s.region.as_str(), s)).collect(),
        };
        write_out(p, &(serde_json::to_string_pretty(&report)? + "\n"))?;
    }
    Ok(())
}

fn read_checked(path: &Path, preset: &LabelPreset) -> CliResult<LabelMap> {
    let l = read_labels(path)?;
    if l.channels != 1 {
        return Err(format!("{}: a label map must have one channel, found {}", path.display(), l.channels).into());
    }
    if !preset.nonzero_is_foreground {
        preset.validate(&l, path)?;
    }
    Ok(l)
}

fn evaluate_pair(p: &Pair, preset: &LabelPreset, opts: &EvalOptions) -> CliResult<CaseResult> {
    let (pred, reference) = std::thread::scope(|s| {
        let h = s.spawn(|| read_checked(&p.pred, preset));
        let r = read_checked(&p.reference, preset);
        (h.join().unwrap_or_else(|_| Err("reading thread failed".into())), r)
    });
    let (pred, reference) = (pred?, reference?);
    if let Some(d) = reference.geometry.difference(&pred.geometry, 1e-3) {
        return Err(format!(
            "case {}: prediction {} and reference {} are on different grids: {d}",
            p.id,
            p.pred.display(),
            p.reference.display()
        )
        .into());
    }
    let grid = Grid { dims: reference.geometry.dims, spacing: reference.geometry.spacing };
    let regions = evaluate_labels(&pred.data, &reference.data, &grid, preset, opts)?;
    Ok(CaseResult { case: p.id.clone(), pred: p.pred.clone(), reference: p.reference.clone(), regions })
}

fn write_out(p: &Path, text: &str) -> CliResult {
    if is_stdout(p) {
        std::io::stdout().write_all(text.as_bytes())?;
        return Ok(());
    }
    let tmp = p.with_extension("magseg-tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, p).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(())
}

fn num(v: f64, digits: usize) -> String {
    if v.is_nan() {
        "NaN".into()
    } else {
        format!("{v:.digits$}")
    }
}

fn note(m: &RegionMetrics) -> String {
    m.metrics.note.map(|n| n.describe().to_string()).unwrap_or_default()
}

fn print_table(cases: &[CaseResult], summary: &[RegionSummary], opts: &EvalOptions) {
    let w = cases.iter().map(|c| c.case.len()).max().unwrap_or(4).max(8);
    let conv = match opts.hd95 {
        Hd95Convention::Monai => "monai",
        Hd95Convention::Pooled => "pooled",
    };
    println!("{:<w$}  {:<6}  {:>7}  {:>10}  {:>10}  note", "case", "region", "Dice", format!("HD95 {conv}"), "ASSD mm");
    for c in cases {
        for r in &c.regions {
            println!(
                "{:<w$}  {:<6}  {:>7}  {:>10}  {:>10}  {}",
                c.case,
                r.region,
                num(r.metrics.dice, 4),
                num(r.metrics.hd95, 3),
                num(r.metrics.assd, 3),
                note(r)
            );
        }
    }
    println!();
    for s in summary {
        println!(
            "mean {:<6} Dice {}  HD95 {} mm  ASSD {} mm  (n = {}, {} NaN excluded, {} penalised with {} mm)",
            s.region,
            num(s.dice_mean, 4),
            num(s.hd95_mean, 3),
            num(s.assd_mean, 3),
            s.n,
            s.n_nan,
            s.n_penalised,
            opts.empty_penalty_mm
        );
    }
}

fn csv(cases: &[CaseResult], summary: &[RegionSummary]) -> String {
    let mut out = String::from("case,region,dice,hd95,hd,assd,note\n");
    for c in cases {
        for r in &c.regions {
            let m = &r.metrics;
            out += &format!("{},{},{},{},{},{},{}\n", c.case, r.region, m.dice, m.hd95, m.hd, m.assd, note(r));
        }
    }
    for s in summary {
        out += &format!(
            "MEAN,{},{},{},,{},n={} nan={} penalised={}\n",
            s.region, s.dice_mean, s.hd95_mean, s.assd_mean, s.n, s.n_nan, s.n_penalised
        );
    }
    out
}
