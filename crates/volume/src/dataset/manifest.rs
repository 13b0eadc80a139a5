//! Manifests: a TOML or CSV file listing each case's modality files and label file explicitly.
//!
//! Paths are relative to the manifest's folder (absolute paths are kept as they are).
//!
//! TOML (unknown keys are errors):
//! ```toml
//! modalities = ["flair", "t1"]      # optional: modality order; without it names sort alphabetically
//! labels = "brats"                  # optional: a preset name, or a table (below)
//! [[case]]
//! id = "case1"
//! label = "case1/seg.nii.gz"        # optional
//! [case.modalities]
//! flair = "case1/flair.nii.gz"
//! t1 = "case1/t1.nii.gz"
//! ```
//! A custom preset: `[labels]` with `name = "mine"` (optional), `values = { 0 = "background",
//! 1 = "lesion" }` and `regions = { LES = [1] }` (optional; regions are kept in alphabetical order).
//! The TOML reader does not preserve key order, hence the `modalities` list.
//!
//! CSV: a header `id,<modality>,...[,label]`, then one row per case; fields are trimmed, empty lines
//! and lines starting with `#` are skipped, quoting is not supported (a `"` is an error). An empty
//! label field means the case has no label. Modality order is the column order.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::Deserialize;

use super::{require_file, resolve, Case, Dataset, Layout, ModalityFile};
use crate::labels::{LabelPreset, Region};
use crate::{Result, VolumeError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlManifest {
    #[serde(default)]
    modalities: Option<Vec<String>>,
    #[serde(default)]
    labels: Option<toml::Value>,
    #[serde(default, rename = "case")]
    cases: Vec<TomlCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlCase {
    id: String,
    #[serde(default)]
    label: Option<String>,
    modalities: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomLabels {
    #[serde(default)]
    name: Option<String>,
    values: BTreeMap<String, String>,
    #[serde(default)]
    regions: BTreeMap<String, Vec<i32>>,
}

/// The folder that relative paths in `manifest` are resolved against.
fn base_dir(manifest: &Path) -> &Path {
    manifest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Read a TOML manifest.
pub(super) fn discover_toml(path: &Path) -> Result<Dataset> {
    let bad = |why: String| VolumeError::dataset(path, why);
    let text = std::fs::read_to_string(path).map_err(|e| VolumeError::io(path, e))?;
    let m: TomlManifest = toml::from_str(&text).map_err(|e| bad(format!("not a valid manifest: {e}")))?;
    let Some(first) = m.cases.first() else {
        return Err(bad("lists no cases (expected [[case]] tables)".into()));
    };
    let order: Vec<String> = match &m.modalities {
        Some(list) => list.clone(),
        None => first.modalities.keys().cloned().collect(),
    };
    check_names(path, &order)?;
    let base = base_dir(path);
    let mut cases = Vec::with_capacity(m.cases.len());
    let mut seen = HashSet::new();
    for c in &m.cases {
        check_id(path, &c.id, &mut seen)?;
        if let Some(unknown) = c.modalities.keys().find(|k| !order.contains(k)) {
            return Err(bad(format!(
                "case {}: unknown modality '{unknown}' (the manifest's modalities are {})",
                c.id,
                order.join(", ")
            )));
        }
        let files: Vec<(&str, &str)> = (order.iter())
            .map(|name| {
                c.modalities
                    .get(name)
                    .map(|f| (name.as_str(), f.as_str()))
                    .ok_or_else(|| bad(format!("case {}: no file for modality '{name}'", c.id)))
            })
            .collect::<Result<_>>()?;
        cases.push(make_case(path, base, &c.id, &files, c.label.as_deref())?);
    }
    let preset = match &m.labels {
        None => None,
        Some(v) => Some(preset_from_toml(v).map_err(|e| bad(e.to_string()))?),
    };
    Ok(Dataset { root: path.to_path_buf(), layout: Layout::Manifest, cases, preset, problems: Vec::new() })
}

fn preset_from_toml(v: &toml::Value) -> Result<LabelPreset> {
    match v {
        toml::Value::String(name) => LabelPreset::named(name),
        toml::Value::Table(_) => {
            let c: CustomLabels = v.clone().try_into().map_err(|e| VolumeError::Invalid(format!("[labels]: {e}")))?;
            let mut classes = Vec::with_capacity(c.values.len());
            for (k, name) in c.values {
                let value = k
                    .trim()
                    .parse::<i32>()
                    .map_err(|_| VolumeError::Invalid(format!("[labels] values: key '{k}' is not an integer")))?;
                classes.push((value, name));
            }
            let regions = (c.regions.into_iter()).map(|(name, labels)| Region { name, labels }).collect();
            LabelPreset::custom(c.name.as_deref().unwrap_or("custom"), classes, regions)
        }
        _ => Err(VolumeError::Invalid("'labels' must be a preset name or a [labels] table".into())),
    }
}

/// Read a CSV manifest.
pub(super) fn discover_csv(path: &Path) -> Result<Dataset> {
    let bad = |line: usize, why: String| VolumeError::dataset(path, format!("line {line}: {why}"));
    let text = std::fs::read_to_string(path).map_err(|e| VolumeError::io(path, e))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut rows =
        text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let Some((hline, header)) = rows.next() else {
        return Err(VolumeError::dataset(path, "empty manifest: expected a header 'id,<modality>,...[,label]'"));
    };
    let split = |n: usize, l: &str| -> Result<Vec<String>> {
        if l.contains('"') {
            return Err(bad(n, "quoted fields are not supported: write plain comma-separated values".into()));
        }
        Ok(l.split(',').map(|f| f.trim().to_string()).collect())
    };
    let cols = split(hline, header)?;
    if !cols[0].eq_ignore_ascii_case("id") {
        return Err(bad(hline, format!("the first column must be 'id', found '{}'", cols[0])));
    }
    let label_col = cols.iter().position(|c| c.eq_ignore_ascii_case("label"));
    let modal: Vec<(usize, String)> =
        (cols.iter().enumerate().skip(1)).filter(|(i, _)| Some(*i) != label_col).map(|(i, c)| (i, c.clone())).collect();
    let names: Vec<String> = modal.iter().map(|(_, n)| n.clone()).collect();
    check_names(path, &names)?;
    let base = base_dir(path);
    let mut cases = Vec::new();
    let mut seen = HashSet::new();
    for (n, line) in rows {
        let f = split(n, line)?;
        if f.len() != cols.len() {
            return Err(bad(n, format!("{} fields, the header has {}", f.len(), cols.len())));
        }
        check_id(path, &f[0], &mut seen)?;
        let mut files = Vec::with_capacity(modal.len());
        for (i, name) in &modal {
            if f[*i].is_empty() {
                return Err(bad(n, format!("case {}: no file for modality '{name}'", f[0])));
            }
            files.push((name.as_str(), f[*i].as_str()));
        }
        let label = label_col.map(|i| f[i].as_str()).filter(|s| !s.is_empty());
        cases.push(make_case(path, base, &f[0], &files, label)?);
    }
    if cases.is_empty() {
        return Err(VolumeError::dataset(path, "lists no cases"));
    }
    Ok(Dataset { root: path.to_path_buf(), layout: Layout::Manifest, cases, preset: None, problems: Vec::new() })
}

/// Modality names must be non-empty and distinct, and there must be at least one.
fn check_names(path: &Path, names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Err(VolumeError::dataset(path, "no modalities are named"));
    }
    for (i, n) in names.iter().enumerate() {
        if n.is_empty() || names[..i].contains(n) {
            return Err(VolumeError::dataset(
                path,
                format!("modality names must be non-empty and distinct, found {names:?}"),
            ));
        }
    }
    Ok(())
}

fn check_id(path: &Path, id: &str, seen: &mut HashSet<String>) -> Result<()> {
    if id.trim().is_empty() {
        return Err(VolumeError::dataset(path, "a case has an empty id"));
    }
    if !seen.insert(id.to_string()) {
        return Err(VolumeError::dataset(path, format!("case {id} is listed twice")));
    }
    Ok(())
}

/// A case from `(modality, relative path)` pairs; every file must exist.
fn make_case(manifest: &Path, base: &Path, id: &str, files: &[(&str, &str)], label: Option<&str>) -> Result<Case> {
    let mut modalities = Vec::with_capacity(files.len());
    for (name, rel) in files {
        let p = resolve(base, rel);
        require_file(manifest, &p, &format!("case {id}: modality '{name}'"))?;
        modalities.push(ModalityFile { name: (*name).to_string(), path: p, channel: None });
    }
    let label = match label {
        Some(rel) => {
            let p = resolve(base, rel);
            require_file(manifest, &p, &format!("case {id}: label"))?;
            Some(p)
        }
        None => None,
    };
    Ok(Case { id: id.to_string(), modalities, label })
}
