//! `magseg evaluate --model DIR --data DIR`: predict every case for every non-empty modality subset,
//! print Dice and HD95 per subset and region and each modality's importance (Shapley values of the
//! mean Dice), write CSV/JSON, a heat map and one overlay picture per case.

use std::io::Write;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use magseg_train::pictures::{axial_slice, heatmap_svg, overlay_png, tumour_slice};
use magseg_train::{
    evaluate_subsets, parse_device, Precision, PredictOptions, Predictor, SubsetEvaluation, WindowConfig,
};
use magseg_volume::discover;

use magseg_metrics::EvalOptions;

use crate::evaluate::{eval_options, is_stdout, Args};
use crate::CliResult;

/// Run the subset evaluation.
pub fn run(a: &Args) -> CliResult {
    let (Some(model), Some(data)) = (&a.model, &a.data) else {
        return Err("--model needs --data".into());
    };
    let window = WindowConfig {
        overlap: a.overlap,
        windows_per_batch: a.windows_per_batch,
        whole: a.whole,
        ..WindowConfig::default()
    };
    let job = Job {
        model,
        data,
        cases: &a.cases,
        pictures: a.pictures.as_deref(),
        device: &a.device,
        precision: a.precision.parse()?,
        window,
    };
    let result = evaluate_model(&job, &eval_options(a)?)?;
    if let Some(p) = &a.csv {
        write_out(p, &csv(&result))?;
    }
    if let Some(p) = &a.json {
        write_out(p, &(serde_json::to_string_pretty(&result)? + "\n"))?;
    }
    Ok(())
}

/// What to evaluate.
pub struct Job<'a> {
    /// The model directory.
    pub model: &'a Path,
    /// The data set.
    pub data: &'a Path,
    /// Case ids to use (empty: all).
    pub cases: &'a [String],
    /// Where to draw pictures, if anywhere.
    pub pictures: Option<&'a Path>,
    /// cpu, cuda, cuda:N.
    pub device: &'a str,
    /// f32, bf16 or tf32.
    pub precision: Precision,
    /// Sliding-window settings.
    pub window: WindowConfig,
}

/// Evaluates every subset with a progress bar, prints the tables, draws the pictures.
pub fn evaluate_model(job: &Job, eval: &EvalOptions) -> CliResult<SubsetEvaluation> {
    let mut predictor = Predictor::load(job.model, &parse_device(job.device)?)?;
    predictor.set_precision(job.precision)?;
    let dataset = discover(job.data)?;
    let mut cases = dataset.cases.clone();
    if !job.cases.is_empty() {
        for id in job.cases {
            if !cases.iter().any(|c| &c.id == id) {
                return Err(format!("--cases: no case '{id}' in {}", job.data.display()).into());
            }
        }
        cases.retain(|c| job.cases.contains(&c.id));
    }
    for c in &cases {
        if c.label.is_none() {
            return Err(format!("case {} has no label map; evaluation needs one", c.id).into());
        }
        for m in predictor.modalities() {
            if c.modality(m).is_none() {
                return Err(format!(
                    "case {} has no {m} image (the model uses {})",
                    c.id,
                    predictor.modalities().join(", ")
                )
                .into());
            }
        }
    }
    if cases.is_empty() {
        return Err(format!("{}: no case to evaluate", job.data.display()).into());
    }
    if let Some(dir) = job.pictures {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let opts = PredictOptions { window: job.window.clone(), mirror: false, probabilities: false };
    opts.window.validate()?;
    let n_subsets = (1usize << predictor.modalities().len()) - 1;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} windows ({eta})")?.progress_chars("=> "),
    );
    let first_region = predictor.preset().regions.first().map(|r| r.name.clone()).unwrap_or_default();
    let preset = predictor.preset().clone();
    let result = evaluate_subsets(
        &predictor,
        &cases,
        eval,
        &opts,
        &mut |ci, nc, done, total| {
            bar.set_message(format!("case {}/{nc} × {n_subsets} subsets", ci + 1));
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
        &mut |id, maps, reference, images| {
            let Some(dir) = job.pictures else { return Ok(()) };
            // The all-modality prediction (first subset) against the reference, on the first modality.
            let dims = reference.geometry.dims;
            let truth = preset.region_mask(&first_region, reference)?;
            let pred = preset.region_mask(&first_region, &maps[0])?;
            let k = tumour_slice(&truth, dims);
            let img = axial_slice(&images[0].1.data, dims, k);
            let path = dir.join(format!("overlay_{id}.png"));
            let scale = (512 / dims[0].max(dims[1]).max(1)).clamp(1, 8);
            overlay_png(
                &path,
                &img,
                dims[0],
                dims[1],
                &axial_slice(&truth, dims, k),
                &axial_slice(&pred, dims, k),
                scale,
            )
        },
    )?;
    bar.finish_and_clear();
    print_tables(&result, cases.len());
    if let Some(dir) = job.pictures {
        let rows: Vec<String> = result.subsets.iter().map(|s| s.name.clone()).collect();
        let values: Vec<Vec<f64>> =
            result.subsets.iter().map(|s| s.summary.iter().map(|r| r.dice_mean).collect()).collect();
        let path = dir.join("subsets_dice.svg");
        heatmap_svg(&path, "mean Dice per modality subset", &rows, &result.regions, &values)?;
        println!(
            "pictures: {} (heat map) and overlay_<case>.png ({} on an axial slice: reference green, prediction red)",
            path.display(),
            first_region
        );
    }
    Ok(result)
}

fn write_out(path: &Path, text: &str) -> CliResult {
    if is_stdout(path) {
        std::io::stdout().write_all(text.as_bytes())?;
    } else {
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// Prints the subset table and the importance table.
pub fn print_tables(r: &SubsetEvaluation, cases: usize) {
    let w = r.subsets.iter().map(|s| s.name.len()).max().unwrap_or(6).max(6);
    println!("mean over {cases} case(s); Dice (higher is better) and HD95 in mm per region");
    let mut head = format!("{:<w$}", "subset");
    for reg in &r.regions {
        head += &format!("  {:>7} {:>8}", format!("{reg} Dice"), format!("{reg} HD95"));
    }
    println!("{head}");
    for s in &r.subsets {
        let mut line = format!("{:<w$}", s.name);
        for reg in &s.summary {
            line += &format!("  {:>7.4} {:>8.2}", reg.dice_mean, reg.hd95_mean);
        }
        println!("{line}");
    }
    let mean_line = r.regions.iter().enumerate().fold(format!("{:<w$}", "mean of subsets"), |acc, (i, _)| {
        let v: Vec<f64> = r.subsets.iter().map(|s| s.summary[i].dice_mean).filter(|d| d.is_finite()).collect();
        acc + &format!("  {:>7.4} {:>8}", v.iter().sum::<f64>() / v.len().max(1) as f64, "")
    });
    println!("{mean_line}");
    println!();
    println!("modality importance: Shapley value of each modality for each region's mean Dice (sums to the all-modality Dice)");
    let mw = r.modalities.iter().map(|m| m.len()).max().unwrap_or(8).max(8);
    let mut head = format!("{:<mw$}", "modality");
    for imp in &r.importance {
        head += &format!("  {:>7}", imp.region);
    }
    println!("{head}");
    for (mi, m) in r.modalities.iter().enumerate() {
        let mut line = format!("{m:<mw$}");
        for imp in &r.importance {
            line += &format!("  {:>7.4}", imp.values[mi].1);
        }
        println!("{line}");
    }
}

fn csv(r: &SubsetEvaluation) -> String {
    let mut out = String::from("subset,case,region,dice,hd95,assd\n");
    for s in &r.subsets {
        for (case, metrics) in &s.cases {
            for m in metrics {
                out += &format!(
                    "{},{case},{},{},{},{}\n",
                    s.name, m.region, m.metrics.dice, m.metrics.hd95, m.metrics.assd
                );
            }
        }
        for m in &s.summary {
            out += &format!("{},MEAN,{},{},{},{}\n", s.name, m.region, m.dice_mean, m.hd95_mean, m.assd_mean);
        }
    }
    for imp in &r.importance {
        for (m, v) in &imp.values {
            out += &format!("shapley:{m},ALL,{},{v},,\n", imp.region);
        }
    }
    out
}
