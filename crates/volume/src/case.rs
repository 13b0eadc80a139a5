//! Loading one case: all its files decoded in parallel, 4-D files split into channels, every grid
//! checked against the first modality's, labels checked against a preset.

use std::path::Path;

use rayon::prelude::*;

use crate::dataset::Case;
use crate::labels::LabelPreset;
use crate::{read_image, read_labels, Geometry, Image, LabelMap, Result, VolumeError};

/// Largest difference (mm, in spacing and affine entries) tolerated between the grids of one case.
pub const GRID_TOLERANCE_MM: f64 = 1e-3;

/// A case read into memory.
#[derive(Debug, Clone)]
pub struct LoadedCase {
    /// Case identifier.
    pub id: String,
    /// (modality name, single-channel image), in the order requested.
    pub images: Vec<(String, Image)>,
    /// The label map, when loaded.
    pub label: Option<LabelMap>,
}

impl LoadedCase {
    /// The image of modality `name`.
    pub fn image(&self, name: &str) -> Option<&Image> {
        self.images.iter().find(|(n, _)| n == name).map(|(_, i)| i)
    }

    /// The grid shared by all images and the label map (that of the first image or the label).
    pub fn geometry(&self) -> Option<&Geometry> {
        (self.images.first().map(|(_, i)| &i.geometry)).or_else(|| self.label.as_ref().map(|l| &l.geometry))
    }
}

/// Read every modality and the label map (if any) of `case`, in parallel (one task per file; a 4-D
/// MSD file is read once and split). Images must be finite; all files must share shape and affine
/// within [`GRID_TOLERANCE_MM`] ([`VolumeError::GridMismatch`] otherwise); with a `preset` the
/// label values are validated ([`VolumeError::UnknownLabel`]).
pub fn load_case(case: &Case, preset: Option<&LabelPreset>) -> Result<LoadedCase> {
    let all: Vec<usize> = (0..case.modalities.len()).collect();
    load(case, &all, true, preset)
}

/// Read only the modalities `names` of `case` (in that order) and no label map, with the same checks
/// as [`load_case`]. An unknown name is a [`VolumeError::Dataset`] listing the case's modalities.
pub fn load_images(case: &Case, names: &[&str]) -> Result<LoadedCase> {
    let mut picked = Vec::with_capacity(names.len());
    for name in names {
        let i = (case.modalities.iter().position(|m| m.name == *name)).ok_or_else(|| {
            VolumeError::dataset(
                case.modalities.first().map(|m| m.path.as_path()).unwrap_or(Path::new("")),
                format!("case {} has no modality '{name}' (it has {})", case.id, case.modality_names().join(", ")),
            )
        })?;
        picked.push(i);
    }
    load(case, &picked, false, None)
}

/// One file to read: an image with the (output slot, channel) pairs wanted from it, or the labels.
enum Job<'a> {
    Image { path: &'a Path, wanted: Vec<(usize, Option<usize>)> },
    Label(&'a Path),
}

enum Done {
    Images(Vec<(usize, Image)>),
    Label(Box<LabelMap>),
}

fn load(case: &Case, picked: &[usize], with_label: bool, preset: Option<&LabelPreset>) -> Result<LoadedCase> {
    let _span = tracing::debug_span!("load_case", case = %case.id).entered();
    let mut jobs: Vec<Job> = Vec::new();
    for (slot, &m) in picked.iter().enumerate() {
        let file = &case.modalities[m];
        let existing = jobs.iter_mut().find_map(|j| match j {
            Job::Image { path, wanted } if *path == file.path.as_path() => Some(wanted),
            _ => None,
        });
        match existing {
            Some(wanted) => wanted.push((slot, file.channel)),
            None => jobs.push(Job::Image { path: &file.path, wanted: vec![(slot, file.channel)] }),
        }
    }
    let label_path = case.label.as_deref().filter(|_| with_label);
    if let Some(p) = label_path {
        jobs.push(Job::Label(p));
    }
    let done: Vec<Done> = jobs
        .into_par_iter()
        .map(|job| match job {
            Job::Image { path, wanted } => {
                let img = read_image(path)?;
                split_channels(case, path, img, &wanted).map(Done::Images)
            }
            Job::Label(path) => {
                let l = read_labels(path)?;
                if l.channels != 1 {
                    return Err(VolumeError::dataset(
                        path,
                        format!("case {}: a label map must have one channel, found {}", case.id, l.channels),
                    ));
                }
                Ok(Done::Label(Box::new(l)))
            }
        })
        .collect::<Result<_>>()?;
    let mut slots: Vec<Option<Image>> = (0..picked.len()).map(|_| None).collect();
    let mut label = None;
    for d in done {
        match d {
            Done::Images(list) => list.into_iter().for_each(|(s, img)| slots[s] = Some(img)),
            Done::Label(l) => label = Some(*l),
        }
    }
    let mut images = Vec::with_capacity(picked.len());
    for (slot, img) in slots.into_iter().enumerate() {
        let file = &case.modalities[picked[slot]];
        let img =
            img.ok_or_else(|| VolumeError::Invalid(format!("internal: modality {} was not loaded", file.name)))?;
        images.push((file.name.clone(), img));
    }
    check_grids(case, picked, &images, label.as_ref().zip(label_path))?;
    if let (Some(p), Some(l), Some(path)) = (preset, &label, label_path) {
        p.validate(l, path)?;
    }
    Ok(LoadedCase { id: case.id.clone(), images, label })
}

/// Error unless every image and the label map share the first image's grid.
fn check_grids(
    case: &Case,
    picked: &[usize],
    images: &[(String, Image)],
    label: Option<(&LabelMap, &Path)>,
) -> Result<()> {
    let mut grids: Vec<(&Geometry, &Path)> =
        (images.iter().zip(picked)).map(|((_, img), &m)| (&img.geometry, case.modalities[m].path.as_path())).collect();
    if let Some((l, p)) = label {
        grids.push((&l.geometry, p));
    }
    let Some(&(first, first_path)) = grids.first() else {
        return Ok(());
    };
    for &(g, p) in &grids[1..] {
        if let Some(difference) = first.difference(g, GRID_TOLERANCE_MM) {
            return Err(VolumeError::GridMismatch { a: first_path.to_path_buf(), b: p.to_path_buf(), difference });
        }
    }
    Ok(())
}

/// The single-channel images wanted from `img`. The data of channel 0 stays in `img`'s buffer
/// (truncated); other channels are copied, in parallel.
fn split_channels(
    case: &Case,
    path: &Path,
    img: Image,
    wanted: &[(usize, Option<usize>)],
) -> Result<Vec<(usize, Image)>> {
    let mut resolved = Vec::with_capacity(wanted.len());
    for &(slot, channel) in wanted {
        let c = match channel {
            Some(c) if c < img.channels => c,
            None if img.channels == 1 => 0,
            _ => {
                return Err(VolumeError::dataset(
                    path,
                    format!(
                        "case {}: {} but the file has {} channel(s)",
                        case.id,
                        channel
                            .map_or("a single-channel image is expected".into(), |c| format!("channel {c} is wanted")),
                        img.channels
                    ),
                ))
            }
        };
        resolved.push((slot, c));
    }
    // The first request for channel 0 takes over the original buffer.
    let keep = resolved.iter().position(|&(_, c)| c == 0);
    if img.channels == 1 && resolved.len() == 1 {
        return Ok(vec![(resolved[0].0, img)]);
    }
    let mut out: Vec<(usize, Image)> = (resolved.par_iter().enumerate())
        .filter(|(i, _)| Some(*i) != keep)
        .map(|(_, &(slot, c))| (slot, single_channel(&img, img.channel(c).to_vec())))
        .collect();
    if let Some(k) = keep {
        let n = img.geometry.len();
        let mut img = img;
        img.data.truncate(n);
        img.data.shrink_to_fit();
        let data = std::mem::take(&mut img.data);
        out.push((resolved[k].0, single_channel(&img, data)));
    }
    Ok(out)
}

/// A one-channel image with `img`'s grid and source (header dimensions set to 3-D).
fn single_channel(img: &Image, data: Vec<f32>) -> Image {
    let mut source = img.source.clone();
    source.header.dim[0] = 3;
    source.header.dim[4..].iter_mut().for_each(|d| *d = 1);
    Image { data, geometry: img.geometry.clone(), channels: 1, source }
}
