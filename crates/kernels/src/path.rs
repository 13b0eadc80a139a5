//! [`CudaConvPath`]: which CUDA implementation the conv custom ops launch (implicit GEMM, with or
//! without channels-last staging for bf16, or the direct reference kernels), chosen per op or once
//! per process with `MAGSEG_CONV_CUDA`.

use std::sync::OnceLock;

/// The CUDA implementation of the conv passes. Ignored on the CPU (there is one CPU implementation).
///
/// - [`CudaConvPath::Gemm`]: tiled implicit-GEMM kernels (f32 with FMA micro-tiles, bf16 on tensor
///   cores), split-K backward-weight, a one-tap kernel for conv_transpose3d with kernel == stride.
///   Geometries the GEMM kernels do not cover (more than 512 kernel taps, a kernel extent ≥ 1024)
///   fall back to the direct kernels. bf16 forward and backward-data first copy the gathered tensor
///   to channels-last and the weight to `[row][tap][channel]` (two short staging kernels), so the
///   GEMM loads 8 channels of a tap with one 16-byte load; this needs the gathered tensor's channels
///   to be a multiple of 8, at most 32 taps and, for backward-data, stride 1 — other geometries use
///   the NCDHW kernels of [`CudaConvPath::GemmNcdhw`]. bf16 backward-weight likewise reads
///   channels-last copies of x and dy when both channel counts are multiples of 8.
/// - [`CudaConvPath::GemmNcdhw`]: the same GEMM kernels, but bf16 passes always gather element by
///   element from the NCDHW tensors (no staging copies); f32 is the same as `Gemm`.
/// - [`CudaConvPath::Direct`]: the direct reference kernels (one thread per output element);
///   bf16 operands are converted to f32 and the result back to bf16.
/// - [`CudaConvPath::Auto`] (default): the environment variable `MAGSEG_CONV_CUDA` (read once per
///   process): `direct` → `Direct`, `gemm-ncdhw` → `GemmNcdhw`, anything else → `Gemm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CudaConvPath {
    /// `MAGSEG_CONV_CUDA=direct` selects [`CudaConvPath::Direct`], `gemm-ncdhw`
    /// [`CudaConvPath::GemmNcdhw`], anything else [`CudaConvPath::Gemm`].
    #[default]
    Auto,
    /// The direct reference kernels.
    Direct,
    /// The implicit-GEMM kernels (bf16 forward / backward-data through channels-last staging where
    /// the geometry allows it).
    Gemm,
    /// The implicit-GEMM kernels, bf16 gathering from NCDHW directly (no staging).
    GemmNcdhw,
}

/// The environment's choice, read once.
fn from_env() -> CudaConvPath {
    static PATH: OnceLock<CudaConvPath> = OnceLock::new();
    *PATH.get_or_init(|| match std::env::var("MAGSEG_CONV_CUDA") {
        Ok(v) if v.trim().eq_ignore_ascii_case("direct") => CudaConvPath::Direct,
        Ok(v) if v.trim().eq_ignore_ascii_case("gemm-ncdhw") => CudaConvPath::GemmNcdhw,
        Ok(v) if v.trim().is_empty() || v.trim().eq_ignore_ascii_case("gemm") => CudaConvPath::Gemm,
        Ok(v) => {
            tracing::warn!(
                value = %v,
                "MAGSEG_CONV_CUDA is not `direct`, `gemm` or `gemm-ncdhw`: using the GEMM kernels"
            );
            CudaConvPath::Gemm
        }
        Err(_) => CudaConvPath::Gemm,
    })
}

impl CudaConvPath {
    /// `Direct`, `Gemm` or `GemmNcdhw`: `Auto` resolved through `MAGSEG_CONV_CUDA`.
    pub fn resolve(self) -> CudaConvPath {
        match self {
            CudaConvPath::Auto => from_env(),
            p => p,
        }
    }

    /// Whether this path (resolved) runs the implicit-GEMM kernels where they apply.
    pub fn is_gemm(self) -> bool {
        matches!(self.resolve(), CudaConvPath::Gemm | CudaConvPath::GemmNcdhw)
    }
}

#[cfg(test)]
mod tests {
    use super::CudaConvPath;

    #[test]
    fn explicit_paths_resolve_to_themselves() {
        assert_eq!(CudaConvPath::Direct.resolve(), CudaConvPath::Direct);
        assert_eq!(CudaConvPath::Gemm.resolve(), CudaConvPath::Gemm);
        assert_eq!(CudaConvPath::GemmNcdhw.resolve(), CudaConvPath::GemmNcdhw);
        assert_ne!(CudaConvPath::Auto.resolve(), CudaConvPath::Auto);
    }
}
