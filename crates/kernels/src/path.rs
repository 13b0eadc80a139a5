//! [`CudaConvPath`]: which CUDA implementation the conv custom ops launch (implicit GEMM, with or
//! without channels-last staging for bf16, f32 as tf32 on tensor cores, or the direct reference
//! kernels), chosen per op or once per process with `MAGSEG_CONV_CUDA`.

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
/// - [`CudaConvPath::GemmTf32`]: `Gemm`, but f32 passes run on tensor cores with their operands
///   rounded to tf32 (10 mantissa bits; sums in f32), as PyTorch does by default for convolutions
///   (`torch.backends.cudnn.allow_tf32 = True`): several times the f32 throughput, results within about
///   1e-3 of the largest value instead of 1e-6. bf16 passes are those of `Gemm`.
/// - [`CudaConvPath::Direct`]: the direct reference kernels (one thread per output element);
///   bf16 operands are converted to f32 and the result back to bf16.
/// - [`CudaConvPath::Auto`] (default): the environment variable `MAGSEG_CONV_CUDA` (read once per
///   process): `direct` → `Direct`, `gemm-ncdhw` → `GemmNcdhw`, `tf32` → `GemmTf32`, anything else →
///   `Gemm`; [`CudaConvPath::set_process_default`] decides instead when called before the first read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CudaConvPath {
    /// `MAGSEG_CONV_CUDA=direct` selects [`CudaConvPath::Direct`], `gemm-ncdhw`
    /// [`CudaConvPath::GemmNcdhw`], `tf32` [`CudaConvPath::GemmTf32`], anything else
    /// [`CudaConvPath::Gemm`].
    #[default]
    Auto,
    /// The direct reference kernels.
    Direct,
    /// The implicit-GEMM kernels (bf16 forward / backward-data through channels-last staging where
    /// the geometry allows it).
    Gemm,
    /// The implicit-GEMM kernels, bf16 gathering from NCDHW directly (no staging).
    GemmNcdhw,
    /// The implicit-GEMM kernels with f32 on tensor cores as tf32.
    GemmTf32,
}

/// The process-wide choice behind [`CudaConvPath::Auto`], fixed on first use.
static PATH: OnceLock<CudaConvPath> = OnceLock::new();

/// The environment's choice, read once.
fn from_env() -> CudaConvPath {
    *PATH.get_or_init(|| match std::env::var("MAGSEG_CONV_CUDA") {
        Ok(v) if v.trim().eq_ignore_ascii_case("direct") => CudaConvPath::Direct,
        Ok(v) if v.trim().eq_ignore_ascii_case("gemm-ncdhw") => CudaConvPath::GemmNcdhw,
        Ok(v) if v.trim().eq_ignore_ascii_case("tf32") => CudaConvPath::GemmTf32,
        Ok(v) if v.trim().is_empty() || v.trim().eq_ignore_ascii_case("gemm") => CudaConvPath::Gemm,
        Ok(v) => {
            tracing::warn!(
                value = %v,
                "MAGSEG_CONV_CUDA is not `direct`, `gemm`, `gemm-ncdhw` or `tf32`: using the GEMM kernels"
            );
            CudaConvPath::Gemm
        }
        Err(_) => CudaConvPath::Gemm,
    })
}

impl CudaConvPath {
    /// `Direct`, `Gemm`, `GemmNcdhw` or `GemmTf32`: `Auto` resolved through the process default
    /// ([`CudaConvPath::set_process_default`] or `MAGSEG_CONV_CUDA`).
    pub fn resolve(self) -> CudaConvPath {
        match self {
            CudaConvPath::Auto => from_env(),
            p => p,
        }
    }

    /// Whether this path (resolved) runs the implicit-GEMM kernels where they apply.
    pub fn is_gemm(self) -> bool {
        matches!(self.resolve(), CudaConvPath::Gemm | CudaConvPath::GemmNcdhw | CudaConvPath::GemmTf32)
    }

    /// Makes `path` what [`CudaConvPath::Auto`] resolves to in this process (for example
    /// `GemmTf32` for a `--tf32` option), overriding `MAGSEG_CONV_CUDA`. Returns the path `Auto`
    /// resolves to from now on: `path`, or the earlier choice when `Auto` was already resolved (the
    /// choice is fixed once made, so every op of a run uses the same one). `Auto` itself leaves the
    /// environment's choice.
    pub fn set_process_default(path: CudaConvPath) -> CudaConvPath {
        if path == CudaConvPath::Auto {
            return from_env();
        }
        *PATH.get_or_init(|| path)
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
        assert_eq!(CudaConvPath::GemmTf32.resolve(), CudaConvPath::GemmTf32);
        assert!(CudaConvPath::GemmTf32.is_gemm() && !CudaConvPath::Direct.is_gemm());
        assert_ne!(CudaConvPath::Auto.resolve(), CudaConvPath::Auto);
    }
}
