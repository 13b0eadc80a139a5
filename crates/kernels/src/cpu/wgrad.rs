//! The weight gradient of conv3d, `dw[co, ci, t] = Σ_{b, v} dy[b, co, v] · x[b, ci, v·s + t − p]`:
//! per run of output planes, accumulated per thread and summed at the end.
//!
//! Two paths, chosen like the forward pass ([`implicit::suits`]):
//! - gather: `dy_tile · colsᵀ` with the columns of a tile of output rows gathered as in the
//!   forward pass (tiles of at least 256 voxels, spanning planes when planes are small);
//! - implicit (stride 1): per tap, `dy_tile (Co × V) · view_tapᵀ (V × Ci)` where `dy_tile` is the
//!   tile of `dy` transposed to channels-last on the padded row pitch (zeros on the padding
//!   columns) and `view_tap` the tap's strided view of the ring of padded input planes, as in the
//!   forward implicit path. Both operands are then read as GEMM wants them, without packing.

use std::ops::Range;

use rayon::prelude::*;

use super::conv::forward_spec;
use super::corr::{gather, internal, CorrSpec, Scratch, LANES};
use super::gemm::{gemm_f32, MatRef};
use super::implicit::{self, padded_dims, SLACK, TILE_VOXELS};
use super::pointwise;
use crate::{Conv3dGeometry, KernelsError};

/// `dw = ∂(Σ y·dy)/∂w` for `y = conv3d(x, w)`; `dw` (weight shape) is overwritten.
pub fn conv3d_backward_weight_f32(
    g: &Conv3dGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
) -> Result<(), KernelsError> {
    let _span = tracing::trace_span!("conv3d_backward_weight_f32").entered();
    g.check_lens(
        "conv3d backward-weight",
        [
            ("input", x.len(), g.input_len()),
            ("output gradient", dy.len(), g.output_len()),
            ("weight gradient", dw.len(), g.weight_len()),
        ],
    )?;
    if pointwise::is_pointwise(g) {
        return pointwise::backward_weight(g, x, dy, dw);
    }
    let spec = forward_spec(g);
    let implicit = implicit::suits(&spec);
    let od_n = g.output()[0];
    let in_n = g.in_channels * g.input_volume();
    let dy_n = g.out_channels * g.output_volume();
    // Runs of consecutive planes (so that the implicit path pads each input plane about once),
    // about four per thread but at least 256 voxels, dealt round-robin to one accumulating task per thread (so at most
    // one weight-sized buffer per thread). The assignment is static and the partial sums are added in task order, so
    // the result is bit-for-bit reproducible for a given thread count (training resumes exactly).
    let threads = rayon::current_num_threads();
    let plane = g.output()[1] * g.output()[2];
    let run = od_n.div_ceil(4 * threads).max(MIN_WGRAD_VOXELS.div_ceil(plane.max(1))).max(1);
    let runs: Vec<(usize, usize, usize)> =
        (0..g.batch).flat_map(|b| (0..od_n).step_by(run).map(move |o| (b, o, (o + run).min(od_n)))).collect();
    // Fewer runs than threads (large kernels on small outputs): parallel inside the GEMM instead.
    let few = runs.len() < threads;
    let tasks = threads.min(runs.len());
    let partial: Vec<Vec<f32>> = (0..tasks)
        .into_par_iter()
        .map(|t| {
            let mut acc = vec![0.0f32; dw.len()];
            let mut scratch = Scratch::default();
            for &(b, od0, od1) in runs.iter().skip(t).step_by(tasks.max(1)) {
                let xb = &x[b * in_n..(b + 1) * in_n];
                let dyb = &dy[b * dy_n..(b + 1) * dy_n];
                if implicit {
                    implicit_wgrad_run(&spec, xb, dyb, od0..od1, &mut acc, &mut scratch)?;
                } else {
                    gather_wgrad_run(&spec, xb, dyb, od0..od1, &mut acc, &mut scratch, few)?;
                }
            }
            Ok(acc)
        })
        .collect::<Result<_, KernelsError>>()?;
    let mut sum = vec![0.0f32; dw.len()];
    for p in &partial {
        for (d, v) in sum.iter_mut().zip(p) {
            *d += v;
        }
    }
    if implicit {
        // [tap][ci][co] → [co][ci][tap]
        let (ci_n, co_n, kvol) = (g.in_channels, g.out_channels, g.kernel_volume());
        for t in 0..kvol {
            for ci in 0..ci_n {
                for co in 0..co_n {
                    dw[(co * ci_n + ci) * kvol + t] = sum[(t * ci_n + ci) * co_n + co];
                }
            }
        }
    } else {
        dw.copy_from_slice(&sum);
    }
    Ok(())
}

/// Output voxels per gather tile at least: the reduction length of each GEMM, so that the
/// weight-sized accumulator is read and written rarely.
const MIN_WGRAD_VOXELS: usize = 256;

/// Gather path: adds the planes `qds` of one batch element to `dw` (`[co][ci·kvol]`):
/// `dw += dy_tile · colsᵀ` for tiles of whole output rows, which may span several planes.
fn gather_wgrad_run(
    s: &CorrSpec,
    input: &[f32],
    dy: &[f32],
    qds: Range<usize>,
    dw: &mut [f32],
    scratch: &mut Scratch,
    parallel: bool,
) -> Result<(), KernelsError> {
    let kdim = s.kdim();
    let qvol = s.q.iter().product::<usize>();
    let [_, qh_n, qw_n] = s.q;
    if input.len() != s.cin * s.in_vol() || dy.len() != s.cout * qvol || dw.len() != s.cout * kdim {
        return Err(internal("operand sizes do not match the weight gradient"));
    }
    let rows = s.rows_per_tile().max(MIN_WGRAD_VOXELS.div_ceil(qw_n.max(1)));
    let ld = (rows * qw_n).next_multiple_of(LANES);
    scratch.col.resize(kdim * ld, 0.0);
    // Global output rows qd·Qh + qh of the run, in tiles of `rows` rows.
    let (r_start, r_end) = (qds.start * qh_n, qds.end * qh_n);
    let mut r0 = r_start;
    while r0 < r_end {
        let r1 = (r0 + rows).min(r_end);
        let mut r = r0;
        while r < r1 {
            // The part of this tile in plane r / Qh.
            let (qd, qh0) = (r / qh_n, r % qh_n);
            let qh1 = (qh0 + r1 - r).min(qh_n);
            gather(s, input, qd, qh0, qh1, ld, &mut scratch.col[(r - r0) * qw_n..]);
            r += qh1 - qh0;
        }
        let nt = (r1 - r0) * qw_n;
        let lhs = MatRef { data: &dy[r0 * qw_n..], rs: qvol, cs: 1 };
        let rhs = MatRef { data: &scratch.col, rs: 1, cs: ld };
        if !gemm_f32(s.cout, kdim, nt, dw, kdim, 1, true, lhs, rhs, parallel) {
            return Err(internal("gemm operands out of bounds"));
        }
        r0 = r1;
    }
    Ok(())
}

/// Implicit path: adds the planes `qds` of one batch element to `acc` (`[tap][ci][co]`).
fn implicit_wgrad_run(
    s: &CorrSpec,
    input: &[f32],
    dy: &[f32],
    qds: Range<usize>,
    acc: &mut [f32],
    scratch: &mut Scratch,
) -> Result<(), KernelsError> {
    let [_, hp, wp] = padded_dims(s);
    let [kd, kh, kw] = s.k;
    let [_, qh_n, qw_n] = s.q;
    let plane = hp * wp;
    let slot_len = s.cin * plane + SLACK;
    let qvol: usize = s.q.iter().product();
    let (ci_n, co_n) = (s.cin, s.cout);
    if input.len() != ci_n * s.in_vol() || dy.len() != co_n * qvol || acc.len() != kd * kh * kw * ci_n * co_n {
        return Err(internal("implicit weight-gradient operands do not match"));
    }
    let rows = (TILE_VOXELS / wp).clamp(1, qh_n.max(1));
    let max_len = ((rows - 1) * wp + qw_n).next_multiple_of(LANES);
    scratch.col.resize(max_len * co_n, 0.0);
    implicit::reset_ring(s, scratch, slot_len);
    for qd in qds {
        implicit::load_ring(s, input, qd, scratch, slot_len);
        let mut qh0 = 0;
        while qh0 < qh_n {
            let qh1 = (qh0 + rows).min(qh_n);
            let len = (qh1 - qh0 - 1) * wp + qw_n;
            // dy tile, channels-last on the padded pitch: dyt[v·Co + co].
            let dyt = &mut scratch.col[..len * co_n];
            dyt.fill(0.0);
            for co in 0..co_n {
                let src = &dy[co * qvol + (qd * qh_n + qh0) * qw_n..][..(qh1 - qh0) * qw_n];
                for (r, row) in src.chunks_exact(qw_n).enumerate() {
                    for (qw, v) in row.iter().enumerate() {
                        dyt[((r * wp) + qw) * co_n + co] = *v;
                    }
                }
            }
            for (tap, pd, th, tw) in implicit::live_taps(s, qd) {
                let ring = &scratch.ring[(pd % kd) * slot_len..][..slot_len];
                let off = (qh0 + th) * wp + tw;
                let lhs = MatRef { data: &scratch.col[..len * co_n], rs: 1, cs: co_n };
                let rhs = MatRef { data: &ring[off..], rs: 1, cs: plane };
                let dst = &mut acc[tap * ci_n * co_n..(tap + 1) * ci_n * co_n];
                if !gemm_f32(co_n, ci_n, len, dst, 1, co_n, true, lhs, rhs, false) {
                    return Err(internal("implicit weight-gradient gemm out of bounds"));
                }
            }
            qh0 = qh1;
        }
    }
    Ok(())
}
