//! `magseg demo`: on a machine with no data, generate phantom cases, train the tiny MAG-MS model on the
//! CPU for a few minutes, evaluate every modality subset on the held-out cases, print the subset table and
//! the modality importance, and write the pictures.

use std::path::PathBuf;
use std::time::Instant;

use magseg_metrics::EvalOptions;
use magseg_train::{train, TrainConfig, TrainOptions, WindowConfig};
use magseg_volume::phantom::{write_dataset, PhantomOptions, REVEALS};

use crate::subset_eval::{evaluate_model, Job};
use crate::train::Progress;
use crate::CliResult;

/// The configuration the demo trains with (also the CI learning test's).
const CONFIG: &str = include_str!("../../../data/examples/train-phantom.toml");

/// Arguments of `magseg demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Output folder: phantom data, the training run, pictures.
    #[arg(long, default_value = "out/demo")]
    out: PathBuf,
    /// Phantom cases (the last 2 are held out for validation and evaluation).
    #[arg(long, default_value_t = 8)]
    cases: usize,
    /// Seed of the data and of training.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Run the command.
pub fn run(a: &Args) -> CliResult {
    let start = Instant::now();
    if a.cases < 3 {
        return Err("--cases must be at least 3 (2 are held out)".into());
    }
    let run_dir = a.out.join("run");
    if run_dir.exists() {
        return Err(format!("{} already holds a demo run; remove it or choose another --out", run_dir.display()).into());
    }
    let data = a.out.join("phantom");
    println!("1/3 writing {} phantom cases (48³ voxels, 4 modalities) to {}", a.cases, data.display());
    for (modality, regions) in REVEALS {
        println!("    {modality:<5} reveals {}", regions.join(", "));
    }
    write_dataset(&data, &PhantomOptions { cases: a.cases, seed: a.seed, size: 48 }, &mut |_, _| {})?;

    let mut config: TrainConfig = toml::from_str(CONFIG).map_err(|e| format!("built-in demo configuration: {e}"))?;
    config.data.path = data.clone();
    config.train.output = run_dir.clone();
    config.train.seed = a.seed;
    println!("2/3 training the tiny MAG-MS U-Net on the CPU (configuration: data/examples/train-phantom.toml)");
    let mut progress = Progress::new()?;
    let outcome = train(&config, &TrainOptions::default(), &mut progress)?;
    progress.bar.finish_and_clear();
    println!(
        "    {} steps in {:.0} s; curves: {}",
        outcome.state.step,
        outcome.state.elapsed_s,
        run_dir.join("curves.svg").display()
    );

    let plan = config.data.plan()?;
    let held_out: Vec<String> = plan.validation.iter().map(|c| c.id.clone()).collect();
    println!("3/3 evaluating all 15 modality subsets on the held-out case(s) {}", held_out.join(", "));
    let pictures = a.out.join("pictures");
    let model = run_dir.join("best");
    let job = Job {
        model: &model,
        data: &data,
        cases: &held_out,
        pictures: Some(&pictures),
        device: "cpu",
        precision: Default::default(),
        window: WindowConfig { windows_per_batch: 2, ..WindowConfig::default() },
    };
    evaluate_model(&job, &EvalOptions::default())?;
    println!("demo finished in {:.0} s; model: {}", start.elapsed().as_secs_f64(), model.display());
    println!(
        "next: magseg predict --model {} --flair <case>_flair.nii.gz --out seg.nii.gz  (any subset of flair, t1, t1ce, t2)",
        model.display()
    );
    Ok(())
}
