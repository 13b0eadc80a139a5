//! BraTS layouts: case folders holding `<case>_{flair,t1,t1ce,t2}[_seg].nii.gz` (BraTS ≤ 2020) or
//! `<case>-{t1n,t1c,t2w,t2f}[-seg].nii.gz` (BraTS 2023); a folder of case folders, or one case folder.

use std::path::{Path, PathBuf};

use super::{
    is_apple_double, list_dir, note_apple_double, strip_suffix_ci, Case, Dataset, Entry, Layout, ModalityFile,
};
use crate::labels::LabelPreset;
use crate::{Result, VolumeError};

/// One naming convention.
struct Style {
    layout: Layout,
    sep: &'static str,
    modalities: [&'static str; 4],
    preset: &'static str,
}

const STYLES: [Style; 2] = [
    Style { layout: Layout::Brats, sep: "_", modalities: ["flair", "t1", "t1ce", "t2"], preset: "brats" },
    Style { layout: Layout::Brats2023, sep: "-", modalities: ["t1n", "t1c", "t2w", "t2f"], preset: "brats2023" },
];

const SEG: &str = "seg";

/// A file recognised as part of a BraTS case.
struct Part<'a> {
    style: usize,
    prefix: &'a str,
    /// Modality or "seg".
    kind: &'static str,
    path: &'a Path,
}

/// Recognise `name` as `<prefix><sep><kind>.nii[.gz]`.
fn classify(e: &Entry) -> Option<Part<'_>> {
    if e.is_dir || is_apple_double(&e.name) {
        return None;
    }
    let stem = strip_suffix_ci(&e.name, ".nii.gz").or_else(|| strip_suffix_ci(&e.name, ".nii"))?;
    for (s, style) in STYLES.iter().enumerate() {
        for kind in style.modalities.iter().chain(std::iter::once(&SEG)) {
            let suffix = format!("{}{kind}", style.sep);
            if let Some(prefix) = strip_suffix_ci(stem, &suffix).filter(|p| !p.is_empty()) {
                return Some(Part { style: s, prefix, kind, path: &e.path });
            }
        }
    }
    None
}

/// The case in folder `dir` (whose entries are `entries`), `None` when it holds no BraTS file.
fn case_in(dir: &Path, entries: &[Entry]) -> Result<Option<(usize, Case)>> {
    let parts: Vec<Part> = entries.iter().filter_map(classify).collect();
    let Some(first) = parts.first() else {
        return Ok(None);
    };
    let (style_idx, prefix) = (first.style, first.prefix);
    if let Some(other) = parts.iter().find(|p| p.style != style_idx || p.prefix != prefix) {
        return Err(VolumeError::dataset(
            dir,
            format!(
                "holds files of more than one case or naming style ({} and {}); expected one case per \
                 folder",
                first.path.display(),
                other.path.display()
            ),
        ));
    }
    let style = &STYLES[style_idx];
    let pick = |kind: &str| -> Result<Option<PathBuf>> {
        let found: Vec<&Part> = parts.iter().filter(|p| p.kind == kind).collect();
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.path.to_path_buf())),
            [a, b, ..] => Err(VolumeError::dataset(
                dir,
                format!("case {prefix}: two files for '{kind}': {} and {}", a.path.display(), b.path.display()),
            )),
        }
    };
    let mut modalities = Vec::with_capacity(4);
    for m in style.modalities {
        let Some(path) = pick(m)? else {
            let sep = style.sep;
            return Err(VolumeError::dataset(
                dir,
                format!(
                    "case {prefix}: missing {} ({} case folder holds {prefix}{sep}{{{}}}.nii.gz and \
                     optionally {prefix}{sep}seg.nii.gz)",
                    dir.join(format!("{prefix}{sep}{m}.nii.gz")).display(),
                    style.layout.name(),
                    style.modalities.join(",")
                ),
            ));
        };
        modalities.push(ModalityFile { name: m.to_string(), path, channel: None });
    }
    let case = Case { id: prefix.to_string(), modalities, label: pick(SEG)? };
    Ok(Some((style_idx, case)))
}

/// A BraTS dataset at `root`: `root` itself is a case folder, or its sub-folders are.
/// `None` when no BraTS case is found.
pub(super) fn discover(root: &Path, entries: &[Entry]) -> Result<Option<Dataset>> {
    let mut problems = Vec::new();
    note_apple_double(root, entries, &mut problems);
    let mut found = Vec::new();
    if let Some(one) = case_in(root, entries)? {
        found.push(one);
    } else {
        for e in entries.iter().filter(|e| e.is_dir) {
            if is_apple_double(&e.name) {
                continue;
            }
            let sub = list_dir(&e.path)?;
            match case_in(&e.path, &sub)? {
                Some(c) => {
                    note_apple_double(&e.path, &sub, &mut problems);
                    found.push(c);
                }
                None => problems.push(format!("{}: holds no BraTS image files; skipped", e.path.display())),
            }
        }
    }
    let Some(&(style_idx, _)) = found.first() else {
        return Ok(None);
    };
    if let Some((other, c)) = found.iter().find(|(s, _)| *s != style_idx) {
        return Err(VolumeError::dataset(
            root,
            format!(
                "mixes naming styles: case {} uses {} names, case {} uses {} names",
                found[0].1.id,
                STYLES[style_idx].layout.name(),
                c.id,
                STYLES[*other].layout.name()
            ),
        ));
    }
    let mut cases: Vec<Case> = found.into_iter().map(|(_, c)| c).collect();
    cases.sort_by(|a, b| a.id.cmp(&b.id));
    if let Some(w) = cases.windows(2).find(|w| w[0].id == w[1].id) {
        return Err(VolumeError::dataset(root, format!("case {} appears in two folders", w[0].id)));
    }
    let style = &STYLES[style_idx];
    Ok(Some(Dataset {
        root: root.to_path_buf(),
        layout: style.layout,
        cases,
        preset: LabelPreset::named(style.preset).ok(),
        problems,
    }))
}
