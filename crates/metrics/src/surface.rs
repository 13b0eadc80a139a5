//! Surface voxels of a mask: mask XOR erosion(mask), with voxels outside the grid counting as
//! background (scipy `binary_erosion(border_value=0)`), so mask voxels on the grid border are surface.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{Grid, Result};

/// Neighbourhood of the erosion that defines surface voxels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Connectivity {
    /// Face neighbours only (scipy `generate_binary_structure(3, 1)`): what MONAI's `get_mask_edges`
    /// and MedPy's default use.
    #[default]
    Six,
    /// Face, edge and corner neighbours (the full 3×3×3 cube).
    TwentySix,
}

impl Connectivity {
    /// The number of neighbours: 6 or 26.
    pub fn neighbours(self) -> usize {
        match self {
            Connectivity::Six => 6,
            Connectivity::TwentySix => 26,
        }
    }
}

/// Surface voxels of `mask`: true where the mask is true and at least one neighbour (per
/// `connectivity`) is false or outside the grid.
pub fn surface(mask: &[bool], grid: &Grid, connectivity: Connectivity) -> Result<Vec<bool>> {
    grid.check("mask", mask.len())?;
    let _span = tracing::debug_span!("surface", dims = ?grid.dims).entered();
    Ok(surface_of(mask, grid.dims, connectivity))
}

/// [`surface`] without checks: `mask.len()` must be the product of `dims`.
pub(crate) fn surface_of(mask: &[bool], dims: [usize; 3], c: Connectivity) -> Vec<bool> {
    let [nx, ny, nz] = dims;
    let plane = nx * ny;
    let mut out = vec![false; plane * nz];
    if out.is_empty() {
        return out;
    }
    let row = |j: isize, k: isize| -> Option<&[bool]> {
        if j < 0 || k < 0 || j as usize >= ny || k as usize >= nz {
            return None;
        }
        let start = nx * (j as usize + ny * k as usize);
        Some(&mask[start..start + nx])
    };
    out.par_chunks_mut(plane).enumerate().for_each_init(
        || vec![false; nx],
        |inner, (k, slice)| {
            let k = k as isize;
            for (j, orow) in slice.chunks_mut(nx).enumerate() {
                let j = j as isize;
                let Some(centre) = row(j, k) else { continue };
                if !centre.iter().fold(false, |a, b| a | b) {
                    continue;
                }
                // inner[i]: every neighbour of (i, j, k) is in the mask.
                inner.copy_from_slice(centre);
                for dk in -1isize..=1 {
                    for dj in -1isize..=1 {
                        let face = dj.abs() + dk.abs();
                        if face == 0 || (c == Connectivity::Six && face > 1) {
                            continue;
                        }
                        match row(j + dj, k + dk) {
                            None => inner.fill(false),
                            Some(r) => {
                                inner.iter_mut().zip(r).for_each(|(a, b)| *a &= *b);
                                if c == Connectivity::TwentySix {
                                    and_shifted(inner, r);
                                }
                            }
                        }
                    }
                }
                and_shifted(inner, centre);
                for ((o, m), e) in orow.iter_mut().zip(centre).zip(inner.iter()) {
                    *o = *m && !*e;
                }
            }
        },
    );
    out
}

/// `inner[i] &= r[i - 1] && r[i + 1]`, with positions outside the row counting as background.
fn and_shifted(inner: &mut [bool], r: &[bool]) {
    let n = inner.len();
    if n == 0 {
        return;
    }
    inner[0] = false;
    inner[n - 1] = false;
    for i in 1..n.saturating_sub(1) {
        inner[i] &= r[i - 1] & r[i + 1];
    }
}
