//! A safe, bounds-checked wrapper around `gemm::gemm` for f32 strided matrices (the only unsafe code).
#![allow(unsafe_code)]

/// A read-only strided matrix view: element (i, j) is `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

/// The largest index a `rows × cols` view with strides (rs, cs) touches, plus one.
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// `dst (m×n, strides dst_rs, dst_cs) = [dst +] lhs (m×k) · rhs (k×n)`, on the calling thread
/// or, with `parallel`, on rayon's pool (for one large product).
///
/// Returns `false` (and does nothing) when a view would reach past its slice, which would be a bug
/// in the caller's index arithmetic; callers turn that into an error.
#[allow(clippy::too_many_arguments)]
#[must_use]
pub(crate) fn gemm_f32(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    dst_cs: usize,
    accumulate: bool,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    parallel: bool,
) -> bool {
    if m == 0 || n == 0 {
        return true;
    }
    if extent(m, n, dst_rs, dst_cs) > dst.len()
        || extent(m, k, lhs.rs, lhs.cs) > lhs.data.len()
        || extent(k, n, rhs.rs, rhs.cs) > rhs.data.len()
        || [dst_rs, dst_cs, lhs.rs, lhs.cs, rhs.rs, rhs.cs].iter().any(|&s| s > isize::MAX as usize)
    {
        return false;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst[i * dst_rs + j * dst_cs] = 0.0;
                }
            }
        }
        return true;
    }
    // SAFETY: the checks above guarantee that every element the three strided views address lies
    // inside its slice; `dst` is borrowed mutably and so cannot alias `lhs` or `rhs`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            if parallel { gemm::Parallelism::Rayon(rayon::current_num_threads()) } else { gemm::Parallelism::None },
        );
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_product_matches_loops() {
        let (m, n, k) = (5, 3, 4);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 2.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| 1.0 - i as f32 * 0.25).collect();
        let mut c = vec![1.0f32; m * n];
        let lhs = MatRef { data: &a, rs: k, cs: 1 };
        let rhs = MatRef { data: &b, rs: 1, cs: k };
        assert!(gemm_f32(m, n, k, &mut c, n, 1, true, lhs, rhs, false));
        for i in 0..m {
            for j in 0..n {
                let want: f32 = 1.0 + (0..k).map(|l| a[i * k + l] * b[l + j * k]).sum::<f32>();
                assert!((c[i * n + j] - want).abs() < 1e-4);
            }
        }
        assert!(!gemm_f32(m, n, k + 1, &mut c, n, 1, true, lhs, rhs, true));
    }
}
