//! `magseg phantom`: write synthetic multi-modal tumour cases (BraTS layout) with a progress bar.

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use magseg_volume::phantom::{write_dataset, PhantomOptions, REVEALS};

use crate::CliResult;

/// Arguments of `magseg phantom`.
#[derive(clap::Args)]
pub struct Args {
    /// Output folder (created if needed); cases go to OUT/Phantom_NNN/.
    #[arg(long)]
    out: PathBuf,
    /// Number of cases.
    #[arg(long, default_value_t = 8)]
    cases: usize,
    /// Random seed: the same seed gives the same cases, bit for bit.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Edge length of the cubic volumes in voxels (1 mm spacing).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Inspect the generated dataset afterwards.
    #[arg(long)]
    inspect: bool,
}

/// Run the command.
pub fn run(a: &Args) -> CliResult {
    if a.cases == 0 {
        return Err("--cases must be at least 1".into());
    }
    let opts = PhantomOptions { cases: a.cases, seed: a.seed, size: a.size };
    let bar = ProgressBar::new(a.cases as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} writing phantom cases [{bar:30}] {pos}/{len} ({eta})")?
            .progress_chars("=> "),
    );
    let start = std::time::Instant::now();
    let dirs = write_dataset(&a.out, &opts, &mut |done, _total| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    println!(
        "wrote {} phantom case(s) of {s}×{s}×{s} voxels (seed {}) to {} in {:.1} s",
        dirs.len(),
        a.seed,
        a.out.display(),
        start.elapsed().as_secs_f64(),
        s = a.size
    );
    println!("labels: 1 necrotic core, 2 edema, 4 enhancing rim (BraTS convention; regions WT, TC, ET)");
    for (modality, regions) in REVEALS {
        println!("  {modality:<5} reveals {}", regions.join(", "));
    }
    if a.inspect {
        println!();
        crate::inspect::run(&crate::inspect::Args::for_paths(vec![a.out.clone()]))?;
    } else {
        println!("next: magseg inspect {}", a.out.display());
    }
    Ok(())
}
