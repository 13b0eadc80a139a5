//! iSEG-2017 layout: Analyze 7.5 pairs `subject-N-{T1,T2,label}.hdr/.img` in one folder
//! (test subjects have no label file).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{note_apple_double, strip_suffix_ci, Case, Dataset, Entry, Layout, ModalityFile};
use crate::labels::LabelPreset;
use crate::{Result, VolumeError};

/// Modality names in order, as iSEG spells them in file names.
const MODALITIES: [&str; 2] = ["T1", "T2"];

/// `subject-N-KIND.hdr` → (N, KIND).
fn parse(e: &Entry) -> Option<(u64, &str)> {
    if e.is_dir || super::is_apple_double(&e.name) {
        return None;
    }
    let stem = strip_suffix_ci(&e.name, ".hdr")?;
    let (subject, kind) = stem.rsplit_once('-')?;
    let n = strip_prefix_ci(subject, "subject-")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let kind = ["T1", "T2", "label"].into_iter().find(|k| k.eq_ignore_ascii_case(kind))?;
    Some((n.parse().ok()?, kind))
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| s.get(prefix.len()..)).flatten()
}

/// The iSEG subjects in `root`, `None` when there is no `subject-N-*.hdr` file.
pub(super) fn discover(root: &Path, entries: &[Entry]) -> Result<Option<Dataset>> {
    let mut subjects: BTreeMap<u64, BTreeMap<&str, PathBuf>> = BTreeMap::new();
    for e in entries {
        if let Some((n, kind)) = parse(e) {
            subjects.entry(n).or_default().insert(kind, e.path.clone());
        }
    }
    if subjects.is_empty() {
        return Ok(None);
    }
    let mut problems = Vec::new();
    note_apple_double(root, entries, &mut problems);
    let mut cases = Vec::with_capacity(subjects.len());
    for (n, mut files) in subjects {
        let id = format!("subject-{n}");
        let mut modalities = Vec::with_capacity(MODALITIES.len());
        for m in MODALITIES {
            let Some(path) = files.remove(m) else {
                return Err(VolumeError::dataset(
                    root,
                    format!(
                        "case {id}: missing {} (an iSEG subject has {id}-T1.hdr and {id}-T2.hdr, \
                         each with its .img, and optionally {id}-label.hdr)",
                        root.join(format!("{id}-{m}.hdr")).display()
                    ),
                ));
            };
            modalities.push(ModalityFile { name: m.to_string(), path, channel: None });
        }
        cases.push(Case { id, modalities, label: files.remove("label") });
    }
    Ok(Some(Dataset {
        root: root.to_path_buf(),
        layout: Layout::Iseg,
        cases,
        preset: LabelPreset::named("iseg").ok(),
        problems,
    }))
}
