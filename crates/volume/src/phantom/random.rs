//! Seeded randomness and smooth random fields for the phantom: SplitMix64, Box–Muller, wobbly blobs,
//! a multiplicative bias polynomial and a value-noise tissue texture.

use std::f64::consts::PI;

/// Golden-ratio increment of SplitMix64.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function (a bijective 64-bit mixer).
fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Combine a key with a stream number into a new, well-mixed key.
pub(crate) fn mix(key: u64, stream: u64) -> u64 {
    finalize(key.wrapping_mul(GOLDEN) ^ finalize(stream.wrapping_add(GOLDEN)))
}

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, fast and good enough for synthetic data.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator whose whole output is a function of `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        finalize(self.0)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub(crate) fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Two independent standard normal deviates (Box–Muller).
    pub(crate) fn gaussian_pair(&mut self) -> (f64, f64) {
        let u1 = 1.0 - self.uniform(); // (0, 1]: ln is finite
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (2.0 * PI * u2).sin_cos();
        (r * c, r * s)
    }

    /// A point uniformly distributed on the unit sphere.
    pub(crate) fn unit_vector(&mut self) -> [f64; 3] {
        let z = self.range(-1.0, 1.0);
        let (s, c) = (2.0 * PI * self.uniform()).sin_cos();
        let r = (1.0 - z * z).max(0.0).sqrt();
        [r * c, r * s, z]
    }

    /// A uniformly distributed rotation matrix (Shoemake's random unit quaternion).
    pub(crate) fn rotation(&mut self) -> [[f64; 3]; 3] {
        let (u1, u2, u3) = (self.uniform(), self.uniform(), self.uniform());
        let (a, b) = ((1.0 - u1).sqrt(), u1.sqrt());
        let (w, x) = (a * (2.0 * PI * u2).sin(), a * (2.0 * PI * u2).cos());
        let (y, z) = (b * (2.0 * PI * u3).sin(), b * (2.0 * PI * u3).cos());
        [
            [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y)],
            [2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x)],
            [2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y)],
        ]
    }
}

/// One low-frequency term of a blob's radius modulation: `amp · cos(π·freq·(u·dir) + phase)`.
#[derive(Debug, Clone)]
struct Wobble {
    dir: [f64; 3],
    freq: f64,
    amp: f64,
    phase: f64,
}

/// A smooth star-shaped region: a rotated ellipsoid whose radius in direction `u` is multiplied by
/// `1 + Σ amp·cos(π·freq·(u·dir) + phase)` (a few broad, spherical-harmonic-like bumps).
#[derive(Debug, Clone)]
pub(crate) struct Blob {
    /// Centre in voxel coordinates.
    pub(crate) centre: [f64; 3],
    rot: [[f64; 3]; 3],
    axes: [f64; 3],
    mean_radius: f64,
    wobbles: Vec<Wobble>,
}

impl Blob {
    /// A blob with the given centre and semi-axes (voxels), rotation and `n` wobble terms whose
    /// amplitudes are drawn from `amp` (so the radius stays within `1 ± n·amp.1` of the ellipsoid's).
    pub(crate) fn new(
        rng: &mut Rng,
        centre: [f64; 3],
        axes: [f64; 3],
        rot: [[f64; 3]; 3],
        n: usize,
        amp: (f64, f64),
    ) -> Self {
        let wobbles = (0..n)
            .map(|_| Wobble {
                dir: rng.unit_vector(),
                freq: rng.range(1.0, 2.0),
                amp: rng.range(amp.0, amp.1),
                phase: rng.range(0.0, 2.0 * PI),
            })
            .collect();
        Self { centre, rot, axes, mean_radius: (axes[0] * axes[1] * axes[2]).cbrt(), wobbles }
    }

    /// The largest distance (voxels) from the centre that the blob can reach.
    pub(crate) fn extent(&self) -> f64 {
        let max_axis = self.axes.iter().copied().fold(0.0, f64::max);
        max_axis * (1.0 + self.wobbles.iter().map(|w| w.amp).sum::<f64>())
    }

    /// Approximate depth of `p` inside the boundary in voxels, measured along the ray from the centre
    /// (positive inside, negative outside).
    pub(crate) fn depth(&self, p: [f64; 3]) -> f64 {
        let d = [p[0] - self.centre[0], p[1] - self.centre[1], p[2] - self.centre[2]];
        let mut q = [0.0; 3];
        for (a, row) in self.rot.iter().enumerate() {
            q[a] = (row[0] * d[0] + row[1] * d[1] + row[2] * d[2]) / self.axes[a];
        }
        let r = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2]).sqrt();
        let u = if r > 1e-12 { [q[0] / r, q[1] / r, q[2] / r] } else { [0.0, 0.0, 1.0] };
        let w = 1.0
            + self
                .wobbles
                .iter()
                .map(|t| {
                    let c = u[0] * t.dir[0] + u[1] * t.dir[1] + u[2] * t.dir[2];
                    t.amp * (PI * t.freq * c + t.phase).cos()
                })
                .sum::<f64>();
        (w - r) * self.mean_radius
    }
}

/// A smooth multiplicative bias field `1 + amplitude·P(x)/Σ|coef|`, P a random polynomial of degree 2 in
/// grid coordinates scaled to [-1, 1]; it stays within `1 ± amplitude` everywhere.
#[derive(Debug, Clone)]
pub(crate) struct Bias {
    linear: [f64; 3],
    quadratic: [[f64; 3]; 3],
    scale: f64,
    half: f64,
}

impl Bias {
    /// A random field for a cube of `size` voxels a side.
    pub(crate) fn new(rng: &mut Rng, size: usize, amplitude: f64) -> Self {
        let linear = [(); 3].map(|_| rng.range(-1.0, 1.0));
        let mut quadratic = [[0.0; 3]; 3];
        let mut norm: f64 = linear.iter().map(|c| c.abs()).sum();
        for a in 0..3 {
            for b in a..3 {
                quadratic[a][b] = rng.range(-0.5, 0.5);
                norm += quadratic[a][b].abs();
            }
        }
        Self { linear, quadratic, scale: amplitude / norm.max(1e-9), half: (size as f64 - 1.0).max(1.0) / 2.0 }
    }

    /// The field's value at voxel `p`.
    pub(crate) fn at(&self, p: [f64; 3]) -> f64 {
        let x = p.map(|v| (v - self.half) / self.half);
        let mut s = 0.0;
        for a in 0..3 {
            s += self.linear[a] * x[a];
            for b in a..3 {
                s += self.quadratic[a][b] * x[a] * x[b];
            }
        }
        1.0 + self.scale * s
    }
}

/// Smooth value noise in [-1, 1] with soft two-level ("grey/white matter") character.
#[derive(Debug, Clone)]
pub(crate) struct Texture {
    cells: usize,
    cell: f64,
    values: Vec<f64>,
}

impl Texture {
    /// `cells` lattice cells across a cube of `size` voxels.
    pub(crate) fn new(rng: &mut Rng, size: usize, cells: usize) -> Self {
        let n = cells + 2;
        Self { cells, cell: size as f64 / cells as f64, values: (0..n * n * n).map(|_| rng.range(-1.0, 1.0)).collect() }
    }

    /// The texture at voxel `p`: smoothstep-interpolated lattice values, sharpened by tanh.
    pub(crate) fn at(&self, p: [f64; 3]) -> f64 {
        let n = self.cells + 2;
        let mut base = [0usize; 3];
        let mut f = [0.0; 3];
        for a in 0..3 {
            let x = (p[a] / self.cell).clamp(0.0, self.cells as f64);
            let i = (x.floor() as usize).min(self.cells);
            base[a] = i;
            let t = x - i as f64;
            f[a] = t * t * (3.0 - 2.0 * t);
        }
        let mut v = 0.0;
        for corner in 0..8 {
            let mut w = 1.0;
            let mut idx = [0usize; 3];
            for a in 0..3 {
                let bit = (corner >> a) & 1;
                idx[a] = base[a] + bit;
                w *= if bit == 1 { f[a] } else { 1.0 - f[a] };
            }
            v += w * self.values[idx[0] + n * (idx[1] + n * idx[2])];
        }
        (2.5 * v).tanh() / 2.5f64.tanh()
    }
}
