//! Medical Segmentation Decathlon layout: `dataset.json` with `modality`, `labels`, `training` and
//! `test`; every modality of a case is one channel of the case's 4-D image.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::Deserialize;

use super::{
    file_stem, is_apple_double, list_dir, note_apple_double, require_file, resolve, Case, Dataset, Layout, ModalityFile,
};
use crate::labels::{LabelPreset, Region};
use crate::{Result, VolumeError};

#[derive(Deserialize)]
struct DatasetJson {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    modality: BTreeMap<String, String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    training: Vec<TrainingEntry>,
    #[serde(default)]
    test: Vec<TestEntry>,
}

#[derive(Deserialize)]
struct TrainingEntry {
    image: String,
    #[serde(default)]
    label: Option<String>,
}

/// MSD lists test images as plain strings; some tools write `{"image": ...}` objects.
#[derive(Deserialize)]
#[serde(untagged)]
enum TestEntry {
    Path(String),
    Entry { image: String },
}

/// Read `root/dataset.json` and list its cases.
pub(super) fn discover(root: &Path) -> Result<Dataset> {
    let json_path = root.join("dataset.json");
    let text = std::fs::read_to_string(&json_path).map_err(|e| VolumeError::io(&json_path, e))?;
    let json: DatasetJson = serde_json::from_str(&text)
        .map_err(|e| VolumeError::dataset(&json_path, format!("not a valid MSD dataset.json: {e}")))?;
    let modalities = modality_names(&json, &json_path)?;
    let mut problems = Vec::new();
    for sub in ["imagesTr", "labelsTr", "imagesTs"] {
        let dir = root.join(sub);
        if dir.is_dir() {
            note_apple_double(&dir, &list_dir(&dir)?, &mut problems);
        }
    }
    let entries =
        json.training.iter().map(|t| (t.image.as_str(), t.label.as_deref())).chain(json.test.iter().map(|t| match t {
            TestEntry::Path(p) | TestEntry::Entry { image: p } => (p.as_str(), None),
        }));
    let mut cases = Vec::new();
    let mut seen = HashSet::new();
    for (image, label) in entries {
        let image_path = resolve(root, image);
        let name = image_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if is_apple_double(&name) {
            problems.push(format!("{}: skipped macOS metadata entry {image}", json_path.display()));
            continue;
        }
        require_file(&json_path, &image_path, "image")?;
        let label = match label {
            Some(l) => {
                let p = resolve(root, l);
                require_file(&json_path, &p, "label")?;
                Some(p)
            }
            None => None,
        };
        let id = file_stem(&image_path);
        if !seen.insert(id.clone()) {
            return Err(VolumeError::dataset(&json_path, format!("case {id} is listed twice")));
        }
        let modalities = (modalities.iter().enumerate())
            .map(|(i, m)| ModalityFile { name: m.clone(), path: image_path.clone(), channel: Some(i) })
            .collect();
        cases.push(Case { id, modalities, label });
    }
    let preset = preset_from_labels(&json, &json_path, &mut problems);
    Ok(Dataset { root: root.to_path_buf(), layout: Layout::Msd, cases, preset, problems })
}

/// Modality names in channel order; the keys must be 0..n.
fn modality_names(json: &DatasetJson, path: &Path) -> Result<Vec<String>> {
    if json.modality.is_empty() {
        return Err(VolumeError::dataset(
            path,
            "dataset.json has no 'modality' entries (expected e.g. {\"0\": \"FLAIR\", ...})",
        ));
    }
    let mut indexed = Vec::new();
    for (k, v) in &json.modality {
        let i: usize = k
            .trim()
            .parse()
            .map_err(|_| VolumeError::dataset(path, format!("modality key '{k}' is not a channel index")))?;
        indexed.push((i, v.clone()));
    }
    indexed.sort();
    for (expect, (i, _)) in indexed.iter().enumerate() {
        if *i != expect {
            return Err(VolumeError::dataset(
                path,
                format!(
                    "modality keys must be 0..{} without gaps, found {:?}",
                    indexed.len(),
                    json.modality.keys().collect::<Vec<_>>()
                ),
            ));
        }
    }
    Ok(indexed.into_iter().map(|(_, v)| v).collect())
}

/// msd-brain when the labels are Task01's (edema, non-enhancing, enhancing); otherwise a preset made
/// from the `labels` entry with one region per foreground class.
fn preset_from_labels(json: &DatasetJson, path: &Path, problems: &mut Vec<String>) -> Option<LabelPreset> {
    if json.labels.is_empty() {
        return None;
    }
    let lower = |k: &str| json.labels.get(k).map(|s| s.to_lowercase());
    let task01 = json.labels.len() == 4
        && lower("1").is_some_and(|s| s.contains("edema"))
        && lower("2").is_some_and(|s| s.contains("non-enhancing") || s.contains("non enhancing"))
        && lower("3").is_some_and(|s| s.contains("enhancing") && !s.contains("non"));
    if task01 {
        return LabelPreset::named("msd-brain").ok();
    }
    let mut classes = Vec::new();
    for (k, v) in &json.labels {
        match k.trim().parse::<i32>() {
            Ok(value) => classes.push((value, v.clone())),
            Err(_) => {
                problems
                    .push(format!("{}: label key '{k}' is not an integer; no label preset derived", path.display()));
                return None;
            }
        }
    }
    let regions =
        (classes.iter()).filter(|(v, _)| *v != 0).map(|(v, n)| Region { name: n.clone(), labels: vec![*v] }).collect();
    let name = format!("msd:{}", json.name.as_deref().unwrap_or("dataset"));
    match LabelPreset::custom(&name, classes, regions) {
        Ok(p) => Some(p),
        Err(e) => {
            problems.push(format!("{}: no label preset derived: {e}", path.display()));
            None
        }
    }
}
