//! Exact Euclidean distance transform (squared and plain, in mm) of a binary feature mask on an
//! anisotropic grid: a binary scan along i, then Felzenszwalb–Huttenlocher envelopes along j and k.
//!
//! Memory access is blocked so that every read uses whole cache lines: passes i and j run per
//! k-slice (the slice is transposed into line-major scratch for the j envelopes and back), and the k
//! pass runs per j-row, gathering the `nz` rows of length `nx` into line-major scratch. Both are
//! parallel with rayon (slices, resp. j-rows).

use rayon::prelude::*;

use crate::line::{binary_line, envelope, transpose, Envelope, TILE};
use crate::{Grid, Result};

/// Squared Euclidean distance (mm²) from every voxel to the nearest feature (true) voxel: 0 on
/// features, `f32::INFINITY` everywhere when there is no feature. Exact (computed in f64 along each
/// line, stored as f32).
pub fn edt_squared(features: &[bool], grid: &Grid) -> Result<Vec<f32>> {
    grid.check("features", features.len())?;
    let _span = tracing::debug_span!("edt_squared", dims = ?grid.dims).entered();
    Ok(edt_sq(features, grid.dims, grid.spacing, false))
}

/// Euclidean distance (mm) from every voxel to the nearest feature (true) voxel: 0 on features,
/// `f32::INFINITY` everywhere when there is no feature. See [`edt_squared`].
pub fn edt(features: &[bool], grid: &Grid) -> Result<Vec<f32>> {
    grid.check("features", features.len())?;
    let _span = tracing::debug_span!("edt", dims = ?grid.dims).entered();
    Ok(edt_sq(features, grid.dims, grid.spacing, true))
}

/// Per-thread scratch of the 2-D and k passes.
#[derive(Default)]
struct Scratch {
    a: Vec<f32>,
    b: Vec<f32>,
    env: Envelope,
    /// Query flags gathered line-major like `a` (for [`distances_at`]).
    q: Vec<bool>,
}

impl Scratch {
    fn sized(&mut self, n: usize) -> (&mut [f32], &mut [f32], &mut Envelope) {
        if self.a.len() < n {
            self.a.resize(n, 0.0);
            self.b.resize(n, 0.0);
        }
        (&mut self.a[..n], &mut self.b[..n], &mut self.env)
    }
}

/// Passes i and j over every k-slice: `out` gets the squared 2-D distances; returns whether any
/// feature exists.
fn passes_ij(features: &[bool], dims: [usize; 3], spacing: [f64; 3], out: &mut [f32]) -> bool {
    let [nx, ny, _] = dims;
    out.par_chunks_mut(nx * ny)
        .zip(features.par_chunks(nx * ny))
        .map_init(Scratch::default, |sc, (o, f)| slice_ij(f, o, nx, ny, spacing, sc))
        .reduce(|| false, |a, b| a | b)
}

/// [`edt_squared`] (or with `root`, [`edt`]) without checks: `features.len()` must be the product of
/// `dims`.
pub(crate) fn edt_sq(features: &[bool], dims: [usize; 3], spacing: [f64; 3], root: bool) -> Vec<f32> {
    let [nx, ny, nz] = dims;
    // Zeroed (lazily mapped) memory: the first pass writes every voxel, in parallel.
    let mut out = vec![0.0f32; nx * ny * nz];
    if out.is_empty() {
        return out;
    }
    let any = passes_ij(features, dims, spacing, &mut out);
    if any && nz > 1 {
        pass_k(&mut out, dims, spacing[2], root);
    } else if root {
        out.par_chunks_mut(1 << 16).for_each(|c| c.iter_mut().for_each(|v| *v = v.sqrt()));
    }
    out
}

/// Euclidean distances (mm) from every `query` voxel to the nearest `features` voxel (infinity when
/// there is none), without computing the full transform: the k pass runs only on columns holding a
/// query voxel and evaluates the envelopes only there. Order: by j-row, then i, then k.
/// Both slices must have the length of `dims`.
pub(crate) fn distances_at(features: &[bool], query: &[bool], dims: [usize; 3], spacing: [f64; 3]) -> Vec<f64> {
    let [nx, ny, nz] = dims;
    let mut d2 = vec![0.0f32; nx * ny * nz];
    if d2.is_empty() {
        return Vec::new();
    }
    let any = passes_ij(features, dims, spacing, &mut d2);
    if !any {
        return vec![f64::INFINITY; query.iter().filter(|q| **q).count()];
    }
    let (d2, plane) = (&d2[..], nx * ny);
    let parts: Vec<Vec<f64>> = (0..ny)
        .into_par_iter()
        .map_init(Scratch::default, |sc, j| {
            let mut found = Vec::new();
            let rows = (0..nz).map(|k| nx * j + plane * k);
            if !rows.clone().any(|r| query[r..r + nx].iter().fold(false, |a, b| a | b)) {
                return found;
            }
            let n = nx * nz;
            sc.sized(n);
            if sc.q.len() < n {
                sc.q.resize(n, false);
            }
            // Line-major gathers of the distances and the query flags.
            tiles(nx, nz, |k, cols| {
                let r = nx * j + plane * k;
                for i in cols {
                    sc.a[i * nz + k] = d2[r + i];
                    sc.q[i * nz + k] = query[r + i];
                }
            });
            for i in 0..nx {
                let q = &sc.q[i * nz..(i + 1) * nz];
                if !q.iter().fold(false, |a, b| a | b) {
                    continue;
                }
                if nz == 1 || !sc.env.build(&sc.a[i * nz..(i + 1) * nz], spacing[2]) {
                    // No envelope to build: the 2-D distance is final (or infinite).
                    let line = &sc.a[i * nz..(i + 1) * nz];
                    found.extend(q.iter().zip(line).filter(|(q, _)| **q).map(|(_, d)| f64::from(*d).sqrt()));
                    continue;
                }
                let mut kk = 0usize;
                for (k, _) in q.iter().enumerate().filter(|(_, q)| **q) {
                    found.push(sc.env.eval(k, &mut kk).sqrt());
                }
            }
            found
        })
        .collect();
    parts.concat()
}

/// Passes i (binary scan) and j (envelopes on the transposed slice) of one k-slice. Returns whether
/// the slice holds a feature.
fn slice_ij(f: &[bool], o: &mut [f32], nx: usize, ny: usize, sp: [f64; 3], sc: &mut Scratch) -> bool {
    let mut any = false;
    for (fr, or) in f.chunks(nx).zip(o.chunks_mut(nx)) {
        any |= binary_line(fr, sp[0], or);
    }
    if !any || ny == 1 {
        return any;
    }
    let (a, b, env) = sc.sized(nx * ny);
    transpose(o, ny, nx, a);
    for (li, lo) in a.chunks(ny).zip(b.chunks_mut(ny)) {
        envelope(li, sp[1], lo, env);
    }
    transpose(b, nx, ny, o);
    true
}

/// Pass k: per j-row, gather the `nz` rows `(·, j, k)` into line-major scratch `a[i*nz + k]`, run the
/// envelopes along k and scatter back (square roots taken when `root`).
fn pass_k(out: &mut [f32], dims: [usize; 3], s: f64, root: bool) {
    let [nx, ny, nz] = dims;
    let mut rows: Vec<Vec<&mut [f32]>> = (0..ny).map(|_| Vec::with_capacity(nz)).collect();
    for slice in out.chunks_mut(nx * ny) {
        for (j, row) in slice.chunks_mut(nx).enumerate() {
            rows[j].push(row);
        }
    }
    rows.into_par_iter().for_each_init(Scratch::default, |sc, mut krows| {
        let (a, b, env) = sc.sized(nx * nz);
        tiles(nx, nz, |k, cols| cols.for_each(|i| a[i * nz + k] = krows[k][i]));
        for (li, lo) in a.chunks(nz).zip(b.chunks_mut(nz)) {
            if envelope(li, s, lo, env) && root {
                lo.iter_mut().for_each(|v| *v = v.sqrt());
            }
        }
        tiles(nx, nz, |k, cols| cols.for_each(|i| krows[k][i] = b[i * nz + k]));
    });
}

/// Visit an `nz × nx` block (rows k of length nx) in cache-line tiles: `f(k, columns)` for every row
/// and tile of `TILE` columns, so that line-major gathers and scatters touch whole cache lines.
fn tiles(nx: usize, nz: usize, mut f: impl FnMut(usize, std::ops::Range<usize>)) {
    for k0 in (0..nz).step_by(TILE) {
        for i0 in (0..nx).step_by(TILE) {
            for k in k0..(k0 + TILE).min(nz) {
                f(k, i0..(i0 + TILE).min(nx));
            }
        }
    }
}
