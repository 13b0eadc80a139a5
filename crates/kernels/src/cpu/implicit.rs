//! Implicit GEMM for stride-1 correlations: no column gather at all.
//!
//! Each thread keeps a ring of kD zero-padded input planes (all channels, (Hp, Wp) = Q + k − 1).
//! The output plane is computed on the padded row pitch Wp: for output flat index
//! `v = qh·Wp + qw` and tap (td, th, tw), the input element is at `v + th·Wp + tw` of padded plane
//! qd + td, so every tap is a plain strided view of the ring (rows: voxels, stride 1; columns:
//! channels, stride one padded plane) and a tile is `Σ_taps view_tap · W_tapᵀ`, one GEMM per tap
//! with K = input channels. The few outputs on the padding columns (qw ≥ Qw) are computed and
//! dropped; taps that fall on an all-zero padding plane are skipped. A thread walks a run of
//! consecutive planes, so each input plane is padded about once.

use super::corr::{internal, write_tile, CorrSpec, Scratch, LANES};
use super::gemm::{gemm_f32, MatRef};
use crate::KernelsError;

/// Output voxels per tile (rounded to whole padded rows): the tile, one tap's view of the ring
/// and the weights stay in L2.
pub(crate) const TILE_VOXELS: usize = 768;
/// Floats after the last channel of a ring slot, so that tiles rounded up to whole SIMD vectors
/// never read past the slot.
pub(crate) const SLACK: usize = 2 * LANES;

/// Whether the implicit path suits `s`: stride 1, no cropping, at least 8 input channels per
/// GEMM, and at most a quarter of the computed outputs wasted on the padding columns.
///
/// Measured on a 2-core Zen 4 (forward, k3): 10–20 % faster than the gather path from 8 input
/// channels up (16 → 16 at 96³: 97 ms against 111 ms; 64 → 64 at 24³: 18 against 21 ms), but
/// 1.3–1.8× slower below (1 → 16 at 96³: 45 against 31 ms).
pub(crate) fn suits(s: &CorrSpec) -> bool {
    if s.stride != [1; 3] || s.pad.iter().any(|&p| p < 0) || s.cin < 8 {
        return false;
    }
    let [_, _, wp] = padded_dims(s);
    let [_, qh, qw] = s.q;
    let computed = (qh.saturating_sub(1)) * wp + qw;
    computed > 0 && 4 * qh * qw >= 3 * computed
}

/// (Dp, Hp, Wp) = Q + k − 1 per axis.
pub(crate) fn padded_dims(s: &CorrSpec) -> [usize; 3] {
    [0, 1, 2].map(|a| s.q[a] + s.k[a] - 1)
}

/// The weight matrix `wm[co][ci·kvol + tap]` regrouped per tap as `[tap][co][ci]`.
pub(crate) fn tap_weights(s: &CorrSpec, wm: &[f32]) -> Vec<f32> {
    let kvol: usize = s.k.iter().product();
    let mut taps = vec![0.0f32; wm.len()];
    for co in 0..s.cout {
        for ci in 0..s.cin {
            for t in 0..kvol {
                taps[(t * s.cout + co) * s.cin + ci] = wm[(co * s.cin + ci) * kvol + t];
            }
        }
    }
    taps
}

/// Input plane of padded plane `pd`, if it lies inside the input.
pub(crate) fn input_plane(s: &CorrSpec, pd: usize) -> Option<usize> {
    let id = pd as isize - s.pad[0];
    (id >= 0 && (id as usize) < s.in_dims[0]).then_some(id as usize)
}

/// Writes padded plane `pd` (all channels) into `slot`.
pub(crate) fn pad_plane(s: &CorrSpec, input: &[f32], pd: usize, slot: &mut [f32]) {
    let [_, hp, wp] = padded_dims(s);
    let [dd, hh, ww] = s.in_dims;
    slot.fill(0.0);
    let Some(id) = input_plane(s, pd) else {
        return;
    };
    let lo = s.pad[2] as usize;
    let n = if lo < wp { (wp - lo).min(ww) } else { 0 };
    for ci in 0..s.cin {
        let src = &input[(ci * dd + id) * hh * ww..][..hh * ww];
        let dst = &mut slot[ci * hp * wp..][..hp * wp];
        for (ph, drow) in dst.chunks_exact_mut(wp).enumerate() {
            let ih = ph as isize - s.pad[1];
            if n > 0 && ih >= 0 && (ih as usize) < hh {
                let srow = &src[ih as usize * ww..][..ww];
                drow[lo..lo + n].copy_from_slice(&srow[..n]);
            }
        }
    }
}

/// Readies the ring of `scratch`: kD slots of `slot_len` floats, none holding a plane yet.
pub(crate) fn reset_ring(s: &CorrSpec, scratch: &mut Scratch, slot_len: usize) {
    let kd = s.k[0];
    scratch.ring.resize(kd * slot_len, 0.0);
    scratch.ring_tags.clear();
    scratch.ring_tags.resize(kd, usize::MAX);
}

/// Makes the ring hold the padded planes `qd..qd + kD` that output plane `qd` reads (plane `pd` in
/// slot `pd % kD`), padding only those it does not hold yet.
pub(crate) fn load_ring(s: &CorrSpec, input: &[f32], qd: usize, scratch: &mut Scratch, slot_len: usize) {
    let kd = s.k[0];
    for pd in qd..qd + kd {
        let slot = pd % kd;
        if scratch.ring_tags[slot] != pd {
            pad_plane(s, input, pd, &mut scratch.ring[slot * slot_len..][..slot_len]);
            scratch.ring_tags[slot] = pd;
        }
    }
}

/// The taps of output plane `qd` whose padded plane lies inside the input (the others only meet
/// zeros): `(tap, pd, th, tw)` with `tap = (td·kH + th)·kW + tw` and padded plane `pd = qd + td`.
pub(crate) fn live_taps(s: &CorrSpec, qd: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> + '_ {
    let [kd, kh, kw] = s.k;
    (0..kd).filter(move |td| input_plane(s, qd + td).is_some()).flat_map(move |td| {
        (0..kh).flat_map(move |th| (0..kw).map(move |tw| ((td * kh + th) * kw + tw, qd + td, th, tw)))
    })
}

/// Computes the output planes `qd0, qd0 + 1, …` (`planes[i]` holds the output channels' planes
/// of `qd0 + i`) from one batch element's unpadded input.
pub(crate) fn implicit_run(
    s: &CorrSpec,
    input: &[f32],
    taps: &[f32],
    qd0: usize,
    planes: &mut [Vec<&mut [f32]>],
    scratch: &mut Scratch,
) -> Result<(), KernelsError> {
    let [_, hp, wp] = padded_dims(s);
    let [kd, kh, kw] = s.k;
    let [_, qh_n, qw_n] = s.q;
    let plane = hp * wp;
    let slot_len = s.cin * plane + SLACK;
    if input.len() != s.cin * s.in_dims.iter().product::<usize>() || taps.len() != s.cout * s.cin * kd * kh * kw {
        return Err(internal("implicit operands do not match the correlation"));
    }
    let rows = (TILE_VOXELS / wp).clamp(1, qh_n.max(1));
    let ld = ((rows - 1) * wp + qw_n).next_multiple_of(LANES);
    scratch.tile.resize(s.cout * ld, 0.0);
    reset_ring(s, scratch, slot_len);
    for (i, out) in planes.iter_mut().enumerate() {
        let qd = qd0 + i;
        load_ring(s, input, qd, scratch, slot_len);
        let mut qh0 = 0;
        while qh0 < qh_n {
            let qh1 = (qh0 + rows).min(qh_n);
            let m = ((qh1 - qh0 - 1) * wp + qw_n).next_multiple_of(LANES);
            let mut first = true;
            for (tap, pd, th, tw) in live_taps(s, qd) {
                let ring = &scratch.ring[(pd % kd) * slot_len..][..slot_len];
                let off = (qh0 + th) * wp + tw;
                let lhs = MatRef { data: &ring[off..], rs: 1, cs: plane };
                let w = &taps[tap * s.cout * s.cin..(tap + 1) * s.cout * s.cin];
                let rhs = MatRef { data: w, rs: 1, cs: s.cin };
                let tile = &mut scratch.tile;
                if !gemm_f32(m, s.cout, s.cin, tile, 1, ld, !first, lhs, rhs, false) {
                    return Err(internal("implicit gemm operands out of bounds"));
                }
                first = false;
            }
            if first {
                scratch.tile.fill(0.0);
            }
            write_tile(s, &scratch.tile, ld, wp, qh0, qh1, out)?;
            qh0 = qh1;
        }
    }
    Ok(())
}
