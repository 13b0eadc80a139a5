//! Label presets: which on-disk label values a dataset uses, their contiguous class indices, and the
//! evaluation regions (e.g. BraTS WT/TC/ET) built from them.

use std::collections::BTreeMap;
use std::path::Path;

use rayon::prelude::*;

use crate::{LabelMap, Result, VolumeError};

/// A named union of on-disk label values, e.g. BraTS "WT" = {1, 2, 4}.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// Region name ("WT", "TC", "ET", "CSF", ...).
    pub name: String,
    /// On-disk label values that belong to the region.
    pub labels: Vec<i32>,
}

/// The label convention of a dataset: on-disk values with class names, and evaluation regions.
///
/// Class index `k` (as used by models and [`LabelPreset::to_classes`]) is the position in `classes`;
/// class 0 is always background (on-disk value 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelPreset {
    /// Preset name ("brats", "iseg", or a custom name).
    pub name: String,
    /// On-disk value and class name, background (value 0) first, then ascending by value.
    pub classes: Vec<(i32, String)>,
    /// Evaluation regions.
    pub regions: Vec<Region>,
    /// When true every non-zero on-disk value counts as class 1 (the `binary` preset), so no value is
    /// ever unknown.
    pub nonzero_is_foreground: bool,
}

/// Names accepted by [`LabelPreset::named`].
pub const PRESET_NAMES: [&str; 5] = ["brats", "brats2023", "msd-brain", "iseg", "binary"];

/// Sentinel in the lookup table for values outside the preset.
const UNKNOWN: u8 = u8::MAX;

fn region(name: &str, labels: &[i32]) -> Region {
    Region { name: name.to_string(), labels: labels.to_vec() }
}

fn classes(list: &[(i32, &str)]) -> Vec<(i32, String)> {
    list.iter().map(|(v, n)| (*v, (*n).to_string())).collect()
}

impl LabelPreset {
    /// A built-in preset by name (one of [`PRESET_NAMES`]).
    pub fn named(name: &str) -> Result<Self> {
        let bt = |n: &str, c: &[(i32, &str)], r: Vec<Region>| Self {
            name: n.to_string(),
            classes: classes(c),
            regions: r,
            nonzero_is_foreground: false,
        };
        Ok(match name {
            "brats" => bt(
                "brats",
                &[(0, "background"), (1, "NCR/NET"), (2, "edema"), (4, "enhancing")],
                vec![region("WT", &[1, 2, 4]), region("TC", &[1, 4]), region("ET", &[4])],
            ),
            "brats2023" => bt(
                "brats2023",
                &[(0, "background"), (1, "NCR"), (2, "ED"), (3, "ET")],
                vec![region("WT", &[1, 2, 3]), region("TC", &[1, 3]), region("ET", &[3])],
            ),
            "msd-brain" => bt(
                "msd-brain",
                &[(0, "background"), (1, "edema"), (2, "non-enhancing tumour"), (3, "enhancing tumour")],
                vec![region("WT", &[1, 2, 3]), region("TC", &[2, 3]), region("ET", &[3])],
            ),
            "iseg" => bt(
                "iseg",
                &[(0, "background"), (10, "CSF"), (150, "GM"), (250, "WM")],
                vec![region("CSF", &[10]), region("GM", &[150]), region("WM", &[250])],
            ),
            "binary" => Self {
                nonzero_is_foreground: true,
                ..bt("binary", &[(0, "background"), (1, "foreground")], vec![region("FG", &[1])])
            },
            other => {
                return Err(VolumeError::Invalid(format!(
                    "unknown label preset '{other}': known presets are {}",
                    PRESET_NAMES.join(", ")
                )))
            }
        })
    }

    /// A custom preset. Value 0 (background) must be present; classes are reordered background first,
    /// then ascending by value. Values must be distinct (at most 255 classes); regions must be non-empty,
    /// uniquely named, and only use non-background values of the preset.
    pub fn custom(name: &str, classes: Vec<(i32, String)>, regions: Vec<Region>) -> Result<Self> {
        let bad = |why: String| Err(VolumeError::Invalid(format!("label preset '{name}': {why}")));
        let mut classes = classes;
        classes.sort_by_key(|(v, _)| *v);
        if let Some(w) = classes.windows(2).find(|w| w[0].0 == w[1].0) {
            return bad(format!("value {} is listed twice", w[0].0));
        }
        let Some(bg) = classes.iter().position(|(v, _)| *v == 0) else {
            return bad("no background class (value 0)".into());
        };
        let bg = classes.remove(bg);
        classes.insert(0, bg);
        if classes.len() >= usize::from(UNKNOWN) {
            return bad(format!("{} classes, at most 254 allowed", classes.len()));
        }
        for (i, r) in regions.iter().enumerate() {
            if r.name.is_empty() || r.labels.is_empty() {
                return bad("a region needs a name and at least one label value".into());
            }
            if regions[..i].iter().any(|o| o.name == r.name) {
                return bad(format!("region '{}' is defined twice", r.name));
            }
            if let Some(v) = r.labels.iter().find(|v| **v == 0 || !classes.iter().any(|(c, _)| c == *v)) {
                return bad(format!("region '{}' uses value {v}, which is background or not a class", r.name));
            }
        }
        Ok(Self { name: name.to_string(), classes, regions, nonzero_is_foreground: false })
    }

    /// Number of classes K (background included); class indices are 0..K.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// The on-disk values, in class order.
    pub fn values(&self) -> Vec<i32> {
        self.classes.iter().map(|(v, _)| *v).collect()
    }

    /// The region called `name`, or an error listing the preset's regions.
    pub fn region(&self, name: &str) -> Result<&Region> {
        self.regions.iter().find(|r| r.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.regions.iter().map(|r| r.name.as_str()).collect();
            VolumeError::Invalid(format!(
                "label preset '{}' has no region '{name}' (regions: {})",
                self.name,
                known.join(", ")
            ))
        })
    }

    /// The class indices (see [`LabelPreset::to_classes`]) that make up region `name`.
    pub fn region_classes(&self, name: &str) -> Result<Vec<u8>> {
        let r = self.region(name)?;
        let lookup = self.lookup();
        Ok(r.labels.iter().filter_map(|v| lookup.class(*v)).collect())
    }

    /// Voxel mask of region `name` on an on-disk label map.
    pub fn region_mask(&self, name: &str, labels: &LabelMap) -> Result<Vec<bool>> {
        let r = self.region(name)?;
        if self.nonzero_is_foreground {
            return Ok(labels.data.par_iter().map(|v| *v != 0).collect());
        }
        Ok(labels.data.par_iter().map(|v| r.labels.contains(v)).collect())
    }

    /// Voxel mask of region `name` on class indices (e.g. a model's prediction).
    pub fn region_mask_classes(&self, name: &str, classes: &[u8]) -> Result<Vec<bool>> {
        let mut member = [false; 256];
        for c in self.region_classes(name)? {
            member[usize::from(c)] = true;
        }
        Ok(classes.par_iter().map(|c| member[usize::from(*c)]).collect())
    }

    /// Error with the first (smallest) value of `labels` that the preset does not know, its voxel
    /// count and the expected values. `path` names the file in the error.
    pub fn validate(&self, labels: &LabelMap, path: &Path) -> Result<()> {
        if self.nonzero_is_foreground {
            return Ok(());
        }
        let lookup = self.lookup();
        if labels.data.par_iter().all(|v| lookup.class(*v).is_some()) {
            return Ok(());
        }
        let mut unknown = BTreeMap::new();
        for v in labels.data.iter().filter(|v| lookup.class(**v).is_none()) {
            *unknown.entry(*v).or_insert(0usize) += 1;
        }
        let (value, count) = unknown.into_iter().next().unwrap_or((0, 0));
        Err(VolumeError::UnknownLabel {
            path: path.to_path_buf(),
            value,
            count,
            preset: self.name.clone(),
            expected: self.values(),
        })
    }

    /// On-disk values to contiguous class indices 0..K; an unknown value is a
    /// [`VolumeError::UnknownLabel`] (naming the label map's source file).
    pub fn to_classes(&self, labels: &LabelMap) -> Result<Vec<u8>> {
        if self.nonzero_is_foreground {
            return Ok(labels.data.par_iter().map(|v| u8::from(*v != 0)).collect());
        }
        let lookup = self.lookup();
        let out: Vec<u8> = labels.data.par_iter().map(|v| lookup.class(*v).unwrap_or(UNKNOWN)).collect();
        if out.par_iter().any(|c| *c == UNKNOWN) {
            let path = labels.source.path.clone().unwrap_or_default();
            self.validate(labels, &path)?;
        }
        Ok(out)
    }

    /// Class indices back to on-disk values. Indices ≥ K (never produced by a K-class model) are
    /// written as background (0).
    pub fn from_classes(&self, classes: &[u8]) -> Vec<i32> {
        let mut table = [0i32; 256];
        for (k, (v, _)) in self.classes.iter().enumerate() {
            table[k] = *v;
        }
        classes.par_iter().map(|c| table[usize::from(*c)]).collect()
    }

    fn lookup(&self) -> Lookup {
        let lo = self.classes.iter().map(|c| c.0).min().unwrap_or(0);
        let hi = self.classes.iter().map(|c| c.0).max().unwrap_or(0);
        let span = i64::from(hi) - i64::from(lo);
        if span < 1 << 16 {
            let mut table = vec![UNKNOWN; span as usize + 1];
            for (k, (v, _)) in self.classes.iter().enumerate() {
                table[(i64::from(*v) - i64::from(lo)) as usize] = k as u8;
            }
            Lookup::Table { lo, table }
        } else {
            let mut sorted: Vec<(i32, u8)> =
                (self.classes.iter().enumerate()).map(|(k, (v, _))| (*v, k as u8)).collect();
            sorted.sort_unstable();
            Lookup::Sorted(sorted)
        }
    }
}

/// Value → class index.
enum Lookup {
    Table { lo: i32, table: Vec<u8> },
    Sorted(Vec<(i32, u8)>),
}

impl Lookup {
    #[inline]
    fn class(&self, v: i32) -> Option<u8> {
        match self {
            Lookup::Table { lo, table } => {
                let i = i64::from(v) - i64::from(*lo);
                if i < 0 {
                    return None;
                }
                table.get(i as usize).copied().filter(|c| *c != UNKNOWN)
            }
            Lookup::Sorted(s) => s.binary_search_by_key(&v, |(val, _)| *val).ok().map(|i| s[i].1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Geometry, Volume};

    fn map(data: Vec<i32>) -> LabelMap {
        let n = data.len();
        Volume::new(data, Geometry::from_spacing([n, 1, 1], [1.0; 3]), 1).unwrap()
    }

    #[test]
    fn brats_round_trip_and_regions() {
        let p = LabelPreset::named("brats").unwrap();
        let l = map(vec![0, 1, 2, 4, 4, 0]);
        p.validate(&l, Path::new("x")).unwrap();
        let c = p.to_classes(&l).unwrap();
        assert_eq!(c, vec![0, 1, 2, 3, 3, 0]);
        assert_eq!(p.from_classes(&c), l.data);
        let tc = p.region_mask("TC", &l).unwrap();
        assert_eq!(tc, vec![false, true, false, true, true, false]);
        assert_eq!(p.region_classes("ET").unwrap(), vec![3]);
        assert_eq!(p.region_mask_classes("WT", &c).unwrap(), [false, true, true, true, true, false]);
        assert!(p.region("XX").is_err());
    }

    #[test]
    fn unknown_value_is_reported_with_count() {
        let p = LabelPreset::named("brats").unwrap();
        let l = map(vec![0, 3, 3, 7, 1]);
        match p.validate(&l, Path::new("seg.nii.gz")) {
            Err(VolumeError::UnknownLabel { value, count, expected, .. }) => {
                assert_eq!((value, count), (3, 2));
                assert_eq!(expected, vec![0, 1, 2, 4]);
            }
            other => panic!("expected UnknownLabel, got {other:?}"),
        }
        assert!(matches!(p.to_classes(&l), Err(VolumeError::UnknownLabel { .. })));
    }

    #[test]
    fn iseg_msd_and_binary() {
        let p = LabelPreset::named("iseg").unwrap();
        let c = p.to_classes(&map(vec![0, 10, 150, 250])).unwrap();
        assert_eq!(c, vec![0, 1, 2, 3]);
        assert_eq!(p.from_classes(&[3, 2, 9]), vec![250, 150, 0]);
        let m = LabelPreset::named("msd-brain").unwrap();
        assert_eq!(m.region("TC").unwrap().labels, vec![2, 3]);
        let b = LabelPreset::named("binary").unwrap();
        let l = map(vec![0, 5, -2, 0]);
        b.validate(&l, Path::new("x")).unwrap();
        assert_eq!(b.to_classes(&l).unwrap(), vec![0, 1, 1, 0]);
        assert_eq!(b.region_mask("FG", &l).unwrap(), vec![false, true, true, false]);
    }

    #[test]
    fn unknown_name_lists_known_presets() {
        let e = LabelPreset::named("bratz").unwrap_err().to_string();
        assert!(e.contains("bratz") && e.contains("msd-brain") && e.contains("iseg"), "{e}");
    }

    #[test]
    fn custom_presets_are_checked_and_sorted() {
        let c = |v: &[(i32, &str)]| classes(v);
        let p = LabelPreset::custom("mine", c(&[(7, "b"), (0, "bg"), (-1, "a")]), vec![]).unwrap();
        assert_eq!(p.values(), vec![0, -1, 7]);
        assert_eq!(p.to_classes(&map(vec![7, -1, 0])).unwrap(), vec![2, 1, 0]);
        assert!(LabelPreset::custom("m", c(&[(1, "x")]), vec![]).is_err());
        assert!(LabelPreset::custom("m", c(&[(0, "b"), (0, "x")]), vec![]).is_err());
        let r = vec![region("R", &[2])];
        assert!(LabelPreset::custom("m", c(&[(0, "b"), (1, "x")]), r).is_err());
        let big = LabelPreset::custom("big", c(&[(0, "b"), (1 << 30, "x")]), vec![]).unwrap();
        assert_eq!(big.to_classes(&map(vec![1 << 30, 0])).unwrap(), vec![1, 0]);
        assert!(big.validate(&map(vec![5]), Path::new("x")).is_err());
    }
}
