//! f32 CPU passes of conv3d on plain slices: forward, backward-data (also the forward of
//! conv_transpose3d) and backward-weight, parallel over (batch, output plane) with rayon.

use rayon::prelude::*;

use super::corr::{Corr, CorrSpec, Scratch};
use super::{col2vol, pointwise};
use crate::{Conv3dGeometry, KernelsError};

/// A work item: batch element, residue r, `p / step` of its first plane, and per plane one slice
/// per channel.
type PlaneRun<'a> = (usize, usize, usize, Vec<Vec<&'a mut [f32]>>);

/// Splits `out` (`n × c` channels of `d` planes of `hw` elements) into work items of up to
/// `run` planes `p ≡ r (mod step)` each, consecutive in `p / step`, so that items can be filled in
/// parallel and each walks a run of consecutive planes. Items are `(b, p / step of the first
/// plane, planes)`, with `r` recoverable as the first plane's index mod `step`.
fn plane_runs(out: &mut [f32], [n, c, d, hw]: [usize; 4], step: usize, run: usize) -> Vec<PlaneRun<'_>> {
    let mut per_plane: Vec<Vec<&mut [f32]>> = (0..n * d).map(|_| Vec::with_capacity(c)).collect();
    if hw > 0 {
        for (nc, chan) in out.chunks_mut(d * hw).enumerate() {
            for (p, plane) in chan.chunks_mut(hw).enumerate() {
                per_plane[(nc / c) * d + p].push(plane);
            }
        }
    }
    let mut slots: Vec<Option<Vec<&mut [f32]>>> = per_plane.into_iter().map(Some).collect();
    let mut items = Vec::new();
    for b in 0..n {
        for r in 0..step.min(d) {
            let ps: Vec<usize> = (r..d).step_by(step).collect();
            for chunk in ps.chunks(run.max(1)) {
                let planes = chunk.iter().filter_map(|&p| slots[b * d + p].take()).collect();
                items.push((b, r, chunk[0] / step, planes));
            }
        }
    }
    items
}

/// Planes per work item: about four items per thread, so that rayon can balance them.
fn run_len(items_total: usize) -> usize {
    items_total.div_ceil(4 * rayon::current_num_threads()).max(1)
}

pub(crate) fn forward_spec(g: &Conv3dGeometry) -> CorrSpec {
    let o = g.output();
    CorrSpec {
        cin: g.in_channels,
        cout: g.out_channels,
        in_dims: g.input,
        k: g.kernel,
        stride: g.stride,
        pad: g.padding.map(|p| p as isize),
        q: o,
        out_hw: [o[1], o[2]],
        r: [0; 3],
        step: [1; 3],
    }
}

/// `y = conv3d(x, w)` for the geometry `g` (no bias). `x`, `w`, `y` are contiguous in PyTorch
/// layout; `y` is overwritten.
pub fn conv3d_forward_f32(g: &Conv3dGeometry, x: &[f32], w: &[f32], y: &mut [f32]) -> Result<(), KernelsError> {
    let _span = tracing::trace_span!("conv3d_forward_f32").entered();
    g.check_lens(
        "conv3d forward",
        [("input", x.len(), g.input_len()), ("weight", w.len(), g.weight_len()), ("output", y.len(), g.output_len())],
    )?;
    if pointwise::is_pointwise(g) {
        return pointwise::forward(g, x, w, y);
    }
    let corr = Corr::new(forward_spec(g), w);
    let o = g.output();
    let in_n = g.in_channels * g.input_volume();
    let dims = [g.batch, g.out_channels, o[0], o[1] * o[2]];
    let items = plane_runs(y, dims, 1, run_len(o[0]));
    items.into_par_iter().try_for_each_init(Scratch::default, |scratch, (b, _, od0, mut planes)| {
        corr.run(&x[b * in_n..(b + 1) * in_n], od0, &mut planes, scratch)
    })
}

/// One stride phase of the backward-data pass: a stride-1 correlation of dy with a sub-kernel.
struct Phase {
    spec: CorrSpec,
    wm: Vec<f32>,
}

/// Per axis and residue r: (first kernel offset, number of offsets T, pad, number of q).
fn axis_phase(r: usize, s: usize, p: usize, k: usize, len: usize) -> (usize, usize, isize, usize) {
    let off_first = (r + p) % s;
    let t = if off_first < k { (k - 1 - off_first) / s + 1 } else { 0 };
    let c = (r + p) / s;
    let q = if r < len { (len - 1 - r) / s + 1 } else { 0 };
    (off_first, t, t as isize - 1 - c as isize, q)
}

/// The phases of dx: dx at positions r + s·q only sees kernel offsets ≡ (r + p) mod s.
fn phases(g: &Conv3dGeometry, w: &[f32]) -> Vec<Option<Phase>> {
    let o = g.output();
    let [sd, sh, sw] = g.stride;
    let kvol = g.kernel_volume();
    let (ci_n, co_n) = (g.in_channels, g.out_channels);
    let mut out = Vec::with_capacity(sd * sh * sw);
    for rd in 0..sd {
        for rh in 0..sh {
            for rw in 0..sw {
                let r = [rd, rh, rw];
                let ax: Vec<_> =
                    (0..3).map(|a| axis_phase(r[a], g.stride[a], g.padding[a], g.kernel[a], g.input[a])).collect();
                if ax.iter().any(|&(_, t, _, q)| t == 0 || q == 0) {
                    out.push(None);
                    continue;
                }
                let t = [ax[0].1, ax[1].1, ax[2].1];
                let tvol: usize = t.iter().product();
                let mut wm = vec![0.0f32; ci_n * co_n * tvol];
                for ci in 0..ci_n {
                    for co in 0..co_n {
                        let src = &w[(co * ci_n + ci) * kvol..][..kvol];
                        let dst = &mut wm[(ci * co_n + co) * tvol..][..tvol];
                        let mut i = 0;
                        for td in 0..t[0] {
                            let kd = ax[0].0 + g.stride[0] * (t[0] - 1 - td);
                            for th in 0..t[1] {
                                let kh = ax[1].0 + g.stride[1] * (t[1] - 1 - th);
                                for tw in 0..t[2] {
                                    let kw = ax[2].0 + g.stride[2] * (t[2] - 1 - tw);
                                    dst[i] = src[(kd * g.kernel[1] + kh) * g.kernel[2] + kw];
                                    i += 1;
                                }
                            }
                        }
                    }
                }
                let spec = CorrSpec {
                    cin: co_n,
                    cout: ci_n,
                    in_dims: o,
                    k: t,
                    stride: [1; 3],
                    pad: [ax[0].2, ax[1].2, ax[2].2],
                    q: [ax[0].3, ax[1].3, ax[2].3],
                    out_hw: [g.input[1], g.input[2]],
                    r,
                    step: g.stride,
                };
                out.push(Some(Phase { spec, wm }));
            }
        }
    }
    out
}

/// `dx = ∂(Σ y·dy)/∂x` for `y = conv3d(x, w)`: the transposed convolution of `dy` with `w`.
/// `dy` has the output shape, `dx` (overwritten) the input shape. This is also the forward pass
/// of conv_transpose3d.
pub fn conv3d_backward_data_f32(g: &Conv3dGeometry, dy: &[f32], w: &[f32], dx: &mut [f32]) -> Result<(), KernelsError> {
    let _span = tracing::trace_span!("conv3d_backward_data_f32").entered();
    g.check_lens(
        "conv3d backward-data",
        [
            ("output gradient", dy.len(), g.output_len()),
            ("weight", w.len(), g.weight_len()),
            ("input gradient", dx.len(), g.input_len()),
        ],
    )?;
    if pointwise::is_pointwise(g) {
        return pointwise::backward_data(g, dy, w, dx);
    }
    if col2vol::suits(g) {
        return col2vol::backward_data(g, dy, w, dx);
    }
    let phases = phases(g, w);
    if phases.len() > 1 || phases.iter().any(Option::is_none) {
        // Positions no kernel tap reaches (kernel < stride) must be zero; and with several phases
        // a sequential first touch of the fresh pages beats faulting them in from the strided
        // phase writes (conv_transpose3d 64 → 32 at 24³, k2 s2: 5.5 against 8.5 ms).
        dx.fill(0.0);
    }
    let corrs: Vec<Option<Corr>> = phases.iter().map(|p| p.as_ref().map(|p| Corr::new(p.spec, &p.wm))).collect();
    let dy_n = g.out_channels * g.output_volume();
    let [sd, sh, sw] = g.stride;
    let i = g.input;
    let dims = [g.batch, g.in_channels, i[0], i[1] * i[2]];
    let items = plane_runs(dx, dims, sd, run_len(i[0].div_ceil(sd)));
    items.into_par_iter().try_for_each_init(Scratch::default, |scratch, (b, rd, qd0, mut planes)| {
        let dyb = &dy[b * dy_n..(b + 1) * dy_n];
        for corr in corrs[rd * sh * sw..(rd + 1) * sh * sw].iter().flatten() {
            corr.run(dyb, qd0, &mut planes, scratch)?;
        }
        Ok(())
    })
}
