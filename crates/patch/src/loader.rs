//! A bounded prefetching batch loader: worker threads crop and augment batches from the
//! [`CaseCache`] while the consumer trains. Batch `b` is drawn from `Rng::derive(seed, b)` alone, so
//! batch contents do not depend on the number of workers; batches are delivered in order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use crate::{CaseCache, Patch, PatchError, PatchSampler, Result, Rng};

/// Loader settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaderConfig {
    /// Patches per batch (≥ 1).
    pub batch_size: usize,
    /// Worker threads (≥ 1).
    pub workers: usize,
    /// Batches each worker may have ready ahead of the consumer (≥ 1).
    pub prefetch: usize,
    /// Seed of the whole run.
    pub seed: u64,
    /// Number of batches to deliver in all (counting from batch 0); `None` for an endless stream.
    pub batches: Option<u64>,
    /// The first batch delivered (to resume a run: batches before it are skipped, not drawn).
    #[serde(default)]
    pub start: u64,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self { batch_size: 2, workers: 2, prefetch: 2, seed: 0, batches: None, start: 0 }
    }
}

/// One batch of patches.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Batch number (0, 1, ...).
    pub index: u64,
    /// The patches, `batch_size` of them.
    pub patches: Vec<Patch>,
}

/// Draw batch `index` of a run: each patch picks a case uniformly, then crops and augments it.
pub fn make_batch(cache: &CaseCache, sampler: &PatchSampler, seed: u64, index: u64, size: usize) -> Result<Batch> {
    if cache.is_empty() {
        return Err(PatchError::EmptyCache);
    }
    let mut rng = Rng::derive(seed, index);
    let mut patches = Vec::with_capacity(size);
    for _ in 0..size {
        let i = rng.below(cache.len());
        let case = cache.cases()[i].as_ref();
        let mut patch = sampler.sample(case, &mut rng)?;
        patch.case = i;
        patches.push(patch);
    }
    Ok(Batch { index, patches })
}

/// The prefetching loader; an iterator of `Result<Batch>` in batch order. Dropping it stops and
/// joins the workers (a worker blocked on a full queue wakes when its receiver is dropped).
pub struct Loader {
    receivers: Vec<Receiver<Result<Batch>>>,
    handles: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    next: u64,
    limit: Option<u64>,
    start: u64,
}

impl Loader {
    /// Start `config.workers` threads; worker `w` makes batches `w, w + workers, ...`.
    pub fn new(cache: Arc<CaseCache>, sampler: Arc<PatchSampler>, config: LoaderConfig) -> Result<Self> {
        if config.batch_size == 0 || config.workers == 0 || config.prefetch == 0 {
            return Err(PatchError::Config(format!(
                "batch_size {}, workers {} and prefetch {} must all be ≥ 1",
                config.batch_size, config.workers, config.prefetch
            )));
        }
        if cache.is_empty() {
            return Err(PatchError::EmptyCache);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut receivers = Vec::with_capacity(config.workers);
        let mut handles = Vec::with_capacity(config.workers);
        for w in 0..config.workers {
            let (tx, rx) = sync_channel(config.prefetch);
            let (cache, sampler, stop, cfg) = (cache.clone(), sampler.clone(), stop.clone(), config.clone());
            let handle = std::thread::Builder::new()
                .name(format!("magseg-loader-{w}"))
                .spawn(move || {
                    let mut b = cfg.start + w as u64;
                    while cfg.batches.is_none_or(|n| b < n) && !stop.load(Ordering::Relaxed) {
                        let batch = make_batch(&cache, &sampler, cfg.seed, b, cfg.batch_size);
                        let failed = batch.is_err();
                        if tx.send(batch).is_err() || failed {
                            break;
                        }
                        b += cfg.workers as u64;
                    }
                    tracing::trace!(worker = w, "loader worker done");
                })
                .map_err(|e| PatchError::Worker(format!("cannot start a worker thread: {e}")))?;
            receivers.push(rx);
            handles.push(handle);
        }
        Ok(Self { receivers, handles, stop, next: config.start, limit: config.batches, start: config.start })
    }
}

impl Iterator for Loader {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.limit.is_some_and(|n| self.next >= n) || self.receivers.is_empty() {
            return None;
        }
        let w = ((self.next - self.start) % self.receivers.len() as u64) as usize;
        let b = self.next;
        self.next += 1;
        match self.receivers[w].recv() {
            Ok(Ok(batch)) => Some(Ok(batch)),
            Ok(Err(e)) => {
                self.limit = Some(self.next);
                Some(Err(e))
            }
            Err(_) => {
                self.limit = Some(self.next);
                Some(Err(PatchError::Worker(format!("worker {w} stopped before batch {b}"))))
            }
        }
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.receivers.clear();
        for h in self.handles.drain(..) {
            // A panicked worker has nothing left to clean up; never panic in drop.
            let _ = h.join();
        }
    }
}
