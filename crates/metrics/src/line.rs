//! One-dimensional building blocks of the separable EDT: the binary scan along i, the
//! Felzenszwalb–Huttenlocher lower envelope of parabolas, and a cache-blocked transpose.

/// Scratch space for [`envelope`], reused across lines.
#[derive(Default)]
pub(crate) struct Envelope {
    /// Apex position (voxel index) of each parabola of the envelope.
    v: Vec<f64>,
    /// Apex height in squared voxel units plus squared apex position, `g/s² + v²`.
    h: Vec<f64>,
    /// Left boundary (voxel units) of the interval where each parabola is the lowest.
    z: Vec<f64>,
    /// Squared voxel size (mm²) of the line being processed.
    s2: f64,
}

impl Envelope {
    fn reserve(&mut self, n: usize) {
        if self.v.len() < n + 1 {
            for a in [&mut self.v, &mut self.h, &mut self.z] {
                a.resize(n + 1, 0.0);
            }
        }
    }
}

/// Squared distance (mm²) along a line of binary features with voxel size `s`: a forward and a
/// backward scan. Writes `f32::INFINITY` everywhere and returns false when the line has no feature.
pub(crate) fn binary_line(f: &[bool], s: f64, out: &mut [f32]) -> bool {
    if !f.iter().fold(false, |a, b| a | b) {
        out.fill(f32::INFINITY);
        return false;
    }
    // Forward: voxels since the last feature on the left (exact small integers in f32).
    let mut d = f32::INFINITY;
    for (o, &b) in out.iter_mut().zip(f) {
        d = if b { 0.0 } else { d + 1.0 };
        *o = d;
    }
    // Backward: take the nearer side and convert to squared mm.
    let mut d = f32::INFINITY;
    for (o, &b) in out.iter_mut().zip(f).rev() {
        d = if b { 0.0 } else { d + 1.0 };
        let m = f64::from(o.min(d)) * s;
        *o = (m * m) as f32;
    }
    true
}

/// Lower envelope of the parabolas `f[q] + ((p - q) s)²` (Felzenszwalb & Huttenlocher 2012), i.e.
/// `out[p] = min_q f[q] + ((p - q) s)²`. Entries equal to infinity are no parabola; returns false (and
/// writes infinity) when the line has none.
pub(crate) fn envelope(f: &[f32], s: f64, out: &mut [f32], e: &mut Envelope) -> bool {
    if !e.build(f, s) {
        out.fill(f32::INFINITY);
        return false;
    }
    let mut k = 0usize;
    for (p, o) in out.iter_mut().enumerate() {
        *o = e.eval(p, &mut k) as f32;
    }
    true
}

impl Envelope {
    /// Build the lower envelope of the parabolas `f[q] + ((p - q) s)²`; false when `f` has no finite
    /// entry. Works in voxel units (heights divided by `s²`) and in f64, so the intersections
    /// `((g_q + q²) − (g_v + v²)) / (2 (q − v))` are exact to rounding.
    pub(crate) fn build(&mut self, f: &[f32], s: f64) -> bool {
        let n = f.len();
        let Some(first) = f.iter().position(|x| *x != f32::INFINITY) else {
            return false;
        };
        self.reserve(n);
        self.s2 = s * s;
        let inv = 1.0 / self.s2;
        let (vs, h, z) = (&mut self.v[..], &mut self.h[..], &mut self.z[..]);
        let mut k = 0usize;
        let q0 = first as f64;
        (vs[0], h[0], z[0]) = (q0, f64::from(f[first]) * inv + q0 * q0, f64::NEG_INFINITY);
        for (q, &fq) in f.iter().enumerate().skip(first + 1) {
            if fq == f32::INFINITY {
                continue;
            }
            let qf = q as f64;
            let hq = f64::from(fq) * inv + qf * qf;
            let mut sq = (hq - h[k]) / (2.0 * (qf - vs[k]));
            // z[0] = -inf stops the loop at k = 0.
            while sq <= z[k] {
                k -= 1;
                sq = (hq - h[k]) / (2.0 * (qf - vs[k]));
            }
            k += 1;
            (vs[k], h[k], z[k]) = (qf, hq, sq);
        }
        z[k + 1] = f64::INFINITY;
        true
    }

    /// The envelope's value (mm²) at position `p`; `k` is the current parabola, advanced as `p` grows
    /// (start at 0 and call with non-decreasing `p`).
    #[inline]
    pub(crate) fn eval(&self, p: usize, k: &mut usize) -> f64 {
        let x = p as f64;
        while self.z[*k + 1] < x {
            *k += 1;
        }
        let (v, h) = (self.v[*k], self.h[*k]);
        let dx = x - v;
        // h − v² is the apex height in voxel units.
        (dx * dx + (h - v * v)) * self.s2
    }
}

/// Tile edge of the blocked transposes: 16 f32 = one 64-byte cache line.
pub(crate) const TILE: usize = 16;

/// `dst[c * rows + r] = src[r * cols + c]` for a `rows × cols` matrix, in cache-line tiles.
pub(crate) fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    for r0 in (0..rows).step_by(TILE) {
        let r1 = (r0 + TILE).min(rows);
        for c0 in (0..cols).step_by(TILE) {
            let c1 = (c0 + TILE).min(cols);
            for r in r0..r1 {
                let row = &src[r * cols + c0..r * cols + c1];
                for (c, &x) in (c0..c1).zip(row) {
                    dst[c * rows + r] = x;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(f: &[f32], s: f64) -> Vec<f32> {
        (0..f.len())
            .map(|p| {
                let m = f.iter().enumerate().map(|(q, &g)| f64::from(g) + ((p as f64 - q as f64) * s).powi(2));
                m.fold(f64::INFINITY, f64::min) as f32
            })
            .collect()
    }

    #[test]
    fn envelope_matches_brute_force() {
        let mut e = Envelope::default();
        let mut seed = 7u64;
        for n in 1..40 {
            let f: Vec<f32> = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let r = (seed >> 33) % 10;
                    if r < 4 {
                        f32::INFINITY
                    } else {
                        (r * r) as f32 * 0.37
                    }
                })
                .collect();
            let mut out = vec![0.0; n];
            let any = envelope(&f, 1.7, &mut out, &mut e);
            assert_eq!(any, f.iter().any(|x| x.is_finite()));
            let b = brute(&f, 1.7);
            for (a, b) in out.iter().zip(&b) {
                assert!(a == b || (a - b).abs() <= 1e-6 * b, "{a} vs {b} in {f:?}");
            }
        }
    }

    #[test]
    fn binary_line_and_transpose() {
        let mut out = vec![0.0; 6];
        assert!(binary_line(&[false, true, false, false, false, true], 2.0, &mut out));
        assert_eq!(out, vec![4.0, 0.0, 4.0, 16.0, 4.0, 0.0]);
        assert!(!binary_line(&[false; 6], 2.0, &mut out));
        assert!(out.iter().all(|x| x.is_infinite()));
        let src: Vec<f32> = (0..35).map(|x| x as f32).collect();
        let mut dst = vec![0.0; 35];
        transpose(&src, 5, 7, &mut dst);
        assert_eq!(dst[3 * 5 + 2], src[2 * 7 + 3]);
    }
}
