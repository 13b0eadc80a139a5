//! The `magseg` command-line program: argument parsing, logging set-up, progress bars and exit codes.

mod demo;
mod evaluate;
mod inspect;
mod model_info;
mod pairing;
mod phantom;
mod predict;
mod subset_eval;
mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Modality-agnostic 3-D medical image segmentation (MAG-MS): one model, any subset of MRI modalities.
#[derive(Parser)]
#[command(
    name = "magseg",
    version,
    about = "Modality-agnostic 3-D medical image segmentation (MAG-MS): one model, any subset of MRI modalities",
    long_about = None,
    propagate_version = true
)]
struct Cli {
    /// More log output (-v info, -vv debug); MAGSEG_LOG=<filter> overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Summarise NIfTI/Analyze files or dataset folders: geometry, orientation, intensities, labels.
    Inspect(inspect::Args),
    /// Generate deterministic synthetic multi-modal brain-tumour cases in the BraTS layout.
    Phantom(phantom::Args),
    /// Score predicted label maps against references: Dice, HD95 and ASSD per case and region.
    Evaluate(evaluate::Args),
    /// Show a model checkpoint's configuration and parameter count.
    ModelInfo(model_info::Args),
    /// Generate phantom data, train a tiny model, evaluate every modality subset: the whole method in minutes.
    Demo(demo::Args),
    /// Segment a case (or many) with a trained model from any subset of its modalities.
    Predict(predict::Args),
    /// Train a MAG-MS model from a TOML configuration (resumable, with validation and curves).
    Train(train::Args),
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MAGSEG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

fn main() -> ExitCode {
    // Large tensors: keep freed memory for reuse instead of page-faulting fresh pages per allocation.
    magseg_kernels::alloc::keep_freed_memory();
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Inspect(a) => inspect::run(&a),
        Command::Phantom(a) => phantom::run(&a),
        Command::Evaluate(a) => evaluate::run(&a),
        Command::ModelInfo(a) => model_info::run(&a),
        Command::Train(a) => train::run(&a),
        Command::Predict(a) => predict::run(&a, cli.verbose > 0),
        Command::Demo(a) => demo::run(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut src = std::error::Error::source(&*e);
            while let Some(s) = src {
                eprintln!("  caused by: {s}");
                src = s.source();
            }
            ExitCode::FAILURE
        }
    }
}

/// Error type of the CLI commands.
pub type CliResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;
