//! `magseg inspect`: header and content summaries of volume files and dataset folders (text or JSON).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use magseg_volume::dataset::{discover, Dataset};
use magseg_volume::orientation::{header_affine, AffineSource};
use magseg_volume::{read_header, read_image_unchecked, Image};
use serde::Serialize;

use crate::CliResult;

/// Arguments of `magseg inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// Volume files (.nii, .nii.gz, .hdr/.img) or dataset folders (BraTS, MSD, iSEG) or manifests.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

impl Args {
    /// Text output for the given paths.
    pub fn for_paths(paths: Vec<PathBuf>) -> Self {
        Self { paths, json: false }
    }
}

/// Most distinct values a volume may hold to be reported as a label map.
const MAX_LABELS: usize = 32;

#[derive(Serialize)]
struct FileReport {
    path: PathBuf,
    format: &'static str,
    datatype: &'static str,
    byte_order: &'static str,
    dims: [usize; 3],
    channels: usize,
    spacing_mm: [f64; 3],
    orientation: String,
    affine_from: String,
    affine: [[f64; 4]; 4],
    scl_slope: f32,
    scl_inter: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    intensity: Option<Intensity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    labels: Option<Vec<LabelCount>>,
}

#[derive(Serialize)]
struct Intensity {
    min: f32,
    max: f32,
    mean: f64,
    nonzero_fraction: f64,
    non_finite: usize,
}

#[derive(Serialize)]
struct LabelCount {
    value: i64,
    count: usize,
}

#[derive(Serialize)]
struct CaseReport {
    id: String,
    modalities: Vec<String>,
    files: Vec<PathBuf>,
    label: Option<PathBuf>,
}

#[derive(Serialize)]
struct DatasetReport {
    path: PathBuf,
    layout: String,
    cases: Vec<CaseReport>,
    modalities: Vec<String>,
    label_preset: Option<String>,
    problems: Vec<String>,
    /// Full summaries of every file when the folder is a single case.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    files: Vec<FileReport>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Report {
    File(Box<FileReport>),
    Dataset(DatasetReport),
}

/// Run the command.
pub fn run(a: &Args) -> CliResult {
    let mut reports = Vec::new();
    for p in &a.paths {
        let r = if p.is_dir() || is_manifest(p) {
            Report::Dataset(inspect_dataset(p)?)
        } else {
            Report::File(Box::new(inspect_file(p)?))
        };
        if !a.json {
            print_report(&r);
        }
        reports.push(r);
    }
    if a.json {
        let v = if reports.len() == 1 {
            serde_json::to_string_pretty(&reports[0])?
        } else {
            serde_json::to_string_pretty(&reports)?
        };
        println!("{v}");
    }
    Ok(())
}

fn is_manifest(p: &Path) -> bool {
    let n = p.to_string_lossy().to_lowercase();
    n.ends_with(".toml") || n.ends_with(".csv")
}

fn affine_from(src: &magseg_volume::Source) -> String {
    let h = &src.header;
    match header_affine(h).1 {
        AffineSource::Sform => format!("sform (code {})", h.sform_code),
        AffineSource::Qform => format!("qform (code {})", h.qform_code),
        AffineSource::Pixdim => "pixdim (no sform/qform)".into(),
    }
}

fn inspect_file(path: &Path) -> CliResult<FileReport> {
    let img = read_image_unchecked(path)?;
    let labels = label_counts(&img);
    let intensity = if labels.is_none() { Some(intensity(&img)) } else { None };
    let h = &img.source.header;
    Ok(FileReport {
        path: path.to_path_buf(),
        format: img.source.format.name(),
        datatype: img.source.datatype,
        byte_order: if img.source.little_endian() { "little-endian" } else { "big-endian" },
        dims: img.geometry.dims,
        channels: img.channels,
        spacing_mm: img.geometry.spacing,
        orientation: img.geometry.orientation(),
        affine_from: affine_from(&img.source),
        affine: img.geometry.affine,
        scl_slope: h.scl_slope,
        scl_inter: h.scl_inter,
        intensity,
        labels,
    })
}

fn intensity(img: &Image) -> Intensity {
    let (mut lo, mut hi, mut sum, mut nz, mut bad) = (f32::INFINITY, f32::NEG_INFINITY, 0f64, 0usize, 0usize);
    for &v in &img.data {
        if !v.is_finite() {
            bad += 1;
            continue;
        }
        lo = lo.min(v);
        hi = hi.max(v);
        sum += f64::from(v);
        nz += usize::from(v != 0.0);
    }
    let n = img.data.len().max(1) as f64;
    Intensity { min: lo, max: hi, mean: sum / n, nonzero_fraction: nz as f64 / n, non_finite: bad }
}

/// Value counts when the volume holds few distinct whole numbers (a label map), else `None`.
fn label_counts(img: &Image) -> Option<Vec<LabelCount>> {
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    let mut last = f32::NAN;
    let mut last_key = 0i64;
    for &v in &img.data {
        if v.to_bits() == last.to_bits() {
            if let Some(c) = counts.get_mut(&last_key) {
                *c += 1;
                continue;
            }
        }
        if !v.is_finite() || v.fract() != 0.0 {
            return None;
        }
        let key = v as i64;
        *counts.entry(key).or_insert(0) += 1;
        if counts.len() > MAX_LABELS {
            return None;
        }
        last = v;
        last_key = key;
    }
    Some(counts.into_iter().map(|(value, count)| LabelCount { value, count }).collect())
}

fn inspect_dataset(path: &Path) -> CliResult<DatasetReport> {
    let ds: Dataset = discover(path)?;
    let mut problems = ds.problems.clone();
    let mut cases = Vec::new();
    let mut modalities: Vec<String> = Vec::new();
    for c in &ds.cases {
        for m in &c.modalities {
            if !modalities.contains(&m.name) {
                modalities.push(m.name.clone());
            }
        }
        let mut files: Vec<PathBuf> = Vec::new();
        for m in &c.modalities {
            if !files.contains(&m.path) {
                files.push(m.path.clone());
            }
        }
        // Header-only grid check: cheap even for large datasets.
        let mut first: Option<(PathBuf, magseg_volume::Geometry)> = None;
        for f in files.iter().chain(c.label.iter()) {
            match read_header(f) {
                Ok((_, g, _)) => match &first {
                    None => first = Some((f.clone(), g)),
                    Some((p0, g0)) => {
                        if let Some(d) = g0.difference(&g, 1e-3) {
                            problems.push(format!("{}: {} and {} differ: {d}", c.id, p0.display(), f.display()));
                        }
                    }
                },
                Err(e) => problems.push(format!("{}: {e}", c.id)),
            }
        }
        cases.push(CaseReport {
            id: c.id.clone(),
            modalities: c.modalities.iter().map(|m| m.name.clone()).collect(),
            files,
            label: c.label.clone(),
        });
    }
    let mut file_reports = Vec::new();
    if cases.len() == 1 {
        let all: Vec<PathBuf> = cases[0].files.iter().chain(cases[0].label.iter()).cloned().collect();
        let results: Vec<CliResult<FileReport>> = std::thread::scope(|s| {
            let handles: Vec<_> = all.iter().map(|f| s.spawn(move || inspect_file(f))).collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("inspection thread failed".into()))).collect()
        });
        for r in results {
            match r {
                Ok(f) => file_reports.push(f),
                Err(e) => problems.push(e.to_string()),
            }
        }
    }
    Ok(DatasetReport {
        path: path.to_path_buf(),
        layout: ds.layout.name().to_string(),
        cases,
        modalities,
        label_preset: ds.preset.as_ref().map(|p| p.name.clone()),
        problems,
        files: file_reports,
    })
}

fn fmt3(v: [f64; 3]) -> String {
    format!("{} × {} × {}", trim(v[0]), trim(v[1]), trim(v[2]))
}

fn trim(v: f64) -> String {
    // `+ 0.0` turns -0 into 0.
    let s = format!("{:.4}", v + 0.0);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn print_file(f: &FileReport, indent: &str) {
    println!("{indent}{}", f.path.display());
    println!(
        "{indent}  format       {} ({}, {}, scl_slope {} scl_inter {})",
        f.format, f.datatype, f.byte_order, f.scl_slope, f.scl_inter
    );
    let ch = if f.channels == 1 { String::new() } else { format!(" × {} channels", f.channels) };
    println!("{indent}  dims         {} × {} × {}{ch}", f.dims[0], f.dims[1], f.dims[2]);
    println!("{indent}  spacing      {} mm", fmt3(f.spacing_mm));
    println!("{indent}  orientation  {} (affine from {})", f.orientation, f.affine_from);
    for (r, row) in f.affine.iter().take(3).enumerate() {
        let label = if r == 0 { "affine" } else { "" };
        println!(
            "{indent}  {label:<12} [{:>9} {:>9} {:>9} {:>10}]",
            trim(row[0]),
            trim(row[1]),
            trim(row[2]),
            trim(row[3])
        );
    }
    if let Some(i) = &f.intensity {
        println!(
            "{indent}  intensity    min {} max {} mean {:.3}, {:.1} % non-zero{}",
            i.min,
            i.max,
            i.mean,
            100.0 * i.nonzero_fraction,
            if i.non_finite > 0 { format!(", {} NaN/infinite voxels", i.non_finite) } else { String::new() }
        );
    }
    if let Some(l) = &f.labels {
        let total: usize = l.iter().map(|c| c.count).sum::<usize>().max(1);
        let parts: Vec<String> = l
            .iter()
            .map(|c| format!("{}: {} ({:.2} %)", c.value, c.count, 100.0 * c.count as f64 / total as f64))
            .collect();
        println!("{indent}  labels       {}", parts.join(", "));
    }
}

/// One line per file when they share a grid (the usual case), full blocks otherwise.
fn print_case_files(files: &[FileReport]) {
    let Some(first) = files.first() else { return };
    let shared = files.iter().all(|f| {
        f.dims == first.dims && f.spacing_mm == first.spacing_mm && f.affine == first.affine && f.channels == 1
    });
    if !shared {
        for f in files {
            println!();
            print_file(f, "  ");
        }
        return;
    }
    println!(
        "  grid         {} × {} × {}, {} mm, {} (affine from {}), shared by all {} files",
        first.dims[0],
        first.dims[1],
        first.dims[2],
        fmt3(first.spacing_mm),
        first.orientation,
        first.affine_from,
        files.len()
    );
    for f in files {
        let name = f.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let what = match (&f.intensity, &f.labels) {
            (_, Some(l)) => format!("labels {}", label_summary(l)),
            (Some(i), None) => {
                format!("intensity {} .. {} ({:.1} % non-zero)", i.min, i.max, 100.0 * i.nonzero_fraction)
            }
            (None, None) => String::new(),
        };
        println!("    {name:<36} {:<8} {what}", f.datatype);
    }
}

fn label_summary(l: &[LabelCount]) -> String {
    let total: usize = l.iter().map(|c| c.count).sum::<usize>().max(1);
    l.iter()
        .map(|c| format!("{}: {} ({:.2} %)", c.value, c.count, 100.0 * c.count as f64 / total as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_report(r: &Report) {
    match r {
        Report::File(f) => print_file(f, ""),
        Report::Dataset(d) => {
            println!("{}", d.path.display());
            println!("  layout       {}", d.layout);
            println!("  cases        {}", d.cases.len());
            println!("  modalities   {}", d.modalities.join(", "));
            println!("  labels       {}", d.label_preset.as_deref().unwrap_or("(no preset)"));
            let shown = 20;
            for c in d.cases.iter().take(shown) {
                println!(
                    "    {:<28} {}{}",
                    c.id,
                    c.modalities.join(" "),
                    if c.label.is_some() { " + seg" } else { "" }
                );
            }
            if d.cases.len() > shown {
                println!("    ... and {} more", d.cases.len() - shown);
            }
            if d.problems.is_empty() {
                println!("  problems     none");
            } else {
                println!("  problems     {}", d.problems.len());
                for p in &d.problems {
                    println!("    - {p}");
                }
            }
            print_case_files(&d.files);
        }
    }
    println!();
}
