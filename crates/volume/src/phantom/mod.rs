//! Deterministic synthetic multi-modal "brain tumour" cases (FLAIR, T1, T1gd, T2 + BraTS labels) for
//! tests, demos and fast end-to-end training checks.
//!
//! Each case is a function of `(seed, index, size)` only: the same triple gives bit-identical volumes on
//! every run, machine and thread count (all randomness comes from a seeded SplitMix64 whose streams are
//! keyed by case, modality and slice). [`write_dataset`] writes them in the BraTS folder layout
//! `DIR/<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz`, case ids `Phantom_000`, `Phantom_001`, ...
//!
//! # Geometry
//!
//! `size`³ voxels (`size` in 16..=256, default 64), 1 mm isotropic, BraTS-like LPS affine
//! `diag(-1, -1, 1)` with origin `(0, size − 1, 0)` (so reorientation code is exercised).
//! Images are float32, labels 0/1/2/4.
//!
//! # Anatomy (lengths in voxels at size 64; they scale with `size / 64`)
//!
//! - **Brain**: an ellipsoid with semi-axes ≈ (23, 25.6, 21.8) (each ±4 %), centre within ±1.5 of the grid
//!   centre, boundary radius modulated by ±1–2 % per low-frequency term. Every image is exactly 0 outside
//!   the brain and strictly positive inside it, in every modality, so cropping to the non-zero box works.
//! - **Tumour core** (TC = labels 1 + 4): a randomly rotated, mildly anisotropic (±12 %) ellipsoid of
//!   mean radius 68–80 % of the edema's (6.5–9.2) whose radius is modulated by 3 smooth terms of 3–6 % each, placed at a random
//!   position where it lies wholly inside the brain. Its outer shell of thickness 3 is the **enhancing
//!   tumour** (label 4); the inside is **necrosis / non-enhancing core** (label 1).
//! - **Edema** (label 2): a second wobbly ellipsoid (mean radius 9.5–11.5, ±18 % anisotropy, 4 terms of
//!   4–8 %, centre shifted up to 20 % of its radius from the core's) united with a 2-voxel shell around
//!   the core, minus the core, clipped to the brain. The whole tumour is about 7–15 % of the brain
//!   (typically ~5 % of it necrosis, ~25 % enhancing, ~70 % edema).
//! - Below size 32 floors keep every label present (rim ≥ 1.5, core radius ≥ rim + 2, edema shell ≥ 1
//!   voxel), so the tumour takes a much larger share of the brain (about half at size 16).
//!
//! # Intensities
//!
//! A voxel of class `c` in modality `m` holds
//! `scale_m · max(MIN_LEVEL, level_{m,c} · (1 + TEXTURE_AMPLITUDE · sign_m · t(x)) · b_m(x) + NOISE_SIGMA · g)`
//! where `t ∈ [-1, 1]` is a smooth two-level ("grey/white matter") value-noise texture applied to healthy
//! tissue and edema only, `b_m` a smooth multiplicative bias field (a random degree-2 polynomial, within
//! `1 ± BIAS_AMPLITUDE`, independent per modality) and `g` standard Gaussian noise. The levels
//! ([`CONTRASTS`], relative to healthy brain):
//!
//! | structure (label)                  | FLAIR | T1  | T1gd (`t1ce`) | T2  |
//! |------------------------------------|-------|-----|---------------|-----|
//! | healthy brain (0, inside the brain)| 1.0   | 1.0 | 1.0           | 1.0 |
//! | edema (2)                          | 2.0   | 1.0 | 1.0           | 1.8 |
//! | necrosis / non-enhancing core (1)  | 2.0   | 0.4 | 0.4           | 2.8 |
//! | enhancing tumour (4)               | 2.0   | 0.4 | 2.5           | 2.8 |
//! | `scale` (file value of level 1.0)  | 300   | 500 | 450           | 350 |
//! | texture sign                       | −     | +   | +             | −   |
//!
//! Noise σ = 0.04, texture amplitude 0.03 and bias ±0.12 (all relative to healthy brain) keep every pair
//! of distinct levels at least 6 σ apart after worst-case bias, so a region is separable by thresholds
//! exactly when its classes' levels differ from all other classes' levels. Hence ([`REVEALS`]):
//!
//! | modality | reveals | by (relative cut points) | cannot see |
//! |----------|---------|--------------------------|------------|
//! | `flair`  | WT      | tumour > 1.5             | core vs edema, ET vs necrosis |
//! | `t1`     | TC      | core < 0.7               | edema (≈ brain), ET vs necrosis |
//! | `t1ce`   | TC, ET  | ET > 1.75; TC < 0.7 or > 1.75 | edema (≈ brain) |
//! | `t2`     | WT, TC  | WT > 1.4; TC > 2.3       | ET vs necrosis |
//!
//! Regions (BraTS): WT = {1, 2, 4}, TC = {1, 4}, ET = {4}. The crate's `tests/phantom.rs` checks these
//! claims: the nearest-level classifier reaches Dice ≥ 0.9 on every revealed region, and the best
//! interval threshold cannot tell apart the classes a modality renders alike.

mod random;
mod render;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use rayon::prelude::*;

use crate::volume::{identity, Geometry, Image, LabelMap, Volume};
use crate::write::{write_image, write_labels};
use crate::{Result, VolumeError};

/// Modality names in the order of [`PhantomCase::images`] and of the file suffixes.
pub const MODALITIES: [&str; 4] = ["flair", "t1", "t1ce", "t2"];

/// BraTS regions: name and the labels they contain.
pub const REGIONS: [(&str, &[i32]); 3] = [("WT", &[1, 2, 4]), ("TC", &[1, 4]), ("ET", &[4])];

/// Which regions each modality reveals by construction (see the module docs).
pub const REVEALS: &[(&str, &[&str])] =
    &[("flair", &["WT"]), ("t1", &["TC"]), ("t1ce", &["TC", "ET"]), ("t2", &["WT", "TC"])];

/// The contrast of one modality: intensity levels relative to healthy brain (before texture, bias and
/// noise) and the file value of level 1.0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Contrast {
    /// Modality name (file suffix).
    pub modality: &'static str,
    /// File intensity of relative level 1.0.
    pub scale: f32,
    /// Healthy brain (label 0 inside the brain).
    pub healthy: f32,
    /// Edema (label 2).
    pub edema: f32,
    /// Necrosis / non-enhancing core (label 1).
    pub necrosis: f32,
    /// Enhancing tumour (label 4).
    pub enhancing: f32,
    /// Sign of the grey/white texture (+1: T1-like, −1: T2-like).
    pub texture_sign: f32,
}

impl Contrast {
    /// The relative level of BraTS label `label` (0 = healthy brain), `None` for other values.
    pub fn level(&self, label: i32) -> Option<f32> {
        match label {
            0 => Some(self.healthy),
            1 => Some(self.necrosis),
            2 => Some(self.edema),
            4 => Some(self.enhancing),
            _ => None,
        }
    }
}

/// The four contrasts, in [`MODALITIES`] order (the table in the module docs).
pub const CONTRASTS: [Contrast; 4] = [
    Contrast {
        modality: "flair",
        scale: 300.0,
        healthy: 1.0,
        edema: 2.0,
        necrosis: 2.0,
        enhancing: 2.0,
        texture_sign: -1.0,
    },
    Contrast {
        modality: "t1",
        scale: 500.0,
        healthy: 1.0,
        edema: 1.0,
        necrosis: 0.4,
        enhancing: 0.4,
        texture_sign: 1.0,
    },
    Contrast {
        modality: "t1ce",
        scale: 450.0,
        healthy: 1.0,
        edema: 1.0,
        necrosis: 0.4,
        enhancing: 2.5,
        texture_sign: 1.0,
    },
    Contrast {
        modality: "t2",
        scale: 350.0,
        healthy: 1.0,
        edema: 1.8,
        necrosis: 2.8,
        enhancing: 2.8,
        texture_sign: -1.0,
    },
];

/// Standard deviation of the additive Gaussian noise, relative to healthy brain.
pub const NOISE_SIGMA: f32 = 0.04;
/// Largest deviation of the multiplicative bias field from 1.
pub const BIAS_AMPLITUDE: f32 = 0.12;
/// Amplitude of the grey/white texture on healthy tissue and edema, relative to the level.
pub const TEXTURE_AMPLITUDE: f32 = 0.03;
/// Smallest relative value inside the brain (keeps the brain strictly positive).
pub const MIN_LEVEL: f32 = 0.05;
/// Smallest accepted grid size.
pub const MIN_SIZE: usize = 16;
/// Largest accepted grid size.
pub const MAX_SIZE: usize = 256;
/// Largest number of cases [`write_dataset`] accepts in one call.
pub const MAX_CASES: usize = 100_000;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhantomOptions {
    /// Number of cases written by [`write_dataset`] (indices `0..cases`).
    pub cases: usize,
    /// Seed of the whole data set.
    pub seed: u64,
    /// Edge length of the cubic grid in voxels ([`MIN_SIZE`]..=[`MAX_SIZE`]).
    pub size: usize,
}

impl Default for PhantomOptions {
    fn default() -> Self {
        Self { cases: 8, seed: 0, size: 64 }
    }
}

impl PhantomOptions {
    /// Check the size (and nothing else: `cases` matters only to [`write_dataset`]).
    pub fn validate(&self) -> Result<()> {
        if !(MIN_SIZE..=MAX_SIZE).contains(&self.size) {
            return Err(VolumeError::Invalid(format!(
                "phantom size {} is out of range: expected {MIN_SIZE}..={MAX_SIZE} voxels",
                self.size
            )));
        }
        Ok(())
    }
}

/// One generated case.
#[derive(Debug, Clone)]
pub struct PhantomCase {
    /// Case id, e.g. `Phantom_003` (also the folder and file prefix).
    pub id: String,
    /// `(modality, image)` in [`MODALITIES`] order: flair, t1, t1ce, t2.
    pub images: Vec<(String, Image)>,
    /// BraTS labels 0/1/2/4.
    pub label: LabelMap,
}

impl PhantomCase {
    /// The image of modality `name`, if it is one of [`MODALITIES`].
    pub fn image(&self, name: &str) -> Option<&Image> {
        self.images.iter().find(|(m, _)| m == name).map(|(_, i)| i)
    }
}

/// The id of case `index`: `Phantom_000`, `Phantom_001`, ... (more digits past 999).
pub fn case_id(index: usize) -> String {
    format!("Phantom_{index:03}")
}

/// The grid of every phantom of edge `size`: 1 mm isotropic, LPS affine `diag(-1, -1, 1)` with origin
/// `(0, size − 1, 0)`.
pub fn phantom_geometry(size: usize) -> Geometry {
    let mut affine = identity();
    affine[0][0] = -1.0;
    affine[1][1] = -1.0;
    affine[1][3] = size as f64 - 1.0;
    Geometry { dims: [size; 3], spacing: [1.0; 3], affine }
}

/// Generate case `index` of the data set described by `opts`. The result depends only on
/// `(opts.seed, index, opts.size)`; `index` may exceed `opts.cases`.
pub fn generate_case(opts: &PhantomOptions, index: usize) -> Result<PhantomCase> {
    opts.validate()?;
    let key = random::mix(random::mix(opts.seed, index as u64), opts.size as u64);
    let layout = render::Layout::new(key, opts.size);
    let (labels, images) = layout.render();
    let geometry = phantom_geometry(opts.size);
    let images = MODALITIES
        .iter()
        .zip(images)
        .map(|(m, data)| Ok((m.to_string(), Volume::new(data, geometry.clone(), 1)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(PhantomCase { id: case_id(index), images, label: Volume::new(labels, geometry, 1)? })
}

/// Write cases `0..opts.cases` under `dir` in the BraTS layout `dir/<id>/<id>_{flair,t1,t1ce,t2,seg}.nii.gz`
/// and return the case folders in index order. `dir` and the case folders are created when missing;
/// files of those names are overwritten (atomically); nothing else is touched or deleted.
/// Cases are generated in parallel; `progress(done, total)` is called on the calling thread after each
/// case is written.
pub fn write_dataset(
    dir: &Path,
    opts: &PhantomOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<PathBuf>> {
    opts.validate()?;
    if opts.cases == 0 || opts.cases > MAX_CASES {
        return Err(VolumeError::Invalid(format!(
            "phantom case count {} is out of range: expected 1..={MAX_CASES}",
            opts.cases
        )));
    }
    fs::create_dir_all(dir).map_err(|e| VolumeError::io(dir, e))?;
    let total = opts.cases;
    let (tx, rx) = mpsc::channel::<()>();
    let results = std::thread::scope(|scope| {
        let worker = scope.spawn(move || {
            (0..total)
                .into_par_iter()
                .map_with(tx, |tx, i| {
                    let r = write_case(dir, opts, i);
                    let _ = tx.send(());
                    r
                })
                .collect::<Vec<_>>()
        });
        let mut done = 0;
        for () in rx {
            done += 1;
            progress(done, total);
        }
        match worker.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    });
    results.into_iter().collect()
}

/// Generate and write one case; returns its folder.
fn write_case(dir: &Path, opts: &PhantomOptions, index: usize) -> Result<PathBuf> {
    let case = generate_case(opts, index)?;
    let folder = dir.join(&case.id);
    fs::create_dir_all(&folder).map_err(|e| VolumeError::io(&folder, e))?;
    for (m, img) in &case.images {
        write_image(folder.join(format!("{}_{m}.nii.gz", case.id)), img, &[])?;
    }
    write_labels(folder.join(format!("{}_seg.nii.gz", case.id)), &case.label, &[])?;
    Ok(folder)
}
