//! `Precision::Tf32` (`--precision tf32`): parsed from options and TOML, computes in f32, and
//! [`Precision::apply`] makes every later GPU convolution of the process take the tf32 path (its own
//! test binary, so the process-wide choice starts unset). The tf32 kernels themselves are checked in
//! magseg-kernels (tests/emu, and tests/cuda_conv.rs on a GPU).

use candle_core::DType;
use magseg_kernels::CudaConvPath;
use magseg_train::Precision;

#[test]
fn tf32_parses_computes_in_f32_and_fixes_the_process_conv_path() {
    let p: Precision = "tf32".parse().unwrap();
    assert_eq!(p, Precision::Tf32);
    assert_eq!(p.dtype(), DType::F32);
    assert_eq!(p.as_str(), "tf32");
    let e = "tf16".parse::<Precision>().unwrap_err().to_string();
    assert!(e.contains("expected f32, bf16 or tf32"), "{e}");
    #[derive(serde::Deserialize)]
    struct T {
        precision: Precision,
    }
    let t: T = toml::from_str("precision = \"tf32\"").unwrap();
    assert_eq!(t.precision, Precision::Tf32);

    // f32 and bf16 leave the choice open; tf32 fixes it, and repeating it is fine.
    Precision::F32.apply().unwrap();
    Precision::Bf16.apply().unwrap();
    Precision::Tf32.apply().unwrap();
    assert_eq!(CudaConvPath::Auto.resolve(), CudaConvPath::GemmTf32);
    Precision::Tf32.apply().unwrap();
    // Once fixed, another default does not replace it (every op of the run uses one path).
    assert_eq!(CudaConvPath::set_process_default(CudaConvPath::Direct), CudaConvPath::GemmTf32);
    assert_eq!(CudaConvPath::Auto.resolve(), CudaConvPath::GemmTf32);
    // Explicit per-op paths are unaffected.
    assert_eq!(CudaConvPath::Gemm.resolve(), CudaConvPath::Gemm);
}
