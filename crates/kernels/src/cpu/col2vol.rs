//! Backward-data (and so conv_transpose3d's forward pass) when the kernel is no larger than the
//! stride on every axis and there are many stride phases (kernel 16 stride 16, kernel 4 stride 4):
//! per tile of `dy` voxels one GEMM `cols (Ci·kvol × V) = wᵀ · dy_tile` and a scatter of each
//! voxel's kernel block into `dx`. Blocks of different voxels never overlap (k ≤ s), so tiles of
//! different `dy` planes write disjoint `dx` planes and run in parallel without conflicts.

use rayon::prelude::*;

use super::corr::{internal, Scratch};
use super::gemm::{gemm_f32, MatRef};
use crate::{Conv3dGeometry, KernelsError};

/// Floats of the column tile (4 MiB).
const TILE_FLOATS: usize = 1 << 20;

/// Whether this path suits `g`: kernel ≤ stride on every axis, and either more than 8 stride
/// phases or a long reduction (≥ 256 output channels), where the one large GEMM beats the
/// per-phase GEMMs and the scalar scatter is cheap beside it. Measured: conv_transpose3d
/// 768 → 128 at 6³, k2 s2: 1.9 ms here against 7.0 ms by phases; 64 → 32 at 24³: 7.2 against 5 ms.
pub(crate) fn suits(g: &Conv3dGeometry) -> bool {
    let phases: usize = g.stride.iter().product();
    (0..3).all(|a| g.kernel[a] <= g.stride[a]) && (phases > 8 || g.out_channels >= 256)
}

/// One work item: batch element, dy plane, and for each kernel plane td the dx plane slices
/// (one per input channel) it writes, if that plane lies inside dx.
type Item<'a> = (usize, usize, Vec<Option<Vec<&'a mut [f32]>>>);

/// `dx = conv3d backward-data(dy, w)` for geometries that [`suits`] accepts.
pub(crate) fn backward_data(g: &Conv3dGeometry, dy: &[f32], w: &[f32], dx: &mut [f32]) -> Result<(), KernelsError> {
    dx.fill(0.0);
    let (ci_n, co_n) = (g.in_channels, g.out_channels);
    let [d, h, wd] = g.input;
    let o = g.output();
    let mut per_plane: Vec<Option<Vec<&mut [f32]>>> = (0..g.batch * d).map(|_| Some(Vec::new())).collect();
    for (nc, chan) in dx.chunks_mut(d * h * wd).enumerate() {
        for (p, plane) in chan.chunks_mut(h * wd).enumerate() {
            if let Some(v) = per_plane[(nc / ci_n) * d + p].as_mut() {
                v.push(plane);
            }
        }
    }
    let mut items: Vec<Item> = Vec::with_capacity(g.batch * o[0]);
    for b in 0..g.batch {
        for qd in 0..o[0] {
            let planes = (0..g.kernel[0])
                .map(|td| {
                    let id = (qd * g.stride[0] + td) as isize - g.padding[0] as isize;
                    if id >= 0 && (id as usize) < d {
                        per_plane[b * d + id as usize].take()
                    } else {
                        None
                    }
                })
                .collect();
            items.push((b, qd, planes));
        }
    }
    let dy_n = co_n * o.iter().product::<usize>();
    items.into_par_iter().try_for_each_init(Scratch::default, |scratch, (b, qd, mut planes)| {
        plane(g, &dy[b * dy_n..(b + 1) * dy_n], w, qd, &mut planes, scratch)
    })
}

/// Computes the contribution of dy plane `qd` (one batch element) to its dx planes.
fn plane(
    g: &Conv3dGeometry,
    dy: &[f32],
    w: &[f32],
    qd: usize,
    planes: &mut [Option<Vec<&mut [f32]>>],
    scratch: &mut Scratch,
) -> Result<(), KernelsError> {
    let (ci_n, co_n, kvol) = (g.in_channels, g.out_channels, g.kernel_volume());
    let n = ci_n * kvol;
    let [_, qh_n, qw_n] = g.output();
    let qvol = qh_n * qw_n * g.output()[0];
    let [_, kh, kw] = g.kernel;
    let [_, h, wd] = g.input;
    let rows = (TILE_FLOATS / (n * qw_n).max(1)).clamp(1, qh_n.max(1));
    scratch.tile.resize(n * rows * qw_n, 0.0);
    let mut qh0 = 0;
    while qh0 < qh_n {
        let qh1 = (qh0 + rows).min(qh_n);
        let nt = (qh1 - qh0) * qw_n;
        // cols[v·n + ci·kvol + t] = Σ_co w[co, ci, t] · dy[co, v]
        let lhs = MatRef { data: w, rs: 1, cs: n };
        let rhs = MatRef { data: &dy[(qd * qh_n + qh0) * qw_n..], rs: qvol, cs: 1 };
        if !gemm_f32(n, nt, co_n, &mut scratch.tile, 1, n, false, lhs, rhs, false) {
            return Err(internal("col2vol gemm operands out of bounds"));
        }
        for (td, dst) in planes.iter_mut().enumerate() {
            let Some(dst) = dst else { continue };
            for v in 0..nt {
                let (qh, qw) = (qh0 + v / qw_n, v % qw_n);
                for (ci, dplane) in dst.iter_mut().enumerate() {
                    let col = &scratch.tile[v * n + ci * kvol + td * kh * kw..][..kh * kw];
                    for th in 0..kh {
                        let ih = (qh * g.stride[1] + th) as isize - g.padding[1] as isize;
                        if ih < 0 || ih as usize >= h {
                            continue;
                        }
                        for tw in 0..kw {
                            let iw = (qw * g.stride[2] + tw) as isize - g.padding[2] as isize;
                            if iw >= 0 && (iw as usize) < wd {
                                dplane[ih as usize * wd + iw as usize] = col[th * kw + tw];
                            }
                        }
                    }
                }
            }
        }
        qh0 = qh1;
    }
    Ok(())
}
