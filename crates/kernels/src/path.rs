//! [`CudaConvPath`]: which CUDA implementation the conv custom ops launch (implicit GEMM or the
//! direct reference kernels), chosen per op or once per process with `MAGSEG_CONV_CUDA`.

use std::sync::OnceLock;

/// The CUDA implementation of the conv passes. Ignored on the CPU (there is one CPU implementation).
///
/// - [`CudaConvPath::Gemm`]: tiled implicit-GEMM kernels (f32 with FMA micro-tiles, bf16 on tensor
///   cores), split-K backward-weight, a one-tap kernel for conv_transpose3d with kernel == stride.
///   Geometries the GEMM kernels do not cover (more than 512 kernel taps, a kernel extent ≥ 1024)
///   fall back to the direct kernels.
/// - [`CudaConvPath::Direct`]: the direct reference kernels (one thread per output element);
///   bf16 operands are converted to f32 and the result back to bf16.
/// - [`CudaConvPath::Auto`] (default): `Direct` when the environment variable `MAGSEG_CONV_CUDA`
///   is `direct` (read once per process), `Gemm` otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CudaConvPath {
    /// `MAGSEG_CONV_CUDA=direct` selects [`CudaConvPath::Direct`], anything else [`CudaConvPath::Gemm`].
    #[default]
    Auto,
    /// The direct reference kernels.
    Direct,
    /// The implicit-GEMM kernels.
    Gemm,
}

/// The environment's choice, read once.
fn from_env() -> CudaConvPath {
    static PATH: OnceLock<CudaConvPath> = OnceLock::new();
    *PATH.get_or_init(|| match std::env::var("MAGSEG_CONV_CUDA") {
        Ok(v) if v.trim().eq_ignore_ascii_case("direct") => CudaConvPath::Direct,
        Ok(v) if v.trim().is_empty() || v.trim().eq_ignore_ascii_case("gemm") => CudaConvPath::Gemm,
        Ok(v) => {
            tracing::warn!(value = %v, "MAGSEG_CONV_CUDA is neither `direct` nor `gemm`: using the GEMM kernels");
            CudaConvPath::Gemm
        }
        Err(_) => CudaConvPath::Gemm,
    })
}

impl CudaConvPath {
    /// `Direct` or `Gemm`: `Auto` resolved through `MAGSEG_CONV_CUDA`.
    pub fn resolve(self) -> CudaConvPath {
        match self {
            CudaConvPath::Auto => from_env(),
            p => p,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CudaConvPath;

    #[test]
    fn explicit_paths_resolve_to_themselves() {
        assert_eq!(CudaConvPath::Direct.resolve(), CudaConvPath::Direct);
        assert_eq!(CudaConvPath::Gemm.resolve(), CudaConvPath::Gemm);
        assert_ne!(CudaConvPath::Auto.resolve(), CudaConvPath::Auto);
    }
}
