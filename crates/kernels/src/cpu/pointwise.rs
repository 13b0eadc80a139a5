//! 1×1×1 convolutions (stride 1, no padding): each pass is one GEMM per batch element straight
//! on the tensors, parallel inside `gemm`; no gather and no tile copies.

use super::corr::internal;
use super::gemm::{gemm_f32, MatRef};
use crate::{Conv3dGeometry, KernelsError};

/// Whether `g` is a pointwise convolution.
pub(crate) fn is_pointwise(g: &Conv3dGeometry) -> bool {
    g.kernel == [1; 3] && g.stride == [1; 3] && g.padding == [0; 3]
}

fn check(ok: bool) -> Result<(), KernelsError> {
    if ok {
        Ok(())
    } else {
        Err(internal("pointwise gemm operands out of bounds"))
    }
}

/// `y[b] (Co × V) = w (Co × Ci) · x[b] (Ci × V)`.
pub(crate) fn forward(g: &Conv3dGeometry, x: &[f32], w: &[f32], y: &mut [f32]) -> Result<(), KernelsError> {
    let (ci, co, v) = (g.in_channels, g.out_channels, g.input_volume());
    for (xb, yb) in x.chunks(ci * v).zip(y.chunks_mut(co * v)) {
        let lhs = MatRef { data: xb, rs: 1, cs: v };
        let rhs = MatRef { data: w, rs: 1, cs: ci };
        check(gemm_f32(v, co, ci, yb, 1, v, false, lhs, rhs, true))?;
    }
    Ok(())
}

/// `dx[b] (Ci × V) = wᵀ (Ci × Co) · dy[b] (Co × V)`.
pub(crate) fn backward_data(g: &Conv3dGeometry, dy: &[f32], w: &[f32], dx: &mut [f32]) -> Result<(), KernelsError> {
    let (ci, co, v) = (g.in_channels, g.out_channels, g.input_volume());
    for (dyb, dxb) in dy.chunks(co * v).zip(dx.chunks_mut(ci * v)) {
        let lhs = MatRef { data: dyb, rs: 1, cs: v };
        let rhs = MatRef { data: w, rs: ci, cs: 1 };
        check(gemm_f32(v, ci, co, dxb, 1, v, false, lhs, rhs, true))?;
    }
    Ok(())
}

/// `dw (Co × Ci) = Σ_b dy[b] (Co × V) · x[b]ᵀ (V × Ci)`.
pub(crate) fn backward_weight(g: &Conv3dGeometry, x: &[f32], dy: &[f32], dw: &mut [f32]) -> Result<(), KernelsError> {
    let (ci, co, v) = (g.in_channels, g.out_channels, g.input_volume());
    dw.fill(0.0);
    for (xb, dyb) in x.chunks(ci * v).zip(dy.chunks(co * v)) {
        let lhs = MatRef { data: dyb, rs: v, cs: 1 };
        let rhs = MatRef { data: xb, rs: 1, cs: v };
        check(gemm_f32(co, ci, v, dw, ci, 1, true, lhs, rhs, true))?;
    }
    Ok(())
}
