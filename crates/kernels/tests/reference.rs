//! The fast conv3d / conv_transpose3d paths (forward and both gradients) against naive direct
//! loops on odd shapes: kernels 1/2/3 (and 16), strides 1/2/3, padding 0/1, batch 2, 1..8 channels.

mod common;

use candle_core::Var;
use common::{assert_close, flat, naive_conv3d, naive_conv3d_grads, naive_conv_transpose3d, Rng};
use magseg_kernels::{conv3d, conv_transpose3d, Conv3dConfig};

const TOL: f32 = 2e-5;

/// conv3d with bias: forward and the gradients of sum(y · r) against the naive loops.
fn check_conv3d(seed: u64, xd: [usize; 5], wd: [usize; 5], stride: [usize; 3], pad: [usize; 3]) {
    let what = format!("conv3d x{xd:?} w{wd:?} s{stride:?} p{pad:?}");
    let mut rng = Rng(seed);
    let x = Var::from_tensor(&rng.tensor(&xd)).unwrap();
    let w = Var::from_tensor(&rng.tensor(&wd)).unwrap();
    let b = Var::from_tensor(&rng.tensor(&[wd[0]])).unwrap();
    let cfg = Conv3dConfig { stride, padding: pad };
    let y = conv3d(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), cfg).unwrap();
    let (xv, wv, bv) = (flat(&x), flat(&w), flat(&b));
    let (mut want, yd) = naive_conv3d(&xv, xd, &wv, wd, stride, pad);
    assert_eq!(y.dims(), yd, "{what}: output shape");
    let vol: usize = yd[2..].iter().product();
    for (i, v) in want.iter_mut().enumerate() {
        *v += bv[(i / vol) % yd[1]];
    }
    assert_close(&format!("{what} forward"), &flat(&y), &want, TOL);

    let r = rng.tensor(&yd);
    let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let rv = flat(&r);
    let (dx, dw) = naive_conv3d_grads(&xv, xd, &wv, wd, stride, pad, &rv);
    let mut db = vec![0.0f32; wd[0]];
    for (i, v) in rv.iter().enumerate() {
        db[(i / vol) % yd[1]] += v;
    }
    assert_close(&format!("{what} dx"), &flat(grads.get(&x).unwrap()), &dx, TOL);
    assert_close(&format!("{what} dw"), &flat(grads.get(&w).unwrap()), &dw, TOL);
    assert_close(&format!("{what} db"), &flat(grads.get(&b).unwrap()), &db, TOL);
}

/// conv_transpose3d with bias: forward and gradients against the naive loops (its input gradient
/// is a conv3d of the output gradient, its weight gradient conv3d's weight gradient with roles
/// swapped).
fn check_conv_transpose3d(seed: u64, xd: [usize; 5], wd: [usize; 5], stride: [usize; 3]) {
    let what = format!("conv_transpose3d x{xd:?} w{wd:?} s{stride:?}");
    let mut rng = Rng(seed);
    let x = Var::from_tensor(&rng.tensor(&xd)).unwrap();
    let w = Var::from_tensor(&rng.tensor(&wd)).unwrap();
    let b = Var::from_tensor(&rng.tensor(&[wd[1]])).unwrap();
    let y = conv_transpose3d(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), stride).unwrap();
    let (xv, wv, bv) = (flat(&x), flat(&w), flat(&b));
    let (mut want, yd) = naive_conv_transpose3d(&xv, xd, &wv, wd, stride);
    assert_eq!(y.dims(), yd, "{what}: output shape");
    let vol: usize = yd[2..].iter().product();
    for (i, v) in want.iter_mut().enumerate() {
        *v += bv[(i / vol) % yd[1]];
    }
    assert_close(&format!("{what} forward"), &flat(&y), &want, TOL);

    let r = rng.tensor(&yd);
    let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let rv = flat(&r);
    let (dx, _) = naive_conv3d(&rv, yd, &wv, wd, stride, [0; 3]);
    let (_, dw) = naive_conv3d_grads(&rv, yd, &wv, wd, stride, [0; 3], &xv);
    assert_close(&format!("{what} dx"), &flat(grads.get(&x).unwrap()), &dx, TOL);
    assert_close(&format!("{what} dw"), &flat(grads.get(&w).unwrap()), &dw, TOL);
}

#[test]
fn conv3d_matches_naive_on_odd_shapes() {
    let mut case = 0u64;
    for k in [1, 2, 3] {
        for s in [1, 2] {
            for p in [0, 1] {
                let ci = 1 + (case as usize * 3) % 8;
                let co = 1 + (case as usize * 5 + 2) % 8;
                check_conv3d(case, [2, ci, 5, 6, 7], [co, ci, k, k, k], [s; 3], [p; 3]);
                case += 1;
            }
        }
    }
}

#[test]
fn conv3d_mixed_axes_and_edge_cases() {
    check_conv3d(100, [2, 3, 7, 5, 6], [4, 3, 3, 1, 2], [2, 1, 2], [1, 0, 1]);
    check_conv3d(101, [2, 2, 4, 9, 3], [3, 2, 2, 3, 3], [1, 3, 2], [0, 1, 1]);
    // The kernel covers the whole padded input: a 1×1×1 output.
    check_conv3d(102, [2, 2, 3, 3, 3], [5, 2, 5, 5, 5], [1; 3], [1; 3]);
    // Single voxel input.
    check_conv3d(103, [2, 1, 1, 1, 1], [2, 1, 1, 1, 1], [1; 3], [0; 3]);
    check_conv3d(104, [2, 1, 1, 1, 1], [2, 1, 3, 3, 3], [1; 3], [1; 3]);
    // Kernel ≤ stride with many stride phases (the col2vol backward-data path), with padding.
    check_conv3d(105, [2, 3, 7, 8, 6], [4, 3, 2, 3, 2], [3, 3, 2], [1, 0, 1]);
    check_conv3d(106, [2, 2, 8, 8, 8], [3, 2, 4, 4, 4], [4; 3], [0; 3]);
}

#[test]
fn conv3d_several_tiles_per_plane() {
    // 8 channels, k3, 40 columns: several tiles of rows per output plane, the last one partial.
    check_conv3d(200, [2, 8, 3, 20, 40], [5, 8, 3, 3, 3], [1; 3], [1; 3]);
}

#[test]
fn conv3d_many_channels() {
    // ≥ 8 input channels with stride 1 take the gather-free (implicit GEMM) path, forward and
    // (with ≥ 8 output channels) backward-data.
    check_conv3d(210, [2, 9, 5, 6, 7], [12, 9, 3, 3, 3], [1; 3], [1; 3]);
    check_conv3d(211, [2, 8, 4, 7, 5], [8, 8, 2, 3, 2], [1; 3], [0, 1, 1]);
    check_conv3d(212, [2, 10, 3, 4, 3], [9, 10, 1, 1, 1], [1; 3], [0; 3]);
    check_conv3d(213, [2, 16, 6, 5, 7], [11, 16, 3, 3, 3], [2; 3], [1; 3]);
    check_conv3d(214, [2, 8, 5, 5, 5], [8, 8, 3, 3, 3], [1; 3], [2; 3]);
    // Padding ≥ kernel: the backward-data correlation crops (negative padding).
    check_conv3d(217, [2, 8, 3, 4, 3], [8, 8, 2, 2, 2], [1; 3], [2; 3]);
    check_conv3d(218, [2, 3, 3, 4, 3], [2, 3, 1, 2, 1], [2, 1, 1], [1, 2, 1]);
    check_conv_transpose3d(215, [2, 9, 3, 4, 2], [9, 8, 3, 3, 3], [1; 3]);
    check_conv_transpose3d(216, [2, 12, 3, 2, 4], [12, 8, 2, 2, 2], [2; 3]);
    // Many input channels with kernel = stride: one large GEMM and a scatter (col2vol).
    check_conv_transpose3d(219, [1, 256, 2, 3, 2], [256, 3, 2, 2, 2], [2; 3]);
}

#[test]
fn conv3d_patch_embedding_kernel_16() {
    // UNETR's patch embedding: kernel 16, stride 16.
    check_conv3d(300, [1, 2, 32, 16, 48], [4, 2, 16, 16, 16], [16; 3], [0; 3]);
}

#[test]
fn conv_transpose3d_matches_naive() {
    let cases = [(2, 2), (1, 1), (3, 1), (3, 2), (1, 2), (2, 3), (4, 2), (3, 3), (4, 4)];
    for (case, (k, s)) in (400u64..).zip(cases) {
        let ci = 1 + (case as usize * 3) % 8;
        let co = 1 + (case as usize * 5 + 2) % 8;
        check_conv_transpose3d(case, [2, ci, 3, 4, 5], [ci, co, k, k, k], [s; 3]);
    }
    check_conv_transpose3d(500, [2, 3, 3, 2, 4], [3, 2, 2, 3, 1], [2, 1, 3]);
}
