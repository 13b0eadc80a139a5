//! Shared helpers of the integration tests: a small deterministic RNG, shape builders and brute-force
//! reference implementations of the EDT, surfaces and surface distances.
#![allow(dead_code)]

use magseg_metrics::{Connectivity, Grid};

/// xorshift64* — deterministic, dependency-free.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// A mask with about `p` of the voxels true.
    pub fn mask(&mut self, n: usize, p: f64) -> Vec<bool> {
        (0..n).map(|_| self.unit() < p).collect()
    }
}

pub fn idx(dims: [usize; 3], i: usize, j: usize, k: usize) -> usize {
    i + dims[0] * (j + dims[1] * k)
}

pub fn coords(dims: [usize; 3], n: usize) -> [usize; 3] {
    [n % dims[0], (n / dims[0]) % dims[1], n / (dims[0] * dims[1])]
}

/// Voxels whose centre (in mm) is inside the ellipsoid with centre `c` (voxel units) and radii `r` (mm).
pub fn ellipsoid(grid: &Grid, c: [f64; 3], r: [f64; 3]) -> Vec<bool> {
    let n = grid.dims.iter().product();
    (0..n)
        .map(|v| {
            let p = coords(grid.dims, v);
            (0..3).map(|a| ((p[a] as f64 - c[a]) * grid.spacing[a] / r[a]).powi(2)).sum::<f64>() <= 1.0
        })
        .collect()
}

pub fn sphere(grid: &Grid, c: [f64; 3], r: f64) -> Vec<bool> {
    ellipsoid(grid, c, [r; 3])
}

/// The box `lo..hi` (voxel indices, exclusive end).
pub fn cuboid(grid: &Grid, lo: [usize; 3], hi: [usize; 3]) -> Vec<bool> {
    let n = grid.dims.iter().product();
    (0..n).map(|v| (0..3).all(|a| (lo[a]..hi[a]).contains(&coords(grid.dims, v)[a]))).collect()
}

/// Squared distance in mm² between voxels `a` and `b`.
pub fn dist2(grid: &Grid, a: usize, b: usize) -> f64 {
    let (p, q) = (coords(grid.dims, a), coords(grid.dims, b));
    (0..3).map(|x| ((p[x] as f64 - q[x] as f64) * grid.spacing[x]).powi(2)).sum()
}

/// O(N·F) squared EDT.
pub fn brute_edt_sq(features: &[bool], grid: &Grid) -> Vec<f64> {
    let f: Vec<usize> = (0..features.len()).filter(|&v| features[v]).collect();
    (0..features.len()).map(|v| f.iter().map(|&q| dist2(grid, v, q)).fold(f64::INFINITY, f64::min)).collect()
}

/// Surface by the definition: in the mask with a neighbour outside the mask or the grid.
pub fn brute_surface(mask: &[bool], grid: &Grid, c: Connectivity) -> Vec<bool> {
    let d = grid.dims;
    (0..mask.len())
        .map(|v| {
            if !mask[v] {
                return false;
            }
            let p = coords(d, v);
            for dk in -1i64..=1 {
                for dj in -1i64..=1 {
                    for di in -1i64..=1 {
                        let m = di.abs() + dj.abs() + dk.abs();
                        if m == 0 || (c == Connectivity::Six && m > 1) {
                            continue;
                        }
                        let q = [p[0] as i64 + di, p[1] as i64 + dj, p[2] as i64 + dk];
                        if (0..3).any(|a| q[a] < 0 || q[a] >= d[a] as i64) {
                            return true;
                        }
                        if !mask[idx(d, q[0] as usize, q[1] as usize, q[2] as usize)] {
                            return true;
                        }
                    }
                }
            }
            false
        })
        .collect()
}

/// Directed distances from the surface of `a` to the surface of `b`, brute force, in voxel order.
pub fn brute_directed(a: &[bool], b: &[bool], grid: &Grid, c: Connectivity) -> Vec<f64> {
    let (sa, sb) = (brute_surface(a, grid, c), brute_surface(b, grid, c));
    let tb: Vec<usize> = (0..b.len()).filter(|&v| sb[v]).collect();
    (0..a.len())
        .filter(|&v| sa[v])
        .map(|v| tb.iter().map(|&q| dist2(grid, v, q)).fold(f64::INFINITY, f64::min).sqrt())
        .collect()
}

/// numpy's linear percentile by full sort.
pub fn np_percentile(x: &[f64], q: f64) -> f64 {
    let mut s = x.to_vec();
    s.sort_by(f64::total_cmp);
    let h = (s.len() - 1) as f64 * q / 100.0;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(s.len() - 1);
    s[lo] + (s[hi] - s[lo]) * (h - lo as f64)
}

pub fn close(a: f64, b: f64, rel: f64) -> bool {
    a == b || (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-12)
}
