//! Laying out one phantom case (brain, tumour, per-modality fields) from its key, and rendering its voxels.

use rayon::prelude::*;

use super::random::{mix, Bias, Blob, Rng, Texture};
use super::{BIAS_AMPLITUDE, CONTRASTS, MIN_LEVEL, NOISE_SIGMA, TEXTURE_AMPLITUDE};

/// Tissue class of a voxel, before it becomes a BraTS label and four intensities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Outside,
    Healthy,
    Edema,
    Necrosis,
    Enhancing,
}

impl Class {
    fn label(self) -> i32 {
        match self {
            Class::Outside | Class::Healthy => 0,
            Class::Necrosis => 1,
            Class::Edema => 2,
            Class::Enhancing => 4,
        }
    }
}

/// Everything random about one case, drawn from its key.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    size: usize,
    brain: Blob,
    core: Blob,
    edema: Blob,
    /// Thickness of the enhancing rim (voxels, measured inwards from the core's boundary).
    rim: f64,
    /// Minimum thickness of edema around the core (voxels).
    margin: f64,
    texture: Texture,
    bias: Vec<Bias>,
    key: u64,
}

impl Layout {
    /// Draw the layout of the case with key `key` on a `size`³ grid.
    pub(crate) fn new(key: u64, size: usize) -> Self {
        let s = size as f64 / 64.0;
        let n = size as f64;
        let mut rng = Rng::new(mix(key, 1));
        let half = (n - 1.0) / 2.0;
        let centre = [(); 3].map(|_| half + rng.range(-1.5, 1.5) * s);
        let axes = [0.36, 0.40, 0.34].map(|f| f * n * rng.range(0.96, 1.04));
        let eye = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        let brain = Blob::new(&mut rng, centre, axes, eye, 3, (0.01, 0.02));

        let rim = (3.0 * s).max(1.5);
        let margin = (2.0 * s).max(1.0);
        let r_edema = rng.range(9.5, 11.5) * s;
        let r_core = (r_edema * rng.range(0.68, 0.80)).max(rim + 2.0);
        let r_edema = r_edema.max(r_core + margin);
        let core_axes = anisotropic(&mut rng, r_core, 0.12);
        let rot = rng.rotation();
        let mut core = Blob::new(&mut rng, [0.0; 3], core_axes, rot, 3, (0.03, 0.06));
        let need = core.extent() + 1.5 * s;
        let mut placed = centre;
        for _ in 0..500 {
            let c = [0, 1, 2].map(|a| centre[a] + rng.range(-axes[a], axes[a]));
            if brain.depth(c) >= need {
                placed = c;
                break;
            }
        }
        core.centre = placed;
        let dir = rng.unit_vector();
        let off = rng.range(0.0, 0.2) * r_edema;
        let edema_centre = [0, 1, 2].map(|a| placed[a] + off * dir[a]);
        let edema_axes = anisotropic(&mut rng, r_edema, 0.18);
        let rot = rng.rotation();
        let edema = Blob::new(&mut rng, edema_centre, edema_axes, rot, 4, (0.04, 0.08));

        let cells = (size / 10).clamp(2, 24);
        let texture = Texture::new(&mut Rng::new(mix(key, 2)), size, cells);
        let bias = (0..CONTRASTS.len())
            .map(|m| Bias::new(&mut Rng::new(mix(key, 10 + m as u64)), size, f64::from(BIAS_AMPLITUDE)))
            .collect();
        Self { size, brain, core, edema, rim, margin, texture, bias, key }
    }

    fn class(&self, p: [f64; 3]) -> Class {
        if self.brain.depth(p) <= 0.0 {
            return Class::Outside;
        }
        let dc = self.core.depth(p);
        if dc > self.rim {
            Class::Necrosis
        } else if dc > 0.0 {
            Class::Enhancing
        } else if dc > -self.margin || self.edema.depth(p) > 0.0 {
            Class::Edema
        } else {
            Class::Healthy
        }
    }

    /// Render the label map and the four images (in [`CONTRASTS`] order), each in NIfTI order.
    pub(crate) fn render(&self) -> (Vec<i32>, Vec<Vec<f32>>) {
        let n = self.size;
        let slices: Vec<(Vec<i32>, Vec<Vec<f32>>)> = (0..n).into_par_iter().map(|k| self.slice(k)).collect();
        let mut labels = Vec::with_capacity(n * n * n);
        let mut images: Vec<Vec<f32>> = (0..CONTRASTS.len()).map(|_| Vec::with_capacity(n * n * n)).collect();
        for (l, imgs) in slices {
            labels.extend_from_slice(&l);
            for (dst, src) in images.iter_mut().zip(imgs) {
                dst.extend_from_slice(&src);
            }
        }
        (labels, images)
    }

    /// One axial slice (fixed k); noise comes from a stream of its own, so the result does not
    /// depend on how slices are scheduled.
    fn slice(&self, k: usize) -> (Vec<i32>, Vec<Vec<f32>>) {
        let n = self.size;
        let mut labels = vec![0i32; n * n];
        let mut images = vec![vec![0f32; n * n]; CONTRASTS.len()];
        let mut rngs: Vec<Rng> =
            (0..CONTRASTS.len()).map(|m| Rng::new(mix(mix(self.key, 20 + m as u64), k as u64))).collect();
        let mut spare: Vec<Option<f64>> = vec![None; CONTRASTS.len()];
        for j in 0..n {
            for i in 0..n {
                let idx = i + n * j;
                let p = [i as f64, j as f64, k as f64];
                let class = self.class(p);
                labels[idx] = class.label();
                let tex = match class {
                    Class::Healthy | Class::Edema => self.texture.at(p),
                    _ => 0.0,
                };
                for (m, c) in CONTRASTS.iter().enumerate() {
                    // Draw noise for every voxel, inside or not, so streams stay aligned.
                    let g = match spare[m].take() {
                        Some(g) => g,
                        None => {
                            let (a, b) = rngs[m].gaussian_pair();
                            spare[m] = Some(b);
                            a
                        }
                    };
                    if class == Class::Outside {
                        continue;
                    }
                    let level = match class {
                        Class::Healthy | Class::Outside => c.healthy,
                        Class::Edema => c.edema,
                        Class::Necrosis => c.necrosis,
                        Class::Enhancing => c.enhancing,
                    };
                    let textured = f64::from(level) * (1.0 + f64::from(TEXTURE_AMPLITUDE * c.texture_sign) * tex);
                    let v = textured * self.bias[m].at(p) + f64::from(NOISE_SIGMA) * g;
                    let v = v.max(f64::from(MIN_LEVEL));
                    images[m][idx] = (v * f64::from(c.scale)) as f32;
                }
            }
        }
        (labels, images)
    }
}

/// Semi-axes with geometric mean `r` and per-axis log-factors uniform in ±`spread`.
fn anisotropic(rng: &mut Rng, r: f64, spread: f64) -> [f64; 3] {
    let f = [(); 3].map(|_| rng.range(-spread, spread));
    let mean = (f[0] + f[1] + f[2]) / 3.0;
    f.map(|x| r * (x - mean).exp())
}
