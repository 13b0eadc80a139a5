//! Matching prediction files to reference label files by case id, for `magseg evaluate`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use magseg_volume::dataset::discover;
use magseg_volume::labels::LabelPreset;

use crate::CliResult;

/// One prediction and its reference.
pub struct Pair {
    /// Case id.
    pub id: String,
    /// Prediction label map.
    pub pred: PathBuf,
    /// Reference label map.
    pub reference: PathBuf,
}

/// The pairs to evaluate, what was left unmatched, and the preset the reference layout implies.
pub struct Pairing {
    /// Matched pairs, sorted by id.
    pub pairs: Vec<Pair>,
    /// Prediction files with no reference (reported, not evaluated).
    pub unmatched_pred: Vec<PathBuf>,
    /// Reference cases with no prediction.
    pub missing_pred: Vec<String>,
    /// The label preset of the reference dataset, when its layout says.
    pub preset: Option<LabelPreset>,
}

const VOLUME_SUFFIXES: [&str; 5] = [".nii.gz", ".nii", ".hdr.gz", ".hdr", ".img"];
const LABEL_SUFFIXES: [&str; 6] = ["_seg", "-seg", "_label", "-label", "_pred", "-pred"];

/// Case id of a label file name: the name without its volume extension and a `_seg`-like suffix.
pub fn case_id(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let lower = name.to_lowercase();
    let ext = VOLUME_SUFFIXES.iter().find(|s| lower.ends_with(*s))?;
    if *ext == ".img" {
        return None; // the .hdr of the pair stands for it
    }
    let mut stem = name[..name.len() - ext.len()].to_string();
    for s in LABEL_SUFFIXES {
        if stem.to_lowercase().ends_with(s) && stem.len() > s.len() {
            stem.truncate(stem.len() - s.len());
            break;
        }
    }
    Some(stem)
}

/// Volume files directly in `dir` and in its immediate subfolders, keyed by case id.
fn label_files(dir: &Path) -> CliResult<BTreeMap<String, Vec<PathBuf>>> {
    let mut out: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let mut visit = |p: PathBuf| {
        if let Some(id) = case_id(&p) {
            if !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("._")) {
                out.entry(id).or_default().push(p);
            }
        }
    };
    for e in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            for f in std::fs::read_dir(&p)? {
                visit(f?.path());
            }
        } else {
            visit(p);
        }
    }
    Ok(out)
}

/// Reference label files keyed by case id: a dataset layout's label files when `dir` is one,
/// otherwise the label files found in it.
fn reference_files(dir: &Path) -> CliResult<(BTreeMap<String, PathBuf>, Option<LabelPreset>)> {
    if let Ok(ds) = discover(dir) {
        let refs: BTreeMap<String, PathBuf> =
            ds.cases.iter().filter_map(|c| c.label.clone().map(|l| (c.id.clone(), l))).collect();
        if !refs.is_empty() {
            return Ok((refs, ds.preset));
        }
    }
    let mut refs = BTreeMap::new();
    for (id, files) in label_files(dir)? {
        // In a case folder holding images and a seg, only the seg is a reference.
        let seg = files.iter().find(|f| {
            let n = f.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
            LABEL_SUFFIXES.iter().any(|s| n.contains(s))
        });
        match (seg, files.len()) {
            (Some(s), _) => {
                refs.insert(id, s.clone());
            }
            (None, 1) => {
                refs.insert(id, files[0].clone());
            }
            (None, _) => {
                return Err(format!(
                    "{}: several files for case {id} and none named like a label map (_seg, _label): {:?}",
                    dir.display(),
                    files
                )
                .into())
            }
        }
    }
    Ok((refs, None))
}

/// Pair `pred` with `reference`: two files, or two folders matched by case id.
pub fn pair(pred: &Path, reference: &Path) -> CliResult<Pairing> {
    match (pred.is_dir(), reference.is_dir()) {
        (false, false) => {
            for p in [pred, reference] {
                if !p.exists() {
                    return Err(format!("{}: no such file", p.display()).into());
                }
            }
            let id = case_id(pred).unwrap_or_else(|| pred.display().to_string());
            Ok(Pairing {
                pairs: vec![Pair { id, pred: pred.to_path_buf(), reference: reference.to_path_buf() }],
                unmatched_pred: vec![],
                missing_pred: vec![],
                preset: None,
            })
        }
        (true, true) => {
            let (refs, preset) = reference_files(reference)?;
            let preds = label_files(pred)?;
            let mut pairs = Vec::new();
            let mut unmatched_pred = Vec::new();
            for (id, files) in preds {
                if files.len() > 1 {
                    return Err(format!("{}: several prediction files for case {id}: {files:?}", pred.display()).into());
                }
                match refs.get(&id) {
                    Some(r) => pairs.push(Pair { id, pred: files[0].clone(), reference: r.clone() }),
                    None => unmatched_pred.extend(files),
                }
            }
            let missing_pred = refs.keys().filter(|id| !pairs.iter().any(|p| &p.id == *id)).cloned().collect();
            Ok(Pairing { pairs, unmatched_pred, missing_pred, preset })
        }
        _ => Err("--pred and --ref must both be files or both be folders".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_ids_drop_extension_and_label_suffix() {
        assert_eq!(case_id(Path::new("a/Brats18_X_1_seg.nii.gz")).as_deref(), Some("Brats18_X_1"));
        assert_eq!(case_id(Path::new("BraTS-GLI-1-000-seg.nii.gz")).as_deref(), Some("BraTS-GLI-1-000"));
        assert_eq!(case_id(Path::new("case7.nii")).as_deref(), Some("case7"));
        assert_eq!(case_id(Path::new("subject-1-label.hdr")).as_deref(), Some("subject-1"));
        assert_eq!(case_id(Path::new("subject-1-label.img")), None);
        assert_eq!(case_id(Path::new("notes.txt")), None);
    }
}
