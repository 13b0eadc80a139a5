//! The CPU correlation engine: the correlation spec, the choice of path per correlation
//! ([`Corr`]: implicit GEMM or gather) and the tiled vol2col gather path.
//!
//! Every convolution pass in this crate is a *correlation*: for an output grid q (a whole output,
//! or one stride phase of it),
//! `out[co, r + q·step] = Σ_{ci, t} wm[co, ci, t] · in[ci, q·stride + t − pad]` (zero outside),
//! with a signed `pad`. The gather path works on one output plane `qd` at a time, in tiles of whole
//! output rows sized so that the gathered columns stay in L2: it gathers the columns of a tile
//! (`col[ci·kvol + t][voxel]`, voxels contiguous) and multiplies them by the weight matrix with
//! `gemm`. Nothing larger than one tile is ever materialised.

use super::gemm::{gemm_f32, MatRef};
use super::implicit;
use crate::KernelsError;

/// Floats of gathered columns per tile (256 KiB: the tile, the packed weights and the output tile
/// stay in a 1 MiB L2).
const TILE_FLOATS: usize = 64 * 1024;
/// Gemm works best on a tile height that is a multiple of the SIMD width.
pub(crate) const LANES: usize = 16;

/// One correlation, as described in the module docs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CorrSpec {
    /// Input channels.
    pub cin: usize,
    /// Output channels (rows of the weight matrix).
    pub cout: usize,
    /// Input spatial size.
    pub in_dims: [usize; 3],
    /// Kernel size.
    pub k: [usize; 3],
    /// Input step per output step.
    pub stride: [usize; 3],
    /// Input coordinate = q·stride + t − pad (pad may be negative).
    pub pad: [isize; 3],
    /// Size of the output grid q.
    pub q: [usize; 3],
    /// Size (H, W) of the output planes written to.
    pub out_hw: [usize; 2],
    /// Output coordinate = r + q·step.
    pub r: [usize; 3],
    /// Output step per q step.
    pub step: [usize; 3],
}

impl CorrSpec {
    fn kvol(&self) -> usize {
        self.k.iter().product()
    }

    /// Columns of the weight matrix (= rows of the gathered column tile).
    pub fn kdim(&self) -> usize {
        self.cin * self.kvol()
    }

    pub(crate) fn in_vol(&self) -> usize {
        self.in_dims.iter().product()
    }

    /// Output rows per tile: at least 64 voxels (the GEMM micro-tile height) and, where that costs at most twice the
    /// rows, a multiple of the SIMD width, so that no lanes are wasted.
    pub(crate) fn rows_per_tile(&self) -> usize {
        let qw = self.q[2].max(1);
        let mut rows = (TILE_FLOATS / (self.kdim() * qw).max(1)).max(64usize.div_ceil(qw));
        if let Some(r) = (rows..=2 * rows).find(|r| (r * qw) % LANES == 0) {
            rows = r;
        }
        rows.clamp(1, self.q[1].max(1))
    }
}

/// Reusable per-thread buffers.
#[derive(Default)]
pub(crate) struct Scratch {
    pub(crate) col: Vec<f32>,
    pub(crate) tile: Vec<f32>,
    /// Padded input planes of the implicit path.
    pub(crate) ring: Vec<f32>,
    /// Which padded plane each ring slot holds (`usize::MAX`: none).
    pub(crate) ring_tags: Vec<usize>,
}

pub(crate) fn internal(msg: &str) -> KernelsError {
    KernelsError::Layout { op: "conv3d (cpu)", msg: msg.to_string() }
}

/// Range of q along one axis whose input coordinate q·s + t − pad lies in [0, len).
fn valid_range(q: usize, s: usize, t: usize, pad: isize, len: usize) -> (usize, usize) {
    let shift = pad - t as isize; // need q·s ≥ shift and q·s ≤ len − 1 + shift
    let lo = if shift > 0 { (shift as usize).div_ceil(s) } else { 0 };
    let top = len as isize - 1 + shift;
    let hi = if top < 0 { 0 } else { (top as usize / s + 1).min(q) };
    (lo.min(hi), hi)
}

/// Gathers `col[kidx·ld + (qh − qh0)·Qw + qw]` for the rows `qh0..qh1` of plane `qd`.
pub(crate) fn gather(s: &CorrSpec, input: &[f32], qd: usize, qh0: usize, qh1: usize, ld: usize, col: &mut [f32]) {
    let [kd, kh, kw] = s.k;
    let [dd, hh, ww] = s.in_dims;
    let [sd, sh, sw] = s.stride;
    let [pd, ph, pw] = s.pad;
    let qw_n = s.q[2];
    let in_vol = s.in_vol();
    let nt = (qh1 - qh0) * qw_n;
    let ranges: Vec<(usize, usize)> = (0..kw).map(|tw| valid_range(qw_n, sw, tw, pw, ww)).collect();
    for ci in 0..s.cin {
        let chan = &input[ci * in_vol..(ci + 1) * in_vol];
        for td in 0..kd {
            let id = (qd * sd + td) as isize - pd;
            let d_ok = id >= 0 && (id as usize) < dd;
            for th in 0..kh {
                for tw in 0..kw {
                    let kidx = ((ci * kd + td) * kh + th) * kw + tw;
                    let colrow = &mut col[kidx * ld..kidx * ld + nt];
                    let (lo, hi) = ranges[tw];
                    for (ri, dst) in colrow.chunks_exact_mut(qw_n).enumerate() {
                        let ih = ((qh0 + ri) * sh + th) as isize - ph;
                        if !d_ok || ih < 0 || ih as usize >= hh || lo >= hi {
                            dst.fill(0.0);
                            continue;
                        }
                        let src = &chan[(id as usize * hh + ih as usize) * ww..][..ww];
                        dst[..lo].fill(0.0);
                        dst[hi..].fill(0.0);
                        let first = (lo * sw + tw) as isize - pw; // ≥ 0 by construction
                        let first = first as usize;
                        if sw == 1 {
                            dst[lo..hi].copy_from_slice(&src[first..first + hi - lo]);
                        } else {
                            for (j, d) in dst[lo..hi].iter_mut().enumerate() {
                                *d = src[first + j * sw];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Copies a computed tile (`tile[co·ld + (qh − qh0)·pitch + qw]`) to the output positions
/// `r + q·step` of the planes.
pub(crate) fn write_tile(
    s: &CorrSpec,
    tile: &[f32],
    ld: usize,
    pitch: usize,
    qh0: usize,
    qh1: usize,
    planes: &mut [&mut [f32]],
) -> Result<(), KernelsError> {
    let [oh_n, ow_n] = s.out_hw;
    let qw_n = s.q[2];
    for (co, plane) in planes.iter_mut().enumerate() {
        if plane.len() != oh_n * ow_n {
            return Err(internal("output plane of the wrong size"));
        }
        for qh in qh0..qh1 {
            let src = &tile[co * ld + (qh - qh0) * pitch..][..qw_n];
            let oh = s.r[1] + qh * s.step[1];
            let row = &mut plane[oh * ow_n..(oh + 1) * ow_n];
            if s.step[2] == 1 {
                row[s.r[2]..s.r[2] + qw_n].copy_from_slice(src);
            } else {
                for (qw, v) in src.iter().enumerate() {
                    row[s.r[2] + qw * s.step[2]] = *v;
                }
            }
        }
    }
    Ok(())
}

/// Computes plane `qd` of the correlation into `planes` (one output plane per output channel),
/// writing only the positions `r + q·step` of this grid.
fn gather_plane(
    s: &CorrSpec,
    input: &[f32],
    wm: &[f32],
    qd: usize,
    planes: &mut [&mut [f32]],
    scratch: &mut Scratch,
) -> Result<(), KernelsError> {
    let kdim = s.kdim();
    let [_, qh_n, qw_n] = s.q;
    if input.len() != s.cin * s.in_vol() || wm.len() != s.cout * kdim || planes.len() != s.cout {
        return Err(internal("operand sizes do not match the correlation"));
    }
    let rows = s.rows_per_tile();
    let ld = (rows * qw_n).next_multiple_of(LANES);
    if scratch.col.len() < kdim * ld {
        scratch.col.resize(kdim * ld, 0.0);
    }
    if scratch.tile.len() < s.cout * ld {
        scratch.tile.resize(s.cout * ld, 0.0);
    }
    let mut qh0 = 0;
    while qh0 < qh_n {
        let qh1 = (qh0 + rows).min(qh_n);
        let nt = (qh1 - qh0) * qw_n;
        let m = nt.next_multiple_of(LANES);
        gather(s, input, qd, qh0, qh1, ld, &mut scratch.col);
        let lhs = MatRef { data: &scratch.col, rs: 1, cs: ld };
        let rhs = MatRef { data: wm, rs: 1, cs: kdim };
        if !gemm_f32(m, s.cout, kdim, &mut scratch.tile, 1, ld, false, lhs, rhs, false) {
            return Err(internal("gemm operands out of bounds"));
        }
        write_tile(s, &scratch.tile, ld, qw_n, qh0, qh1, planes)?;
        qh0 = qh1;
    }
    Ok(())
}

/// A correlation with its weights prepared for the path that suits it.
pub(crate) struct Corr<'a> {
    /// The correlation.
    pub spec: CorrSpec,
    wm: &'a [f32],
    /// Per-tap weights when the implicit (gather-free) path is used.
    taps: Option<Vec<f32>>,
}

impl<'a> Corr<'a> {
    /// Chooses the path for `spec` with weight matrix `wm` (`[cout][cin·kvol]`).
    pub fn new(spec: CorrSpec, wm: &'a [f32]) -> Self {
        let taps = implicit::suits(&spec).then(|| implicit::tap_weights(&spec, wm));
        Self { spec, wm, taps }
    }

    /// Computes the output planes `qd0, qd0 + 1, …` (`planes[i]`: one plane per output channel
    /// for `qd0 + i`) from one batch element's input.
    pub fn run(
        &self,
        input: &[f32],
        qd0: usize,
        planes: &mut [Vec<&mut [f32]>],
        scratch: &mut Scratch,
    ) -> Result<(), KernelsError> {
        if input.len() != self.spec.cin * self.spec.in_vol() {
            return Err(internal("input size does not match the correlation"));
        }
        match &self.taps {
            Some(t) => implicit::implicit_run(&self.spec, input, t, qd0, planes, scratch),
            None => planes
                .iter_mut()
                .enumerate()
                .try_for_each(|(i, p)| gather_plane(&self.spec, input, self.wm, qd0 + i, p, scratch)),
        }
    }
}
