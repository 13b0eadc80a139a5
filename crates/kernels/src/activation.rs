//! Elementwise activations as one custom op each way, their gradients written out: `leaky_relu`
//! (candle_nn's `max(x, 0) + slope · min(x, 0)` takes 5 passes forward and ~20 in autograd's
//! backward) and `gelu_erf` (candle's backward of its GELU takes ~11), each pass a kernel launch and
//! an allocation on a GPU. f32 and bf16 (bf16: widened to f32, computed, rounded once).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::check::{cpu_f32_or_bf16, f32_values, is_supported, supported_device};
use crate::KernelsError;

/// Leaky ReLU, PyTorch's `F.leaky_relu`: `x` where `x > 0`, else `slope · x`; its gradient is `1`
/// where `x > 0`, else `slope` (at `x = 0` too, as PyTorch). f32 and bf16 tensors run as one custom op
/// on the CPU or a CUDA device; other float dtypes fall back to candle ops
/// (`max(x, 0) + slope · min(x, 0)`, whose gradient at exactly 0 is `(1 + slope) / 2`).
pub fn leaky_relu(x: &Tensor, slope: f64) -> candle_core::Result<Tensor> {
    let op = "leaky_relu";
    if !slope.is_finite() {
        return Err(KernelsError::Config { op, msg: format!("the slope must be finite, got {slope}") }.into());
    }
    if !has_kernels(op, x) {
        let zeros = x.zeros_like()?;
        return x.maximum(&zeros)? + (x.minimum(&zeros)? * slope)?;
    }
    x.contiguous()?.apply_op1(Activation(Act::Leaky(slope as f32)))
}

/// GELU with the exact normal CDF, PyTorch's `F.gelu(x)`: `x · Φ(x)`, gradient `Φ(x) + x · φ(x)`.
/// f32 and bf16 tensors run as one custom op each way on the CPU or a CUDA device; other float
/// dtypes fall back to candle's `gelu_erf`.
pub fn gelu_erf(x: &Tensor) -> candle_core::Result<Tensor> {
    if !has_kernels("gelu_erf", x) {
        return x.gelu_erf();
    }
    x.contiguous()?.apply_op1(Activation(Act::Gelu))
}

/// Whether `x`'s dtype and device have the custom ops.
fn has_kernels(op: &'static str, x: &Tensor) -> bool {
    is_supported(x.dtype()) && supported_device(op, x.device()).is_ok()
}

/// Elements per rayon work item of the CPU passes.
const CPU_RUN: usize = 1 << 15;

/// Which activation.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Act {
    /// Leaky ReLU with this slope.
    Leaky(f32),
    /// GELU (exact normal CDF).
    Gelu,
}

impl Act {
    /// The kernels' name stem in activation.cu and the value of their `float param` argument.
    pub(crate) fn kernel(self) -> (&'static str, f32) {
        match self {
            Self::Leaky(slope) => ("leaky_relu", slope),
            Self::Gelu => ("gelu_erf", 0.0),
        }
    }

    /// `f(x)`.
    #[inline]
    pub(crate) fn value(self, x: f32) -> f32 {
        match self {
            Self::Leaky(slope) => {
                if x > 0.0 {
                    x
                } else {
                    x * slope
                }
            }
            Self::Gelu => x * normal_cdf(x),
        }
    }

    /// `f′(x) · dy`.
    #[inline]
    pub(crate) fn grad(self, x: f32, dy: f32) -> f32 {
        match self {
            Self::Leaky(slope) => {
                if x > 0.0 {
                    dy
                } else {
                    dy * slope
                }
            }
            Self::Gelu => dy * (normal_cdf(x) + x * (-0.5 * x * x).exp() * FRAC_1_SQRT_2PI),
        }
    }
}

/// `1 / sqrt(2π)`.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// `Φ(x) = (1 + erf(x / √2)) / 2`.
#[inline]
fn normal_cdf(x: f32) -> f32 {
    0.5 * (1.0 + candle_core::cpu::erf::erf_f32(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `y = f(x)`.
struct Activation(Act);

/// `dx = f′(x) · dy` of `(x, dy)`.
struct ActivationGrad(Act);

impl CustomOp1 for Activation {
    fn name(&self) -> &'static str {
        self.0.kernel().0
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let act = self.0;
        // Collected straight into the output (no zero-filled buffer first: a full pass on big tensors).
        let run = |x: &[f32]| -> Vec<f32> { x.par_iter().with_min_len(CPU_RUN).map(|&x| act.value(x)).collect() };
        let shape = l.shape().clone();
        match s.dtype() {
            DType::F32 => Ok((CpuStorage::F32(run(f32_values(self.name(), s, l)?)), shape)),
            DType::BF16 => {
                let x = s.to_dtype(l, DType::F32)?;
                let y = CpuStorage::F32(run(f32_values(self.name(), &x, &Layout::contiguous(shape.clone()))?));
                Ok((y.to_dtype(&Layout::contiguous(shape.clone()), DType::BF16)?, shape))
            }
            other => {
                Err(KernelsError::Dtype { op: self.name(), dtype: other.as_str().into(), supported: "f32, bf16" }
                    .into())
            }
        }
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        crate::cuda::activation::forward(self.0, (s, l))
    }

    fn bwd(&self, x: &Tensor, _: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&grad.contiguous()?, &ActivationGrad(self.0))?))
    }
}

impl CustomOp2 for ActivationGrad {
    fn name(&self) -> &'static str {
        match self.0 {
            Act::Leaky(_) => "leaky_relu_grad",
            Act::Gelu => "gelu_erf_grad",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (op, act) = (self.name(), self.0);
        cpu_f32_or_bf16(op, (s1, l1), (s2, l2), |s1, l1, s2, l2| {
            let (x, dy) = (f32_values(op, s1, l1)?, f32_values(op, s2, l2)?);
            if x.len() != dy.len() {
                return Err(
                    KernelsError::Layout { op, msg: format!("{} values and {} gradients", x.len(), dy.len()) }.into()
                );
            }
            let dx = x.par_iter().zip(dy).with_min_len(CPU_RUN).map(|(&x, &d)| act.grad(x, d)).collect();
            Ok((CpuStorage::F32(dx), l1.shape().clone()))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        crate::cuda::activation::backward(self.0, (s1, l1), (s2, l2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn values_and_gradients_follow_pytorch() -> candle_core::Result<()> {
        let x = Var::new(&[-2f32, -0.0, 0.0, 0.5, 3.0], &Device::Cpu)?;
        let y = leaky_relu(&x, 0.2)?;
        assert_eq!(y.to_vec1::<f32>()?, vec![-0.4, 0.0, 0.0, 0.5, 3.0]);
        let r = Tensor::new(&[1f32, 2.0, 3.0, 4.0, 5.0], &Device::Cpu)?;
        let g = (y * &r)?.sum_all()?.backward()?;
        // slope where x ≤ 0 (PyTorch: `x > 0 ? dy : dy·slope`), 1 where x > 0.
        assert_eq!(g.get(&x).unwrap().to_vec1::<f32>()?, vec![0.2, 0.4, 0.6, 4.0, 5.0]);
        assert!(leaky_relu(&x, f64::NAN).is_err());
        Ok(())
    }

    #[test]
    fn bf16_rounds_once_and_f64_falls_back_to_candle_ops() -> candle_core::Result<()> {
        let round = |v: f32| -> candle_core::Result<f32> {
            Tensor::new(&[v], &Device::Cpu)?.to_dtype(DType::BF16)?.to_dtype(DType::F32)?.to_vec1::<f32>().map(|v| v[0])
        };
        let v = [-1.5f32, -0.3, 0.7, 1e-3, -7.0, -0.0123];
        let x = Tensor::new(&v, &Device::Cpu)?;
        let got = leaky_relu(&x.to_dtype(DType::BF16)?, 0.01)?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        for (i, &v) in v.iter().enumerate() {
            // The bf16 input, widened, times the slope in f32, rounded to bf16 once.
            let xb = round(v)?;
            assert_eq!(got[i], if xb > 0.0 { xb } else { round(xb * 0.01)? }, "value {i}");
        }
        let d = leaky_relu(&x.to_dtype(DType::F64)?, 0.01)?.to_vec1::<f64>()?;
        for (a, &v) in d.iter().zip(&v) {
            let want = if v > 0.0 { v as f64 } else { v as f64 * 0.01 };
            assert!((a - want).abs() <= 1e-15, "{a} vs {want}");
        }
        Ok(())
    }

    /// erf by its Taylor series in f64 (an independent reference for |x| ≤ 5).
    fn erf_series(x: f64) -> f64 {
        let (mut term, mut sum) = (x, x);
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn gelu_values_and_gradients_match_the_analytic_forms() -> candle_core::Result<()> {
        let v: Vec<f32> = (-40..=40).map(|i| i as f32 * 0.1 + 0.013).chain([0.0, -0.0]).collect();
        let x = Var::new(v.as_slice(), &Device::Cpu)?;
        let y = gelu_erf(&x)?;
        let g = y.sum_all()?.backward()?;
        let (y, dx) = (y.to_vec1::<f32>()?, g.get(&x).unwrap().to_vec1::<f32>()?);
        for (i, &xv) in v.iter().enumerate() {
            let x = f64::from(xv);
            let cdf = 0.5 * (1.0 + erf_series(x / std::f64::consts::SQRT_2));
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let (want_y, want_dx) = (x * cdf, cdf + x * pdf);
            assert!(
                (f64::from(y[i]) - want_y).abs() <= 1e-6 * want_y.abs().max(1.0),
                "gelu({x}) = {} vs {want_y}",
                y[i]
            );
            assert!((f64::from(dx[i]) - want_dx).abs() <= 1e-6, "gelu'({x}) = {} vs {want_dx}", dx[i]);
        }
        Ok(())
    }
}
