//! `magseg train --config train.toml`: read and check the configuration, train with a progress bar
//! (loss, learning rate, ETA), print each validation, stop cleanly on Ctrl-C.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use magseg_train::{train, Observer, RunInfo, StepReport, TrainConfig, TrainOptions, Validation};

use crate::CliResult;

/// Arguments of `magseg train`.
#[derive(clap::Args)]
pub struct Args {
    /// The training configuration (TOML; see data/examples/train-phantom.toml and docs/TRAINING.md).
    #[arg(long)]
    config: PathBuf,
    /// Continue the run in train.output from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Override train.output.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Override train.device (cpu, cuda, cuda:N).
    #[arg(long)]
    device: Option<String>,
    /// Override train.precision: f32; bf16 (mixed precision; fastest on GPUs with bf16 tensor cores);
    /// tf32 (f32 with the GPU convolutions on tensor cores as tf32, PyTorch's default for convolutions).
    #[arg(long)]
    precision: Option<String>,
    /// Override train.time_limit_s (seconds of training, validation included).
    #[arg(long)]
    time_limit: Option<f64>,
}

/// Reads a training configuration, with the file and the TOML position in errors.
pub fn read_config(path: &Path) -> CliResult<TrainConfig> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read the configuration: {e}", path.display()))?;
    let config: TrainConfig = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(config)
}

/// The progress bar and validation printer.
pub(crate) struct Progress {
    pub(crate) bar: ProgressBar,
}

impl Progress {
    /// A hidden-until-started bar with the training layout.
    pub(crate) fn new() -> CliResult<Self> {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{bar:30}] {pos}/{len} steps, {elapsed} elapsed, ETA {eta} · {msg}",
            )?
            .progress_chars("=> "),
        );
        Ok(Self { bar })
    }
}

impl Progress {
    /// A line above the bar, or on stderr when the bar is hidden (no terminal).
    fn say(&self, line: impl AsRef<str>) {
        if self.bar.is_hidden() {
            eprintln!("{}", line.as_ref());
        } else {
            self.bar.println(line);
        }
    }
}

impl Observer for Progress {
    fn note(&mut self, message: &str) {
        self.say(message);
    }

    fn started(&mut self, info: &RunInfo) {
        self.bar.set_length(info.total_steps);
        self.bar.set_position(info.start_step);
        self.bar.reset_eta();
        self.say(format!(
            "training {} parameters on {} case(s), validating on {}: {} steps ({} per epoch){} → {}",
            info.parameters,
            info.cases.0,
            info.cases.1,
            info.total_steps,
            info.steps_per_epoch,
            if info.start_step > 0 { format!(", resuming after step {}", info.start_step) } else { String::new() },
            info.output.display()
        ));
    }

    fn step(&mut self, r: &StepReport) {
        self.bar.set_position(r.step);
        self.bar.set_message(format!(
            "epoch {} loss {:.4} lr {:.2e} {:.2} s/step",
            r.epoch + 1,
            r.loss,
            r.lr,
            r.seconds
        ));
    }

    fn validating(&mut self, step: u64) {
        self.bar.set_message(format!("validating after step {step}…"));
    }

    fn validated(&mut self, step: u64, v: &Validation, best: bool) {
        self.say(format!("step {step}: validation score {:.4}{}", v.score, if best { " (best so far)" } else { "" }));
        self.say(table(v));
    }
}

/// The Dice table of a validation: one row per subset, one column per region.
pub fn table(v: &Validation) -> String {
    let regions: Vec<&str> =
        v.subsets.first().map(|s| s.dice.iter().map(|(r, _)| r.as_str()).collect()).unwrap_or_default();
    let w = v.subsets.iter().map(|s| s.subset.len()).max().unwrap_or(6).max(6);
    let mut out = format!("  {:<w$}", "subset");
    for r in &regions {
        out += &format!(" {r:>7}");
    }
    for s in &v.subsets {
        out += &format!("\n  {:<w$}", s.subset);
        for (_, d) in &s.dice {
            out += &format!(" {d:>7.4}");
        }
    }
    out
}

/// Run the command.
pub fn run(a: &Args) -> CliResult {
    let mut config = read_config(&a.config)?;
    if let Some(o) = &a.output {
        config.train.output = o.clone();
    }
    if let Some(d) = &a.device {
        config.train.device = d.clone();
    }
    if let Some(p) = &a.precision {
        config.train.precision = p.parse()?;
    }
    if let Some(t) = a.time_limit {
        config.train.time_limit_s = Some(t);
    }
    config.validate()?;
    let stop = Arc::new(AtomicBool::new(false));
    let presses = Arc::new(AtomicUsize::new(0));
    {
        let (stop, presses) = (stop.clone(), presses.clone());
        ctrlc::set_handler(move || {
            if presses.fetch_add(1, Ordering::SeqCst) == 0 {
                stop.store(true, Ordering::SeqCst);
                eprintln!(
                    "\ninterrupt: finishing this step and writing a checkpoint (press Ctrl-C again to abort now)"
                );
            } else {
                eprintln!("\naborted without a checkpoint");
                std::process::exit(130);
            }
        })
        .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))?;
    }
    let mut progress = Progress::new()?;
    let outcome = train(&config, &TrainOptions { resume: a.resume, stop }, &mut progress)?;
    progress.bar.finish_and_clear();
    let out = outcome.output.display();
    if outcome.interrupted {
        println!("interrupted after step {}; checkpoint in {out}/last", outcome.state.step);
        println!("continue with: magseg train --config {} --resume", a.config.display());
        std::process::exit(130);
    }
    println!(
        "finished {} steps ({} epochs) in {:.1} s",
        outcome.state.step, outcome.state.epoch, outcome.state.elapsed_s
    );
    if let Some(v) = &outcome.last_validation {
        println!("final validation (score {:.4}):\n{}", v.score, table(v));
    }
    if let Some((score, step)) = outcome.state.best {
        println!("best score {score:.4} at step {step}: model in {out}/best");
    }
    println!("log: {out}/metrics.*  curves: {out}/curves.svg  resumable checkpoint: {out}/last");
    Ok(())
}
