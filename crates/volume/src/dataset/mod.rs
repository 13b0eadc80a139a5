//! Dataset layouts: finding the cases (modality files and label file) of an MSD, BraTS, BraTS 2023 or
//! iSEG folder, or of a TOML/CSV manifest, with [`discover`].
//!
//! Discovery only lists and checks files (no voxel data is read); [`crate::case::load_case`] reads them.

mod brats;
mod iseg;
mod manifest;
mod msd;

use std::path::{Path, PathBuf};

use crate::labels::LabelPreset;
use crate::{Result, VolumeError};

/// One modality of a case: its name and the file (and channel of a 4-D file) holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModalityFile {
    /// Modality name as the layout spells it ("flair", "t1n", "T1", "FLAIR", ...).
    pub name: String,
    /// The image file.
    pub path: PathBuf,
    /// Index into the file's 4th axis when several modalities share one 4-D file (MSD), else `None`.
    pub channel: Option<usize>,
}

/// One subject: its modality files, in the dataset's modality order, and its label file if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// Case identifier (folder or file stem).
    pub id: String,
    /// Modality files in the dataset's modality order.
    pub modalities: Vec<ModalityFile>,
    /// The label map, when the case has one (training cases).
    pub label: Option<PathBuf>,
}

impl Case {
    /// The modality called `name`, if the case has it.
    pub fn modality(&self, name: &str) -> Option<&ModalityFile> {
        self.modalities.iter().find(|m| m.name == name)
    }

    /// The case's modality names, in order.
    pub fn modality_names(&self) -> Vec<&str> {
        self.modalities.iter().map(|m| m.name.as_str()).collect()
    }
}

/// The on-disk layouts that [`discover`] recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Medical Segmentation Decathlon: `dataset.json`, 4-D images.
    Msd,
    /// BraTS ≤ 2020: `<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz`.
    Brats,
    /// BraTS 2023: `<case>/<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz`.
    Brats2023,
    /// iSEG-2017: `subject-N-{T1,T2,label}.hdr` Analyze 7.5 pairs.
    Iseg,
    /// A TOML or CSV manifest listing the files.
    Manifest,
}

impl Layout {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Msd => "MSD",
            Layout::Brats => "BraTS",
            Layout::Brats2023 => "BraTS 2023",
            Layout::Iseg => "iSEG",
            Layout::Manifest => "manifest",
        }
    }
}

/// A discovered dataset: its cases and what the layout says about labels.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The path given to [`discover`] (a folder, a single BraTS case folder, or a manifest file).
    pub root: PathBuf,
    /// The layout recognised.
    pub layout: Layout,
    /// The cases: sorted by id for folder layouts, in the listed order for MSD and manifests.
    pub cases: Vec<Case>,
    /// The label preset the layout implies or the manifest names, if any.
    pub preset: Option<LabelPreset>,
    /// Non-fatal findings (skipped macOS `._*` files, sub-folders that are not cases, ...).
    pub problems: Vec<String>,
}

impl Dataset {
    /// Modality names of the dataset, in order (those of the first case).
    pub fn modality_names(&self) -> Vec<String> {
        self.cases.first().map(|c| c.modalities.iter().map(|m| m.name.clone()).collect()).unwrap_or_default()
    }

    /// The case with identifier `id`.
    pub fn case(&self, id: &str) -> Option<&Case> {
        self.cases.iter().find(|c| c.id == id)
    }
}

/// What [`discover`] looks for, for the error when nothing matches.
const LOOKED_FOR: &str = "looked for: dataset.json (MSD); case folders holding \
<case>_{flair,t1,t1ce,t2}.nii.gz (BraTS) or <case>-{t1n,t1c,t2w,t2f}.nii.gz (BraTS 2023), or one such \
case folder; subject-N-{T1,T2}.hdr (iSEG); a .toml or .csv manifest file";

/// Recognise the layout at `path` and list its cases. See [`Layout`] for what is recognised: a folder
/// with `dataset.json` is MSD; iSEG `subject-N-T1.hdr` files; a BraTS (or BraTS 2023) case folder, or a
/// folder of them; a `.toml` or `.csv` file is a manifest.
pub fn discover(path: &Path) -> Result<Dataset> {
    let _span = tracing::debug_span!("discover", path = %path.display()).entered();
    if !path.exists() {
        return Err(VolumeError::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder")));
    }
    if path.is_file() {
        let name = path.to_string_lossy().to_lowercase();
        if name.ends_with(".toml") {
            return manifest::discover_toml(path);
        }
        if name.ends_with(".csv") {
            return manifest::discover_csv(path);
        }
        return Err(VolumeError::dataset(path, format!("not a dataset: a file that is not a manifest; {LOOKED_FOR}")));
    }
    if path.join("dataset.json").is_file() {
        return msd::discover(path);
    }
    let entries = list_dir(path)?;
    if let Some(ds) = iseg::discover(path, &entries)? {
        return Ok(ds);
    }
    if let Some(ds) = brats::discover(path, &entries)? {
        return Ok(ds);
    }
    Err(VolumeError::dataset(path, format!("no dataset layout recognised; {LOOKED_FOR}")))
}

/// One directory entry: its file name and whether it is a folder.
pub(crate) struct Entry {
    pub name: String,
    pub path: PathBuf,
    pub is_dir: bool,
}

/// The entries of a folder, sorted by name (non-UTF-8 names are kept lossily).
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<Entry>> {
    let rd = std::fs::read_dir(dir).map_err(|e| VolumeError::io(dir, e))?;
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|err| VolumeError::io(dir, err))?;
        let path = e.path();
        out.push(Entry { name: e.file_name().to_string_lossy().into_owned(), is_dir: path.is_dir(), path });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// True for macOS AppleDouble metadata files (`._name`), which look like images but are not.
pub(crate) fn is_apple_double(name: &str) -> bool {
    name.starts_with("._")
}

/// Note skipped `._*` entries of `entries` (in folder `dir`) in `problems`.
pub(crate) fn note_apple_double(dir: &Path, entries: &[Entry], problems: &mut Vec<String>) {
    let n = entries.iter().filter(|e| is_apple_double(&e.name)).count();
    if n > 0 {
        problems.push(format!("{}: skipped {n} macOS metadata file(s) named ._*", dir.display()));
    }
}

/// `rel` resolved against `base` (a leading "./" dropped); absolute paths are kept.
pub(crate) fn resolve(base: &Path, rel: &str) -> PathBuf {
    let rel = rel.trim();
    let rel = rel.strip_prefix("./").unwrap_or(rel);
    let p = Path::new(rel);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Error unless `file` exists; `listed_in` is the folder or manifest that refers to it.
pub(crate) fn require_file(listed_in: &Path, file: &Path, what: &str) -> Result<()> {
    if file.is_file() {
        return Ok(());
    }
    Err(VolumeError::dataset(listed_in, format!("{what} file {} does not exist", file.display())))
}

/// The name of an image file without its `.nii.gz` / `.nii` / `.hdr` / `.img` extension.
pub(crate) fn file_stem(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    for ext in [".nii.gz", ".nii", ".hdr.gz", ".img.gz", ".hdr", ".img"] {
        if let Some(stem) = strip_suffix_ci(&name, ext) {
            return stem.to_string();
        }
    }
    name
}

/// `name` without `suffix`, compared ignoring ASCII case.
pub(crate) fn strip_suffix_ci<'a>(name: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = name.len().checked_sub(suffix.len())?;
    let (stem, tail) = (name.get(..cut)?, name.get(cut..)?);
    tail.eq_ignore_ascii_case(suffix).then_some(stem)
}
