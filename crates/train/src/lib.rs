//! magseg-train: the MAG-MS trainer.
//!
//! [`train`] runs a whole training from a [`TrainConfig`] (the `train.toml` of `magseg train`):
//! the data set is discovered and split, every case is preprocessed once (RAS, optional resampling,
//! crop to the non-zero box, z-score) and cached, foreground-biased augmented patches are prepared
//! on worker threads, and each step minimises the MAG-MS objective of magseg-distill over the
//! subsets of the schedule with [`Adam`] / AdamW under an [`LrSchedule`]. Validation runs
//! sliding-window inference ([`sliding_window_probs`], shared with `magseg predict`) on whole
//! validation volumes for the fused output and each single modality and keeps the best model.
//! Resumable checkpoints ([`save_checkpoint`]) hold weights, optimiser state, step, epoch, best
//! score and configuration; every random draw derives from the seed and the step, so a resumed CPU
//! run repeats the uninterrupted one bit for bit. Metrics go to a JSONL or CSV log ([`MetricsLog`])
//! and an SVG curve picture ([`draw_curves`]); progress goes to an [`Observer`].
//!
//! Output directory: `last/` (resumable checkpoint, a loadable model), `best/` (best model and its
//! `validation.json`), `validation.json` (latest), `metrics.jsonl|csv`, `curves.svg`.

pub mod checkpoint;
pub mod config;
pub mod data;
mod error;
pub mod infer;
pub mod log;
pub mod optim;
pub mod pictures;
pub mod plot;
pub mod predict;
pub mod preprocess;
pub mod schedule;
pub mod shapley;
pub mod step;
pub mod subsets;
pub mod trainer;
pub mod validate;

pub use checkpoint::{load_checkpoint, save_checkpoint, Checkpoint, TrainState};
pub use config::{parse_device, LogFormat, Precision, TrainConfig};
pub use data::{prepare_case, prepare_cases, DataConfig, DataPlan};
pub use error::{Result, TrainError};
pub use infer::{argmax_classes, sliding_window_probs, sliding_window_subsets, InferInput, WindowConfig};
pub use log::{MetricsLog, Row};
pub use optim::{Adam, OptimConfig, OptimizerKind, StepInfo};
pub use plot::draw_curves;
pub use predict::{PredictOptions, Prediction, Predictor};
pub use preprocess::{Preprocess, PREPROCESS_FILE};
pub use schedule::LrSchedule;
pub use shapley::shapley;
pub use step::{train_step, StepLosses, StepPlan};
pub use subsets::{all_subsets, evaluate_subsets, Importance, SubsetEvaluation, SubsetResult};
pub use trainer::{train, Observer, RunInfo, Silent, StepReport, TrainOptions, TrainOutcome, BEST_DIR, LAST_DIR};
pub use validate::{subset_name, validate, SubsetScores, Validation};
