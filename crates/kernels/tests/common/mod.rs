//! Test helpers: a deterministic random generator and naive direct-loop reference convolutions.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};

/// A small deterministic generator (SplitMix64) for test data in [-1, 1).
pub struct Rng(pub u64);

impl Rng {
    /// Next value in [-1, 1).
    pub fn next_f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// `n` values in [-1, 1).
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next_f32()).collect()
    }

    /// A random CPU tensor of the given shape.
    pub fn tensor(&mut self, dims: &[usize]) -> Tensor {
        let n = dims.iter().product();
        Tensor::from_vec(self.vec(n), dims, &Device::Cpu).unwrap()
    }
}

/// Flat index into a row-major 5-D array.
fn idx(d: [usize; 5], i: [usize; 5]) -> usize {
    (((i[0] * d[1] + i[1]) * d[2] + i[2]) * d[3] + i[3]) * d[4] + i[4]
}

/// Calls `f(n, co, ci, o, k, i)` for every term of conv3d (skipping padded taps).
fn for_each_term(
    xd: [usize; 5],
    wd: [usize; 5],
    stride: [usize; 3],
    pad: [usize; 3],
    mut f: impl FnMut([usize; 5], [usize; 5], [usize; 5]),
) {
    let yd = conv_out_dims(xd, wd, stride, pad);
    let o = &yd[2..];
    for n in 0..xd[0] {
        for co in 0..wd[0] {
            for od in 0..o[0] {
                for oh in 0..o[1] {
                    for ow in 0..o[2] {
                        for ci in 0..xd[1] {
                            for kd in 0..wd[2] {
                                for kh in 0..wd[3] {
                                    for kw in 0..wd[4] {
                                        let i = [
                                            (od * stride[0] + kd) as isize - pad[0] as isize,
                                            (oh * stride[1] + kh) as isize - pad[1] as isize,
                                            (ow * stride[2] + kw) as isize - pad[2] as isize,
                                        ];
                                        if (0..3).any(|a| i[a] < 0 || i[a] >= xd[a + 2] as isize) {
                                            continue;
                                        }
                                        let xi = [n, ci, i[0] as usize, i[1] as usize, i[2] as usize];
                                        f([n, co, od, oh, ow], [co, ci, kd, kh, kw], xi);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Output shape of conv3d.
pub fn conv_out_dims(xd: [usize; 5], wd: [usize; 5], stride: [usize; 3], pad: [usize; 3]) -> [usize; 5] {
    let o: Vec<usize> = (0..3).map(|a| (xd[a + 2] + 2 * pad[a] - wd[a + 2]) / stride[a] + 1).collect();
    [xd[0], wd[0], o[0], o[1], o[2]]
}

/// Direct-loop conv3d (PyTorch semantics) in f64; returns the output and its shape.
pub fn naive_conv3d(
    x: &[f32],
    xd: [usize; 5],
    w: &[f32],
    wd: [usize; 5],
    stride: [usize; 3],
    pad: [usize; 3],
) -> (Vec<f32>, [usize; 5]) {
    let yd = conv_out_dims(xd, wd, stride, pad);
    let mut acc = vec![0.0f64; yd.iter().product()];
    for_each_term(xd, wd, stride, pad, |yi, wi, xi| {
        acc[idx(yd, yi)] += x[idx(xd, xi)] as f64 * w[idx(wd, wi)] as f64;
    });
    (acc.into_iter().map(|v| v as f32).collect(), yd)
}

/// Direct-loop gradients of `sum(conv3d(x, w) * dy)` with respect to x and w.
pub fn naive_conv3d_grads(
    x: &[f32],
    xd: [usize; 5],
    w: &[f32],
    wd: [usize; 5],
    stride: [usize; 3],
    pad: [usize; 3],
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let mut dx = vec![0.0f64; x.len()];
    let mut dw = vec![0.0f64; w.len()];
    let yd = conv_out_dims(xd, wd, stride, pad);
    for_each_term(xd, wd, stride, pad, |yi, wi, xi| {
        let g = dy[idx(yd, yi)] as f64;
        dx[idx(xd, xi)] += g * w[idx(wd, wi)] as f64;
        dw[idx(wd, wi)] += g * x[idx(xd, xi)] as f64;
    });
    let f = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect();
    (f(dx), f(dw))
}

/// Direct-loop conv_transpose3d (padding 0): `y[n, co, i·s + k] += x[n, ci, i] · w[ci, co, k]`.
pub fn naive_conv_transpose3d(
    x: &[f32],
    xd: [usize; 5],
    w: &[f32],
    wd: [usize; 5],
    stride: [usize; 3],
) -> (Vec<f32>, [usize; 5]) {
    let o: Vec<usize> = (0..3).map(|a| (xd[a + 2] - 1) * stride[a] + wd[a + 2]).collect();
    let yd = [xd[0], wd[1], o[0], o[1], o[2]];
    let mut y = vec![0.0f64; yd.iter().product()];
    for n in 0..xd[0] {
        for ci in 0..xd[1] {
            for i0 in 0..xd[2] {
                for i1 in 0..xd[3] {
                    for i2 in 0..xd[4] {
                        let xv = x[idx(xd, [n, ci, i0, i1, i2])] as f64;
                        for co in 0..wd[1] {
                            for k0 in 0..wd[2] {
                                for k1 in 0..wd[3] {
                                    for k2 in 0..wd[4] {
                                        let wv = w[idx(wd, [ci, co, k0, k1, k2])] as f64;
                                        let yi = [n, co, i0 * stride[0] + k0, i1 * stride[1] + k1, i2 * stride[2] + k2];
                                        y[idx(yd, yi)] += xv * wv;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    (y.into_iter().map(|v| v as f32).collect(), yd)
}

/// Asserts `a ≈ b` elementwise: |a − b| ≤ tol · (1 + max |b|).
pub fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    let scale = 1.0 + b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * scale, "{what}: element {i}: {x} vs reference {y} (scale {scale})");
    }
}

/// A tensor's values as a flat vector.
pub fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Asserts that `a` and `b` have one shape and dtype and `|a − b| ≤ tol · max(1, max |b|)` (compared
/// in f64).
pub fn close(what: &str, a: &Tensor, b: &Tensor, tol: f64) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes differ");
    assert_eq!(a.dtype(), b.dtype(), "{what}: dtypes differ");
    let a: Vec<f64> = a.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1().unwrap();
    let b: Vec<f64> = b.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1().unwrap();
    let scale = b.iter().fold(1f64, |m, v| m.max(v.abs()));
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f64, f64::max);
    assert!(worst <= tol * scale, "{what}: max |a − b| = {worst:e} (scale {scale})");
}
