//! Affines from NIfTI headers (sform, qform, pixdim), quaternions for writing, and orientation codes.

use crate::volume::{identity, Affine};

/// Which header field the affine came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AffineSource {
    /// `sform_code > 0`: the srow_* rows.
    Sform,
    /// `qform_code > 0`: quaternion, qfac and offsets.
    Qform,
    /// Neither: diag(pixdim), zero origin (NIfTI "method 1"; also Analyze 7.5).
    Pixdim,
}

/// The voxel-to-world affine of a header: sform when sform_code > 0, else qform, else pixdim.
pub fn header_affine(h: &nifti::NiftiHeader) -> (Affine, AffineSource) {
    if h.sform_code > 0 {
        let mut m = identity();
        for (r, row) in [h.srow_x, h.srow_y, h.srow_z].iter().enumerate() {
            for c in 0..4 {
                m[r][c] = f64::from(row[c]);
            }
        }
        (m, AffineSource::Sform)
    } else if h.qform_code > 0 {
        (qform_affine(h), AffineSource::Qform)
    } else {
        let mut m = identity();
        for a in 0..3 {
            m[a][a] = pixdim(h, a);
        }
        (m, AffineSource::Pixdim)
    }
}

fn pixdim(h: &nifti::NiftiHeader, axis: usize) -> f64 {
    let v = f64::from(h.pixdim[axis + 1]).abs();
    if v.is_finite() && v > 0.0 {
        v
    } else {
        1.0
    }
}

/// The qform affine as the NIfTI-1 standard defines it.
pub fn qform_affine(h: &nifti::NiftiHeader) -> Affine {
    let (b, c, d) = (f64::from(h.quatern_b), f64::from(h.quatern_c), f64::from(h.quatern_d));
    let a2 = 1.0 - (b * b + c * c + d * d);
    let (a, b, c, d) = if a2 < 1e-7 {
        let n = (b * b + c * c + d * d).sqrt().max(f64::MIN_POSITIVE);
        (0.0, b / n, c / n, d / n)
    } else {
        (a2.sqrt(), b, c, d)
    };
    let r = [
        [a * a + b * b - c * c - d * d, 2.0 * (b * c - a * d), 2.0 * (b * d + a * c)],
        [2.0 * (b * c + a * d), a * a + c * c - b * b - d * d, 2.0 * (c * d - a * b)],
        [2.0 * (b * d - a * c), 2.0 * (c * d + a * b), a * a + d * d - c * c - b * b],
    ];
    let qfac = if h.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
    let zoom = [pixdim(h, 0), pixdim(h, 1), pixdim(h, 2) * qfac];
    let offset = [f64::from(h.quatern_x), f64::from(h.quatern_y), f64::from(h.quatern_z)];
    let mut m = identity();
    for row in 0..3 {
        for col in 0..3 {
            m[row][col] = r[row][col] * zoom[col];
        }
        m[row][3] = offset[row];
    }
    m
}

/// Voxel spacing (column norms of the affine's 3×3 part).
pub fn affine_spacing(m: &Affine) -> [f64; 3] {
    let mut s = [0.0; 3];
    for (c, v) in s.iter_mut().enumerate() {
        *v = (0..3).map(|r| m[r][c] * m[r][c]).sum::<f64>().sqrt();
    }
    s
}

/// Quaternion parameters `(b, c, d, qfac)` of an affine whose columns are orthogonal (NIfTI's
/// `nifti_mat44_to_quatern` for the orthogonal case); offsets are the affine's last column.
pub fn affine_to_quaternion(m: &Affine) -> (f64, f64, f64, f64) {
    let s = affine_spacing(m);
    let mut r = [[0.0; 3]; 3];
    for row in 0..3 {
        for col in 0..3 {
            r[row][col] = if s[col] > 0.0 {
                m[row][col] / s[col]
            } else if row == col {
                1.0
            } else {
                0.0
            };
        }
    }
    let det = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1]) - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
        + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
    let qfac = if det < 0.0 {
        for row in &mut r {
            row[2] = -row[2];
        }
        -1.0
    } else {
        1.0
    };
    let trace = r[0][0] + r[1][1] + r[2][2] + 1.0;
    let (a, b, c, d);
    if trace > 0.5 {
        let aa = 0.5 * trace.sqrt();
        a = aa;
        b = 0.25 * (r[2][1] - r[1][2]) / aa;
        c = 0.25 * (r[0][2] - r[2][0]) / aa;
        d = 0.25 * (r[1][0] - r[0][1]) / aa;
    } else {
        let xd = 1.0 + r[0][0] - (r[1][1] + r[2][2]);
        let yd = 1.0 + r[1][1] - (r[0][0] + r[2][2]);
        let zd = 1.0 + r[2][2] - (r[0][0] + r[1][1]);
        if xd > 1.0 {
            let bb = 0.5 * xd.sqrt();
            b = bb;
            c = 0.25 * (r[0][1] + r[1][0]) / bb;
            d = 0.25 * (r[0][2] + r[2][0]) / bb;
            a = 0.25 * (r[2][1] - r[1][2]) / bb;
        } else if yd > 1.0 {
            let cc = 0.5 * yd.sqrt();
            c = cc;
            b = 0.25 * (r[0][1] + r[1][0]) / cc;
            d = 0.25 * (r[1][2] + r[2][1]) / cc;
            a = 0.25 * (r[0][2] - r[2][0]) / cc;
        } else {
            let dd = 0.5 * zd.sqrt();
            d = dd;
            b = 0.25 * (r[0][2] + r[2][0]) / dd;
            c = 0.25 * (r[1][2] + r[2][1]) / dd;
            a = 0.25 * (r[1][0] - r[0][1]) / dd;
        }
    }
    if a < 0.0 {
        (-b, -c, -d, qfac)
    } else {
        (b, c, d, qfac)
    }
}

/// For each voxel axis, the world direction it increases towards: 'R'/'L', 'A'/'P', 'S'/'I'
/// (the dominant component of the affine column, as nibabel's `aff2axcodes` for aligned grids).
pub fn axcodes(m: &Affine) -> [char; 3] {
    const POS: [char; 3] = ['R', 'A', 'S'];
    const NEG: [char; 3] = ['L', 'P', 'I'];
    let mut out = ['?'; 3];
    let mut used = [false; 3];
    // Greedy by magnitude so that oblique grids still get three distinct world axes.
    let mut cands: Vec<(f64, usize, usize)> = Vec::with_capacity(9);
    for col in 0..3 {
        for row in 0..3 {
            cands.push((m[row][col].abs(), row, col));
        }
    }
    cands.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut done = [false; 3];
    for (mag, row, col) in cands {
        if done[col] || used[row] || mag == 0.0 {
            continue;
        }
        out[col] = if m[row][col] > 0.0 { POS[row] } else { NEG[row] };
        done[col] = true;
        used[row] = true;
    }
    out
}

/// For each voxel axis: (the world axis it maps to, whether it runs against RAS+).
pub fn axis_permutation(m: &Affine) -> [(usize, bool); 3] {
    let codes = axcodes(m);
    let mut out = [(0, false); 3];
    for (col, code) in codes.iter().enumerate() {
        out[col] = match code {
            'R' => (0, false),
            'L' => (0, true),
            'A' => (1, false),
            'P' => (1, true),
            'S' => (2, false),
            'I' => (2, true),
            _ => (col, false),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quaternion_round_trip_of_lps_and_oblique() {
        let mut h = nifti::NiftiHeader::default();
        let mut lps = identity();
        lps[0][0] = -1.0;
        lps[1][1] = -1.0;
        lps[1][3] = 239.0;
        let mut oblique = identity();
        let t: f64 = 0.3;
        oblique[0][0] = t.cos() * 0.9;
        oblique[0][1] = -t.sin() * 1.1;
        oblique[1][0] = t.sin() * 0.9;
        oblique[1][1] = t.cos() * 1.1;
        oblique[2][2] = -2.5;
        oblique[0][3] = -90.0;
        for m in [lps, oblique] {
            let (b, c, d, qfac) = affine_to_quaternion(&m);
            let s = affine_spacing(&m);
            h.quatern_b = b as f32;
            h.quatern_c = c as f32;
            h.quatern_d = d as f32;
            h.pixdim = [qfac as f32, s[0] as f32, s[1] as f32, s[2] as f32, 1.0, 1.0, 1.0, 1.0];
            h.quatern_x = m[0][3] as f32;
            h.quatern_y = m[1][3] as f32;
            h.quatern_z = m[2][3] as f32;
            let back = qform_affine(&h);
            for r in 0..3 {
                for c in 0..4 {
                    assert!((back[r][c] - m[r][c]).abs() < 1e-5, "{r},{c}: {back:?} vs {m:?}");
                }
            }
        }
        assert_eq!(axcodes(&lps), ['L', 'P', 'S']);
    }
}
