//! `leaky_relu` as one custom op with its gradient written out: one pass forward and one backward
//! (candle_nn's `max(x, 0) + slope · min(x, 0)` takes 5 passes forward and ~20 in autograd's backward,
//! each a kernel launch and an allocation on a GPU).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::check::{cpu_f32_or_bf16, is_supported, supported_device};
use crate::KernelsError;

/// Leaky ReLU, PyTorch's `F.leaky_relu`: `x` where `x > 0`, else `slope · x`; its gradient is `1`
/// where `x > 0`, else `slope` (at `x = 0` too, as PyTorch). f32 and bf16 tensors (bf16: computed in f32,
/// rounded once) run as one custom op on the CPU or a CUDA device; other float dtypes fall back to
/// candle ops (`max(x, 0) + slope · min(x, 0)`, whose gradient at exactly 0 is `(1 + slope) / 2`).
pub fn leaky_relu(x: &Tensor, slope: f64) -> candle_core::Result<Tensor> {
    let op = "leaky_relu";
    if !slope.is_finite() {
        return Err(KernelsError::Config { op, msg: format!("the slope must be finite, got {slope}") }.into());
    }
    if !(is_supported(x.dtype()) && supported_device(op, x.device()).is_ok()) {
        let zeros = x.zeros_like()?;
        return x.maximum(&zeros)? + (x.minimum(&zeros)? * slope)?;
    }
    x.contiguous()?.apply_op1(LeakyRelu { slope: slope as f32 })
}

/// Elements per rayon work item of the CPU passes.
const CPU_RUN: usize = 1 << 15;

/// `y = x > 0 ? x : slope·x`.
struct LeakyRelu {
    slope: f32,
}

/// `dx = x > 0 ? dy : slope·dy` of `(x, dy)`.
struct LeakyReluGrad {
    slope: f32,
}

/// The contiguous f32 values of a CPU storage.
fn f32s<'a>(op: &'static str, s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32], KernelsError> {
    crate::check::f32_data(op, s, l, l.dims())
}

impl CustomOp1 for LeakyRelu {
    fn name(&self) -> &'static str {
        "leaky_relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let slope = self.slope;
        let run = |x: &[f32]| -> Vec<f32> {
            let mut y = vec![0f32; x.len()];
            y.par_chunks_mut(CPU_RUN).zip(x.par_chunks(CPU_RUN)).for_each(|(y, x)| {
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = if x > 0.0 { x } else { x * slope };
                }
            });
            y
        };
        let shape = l.shape().clone();
        match s.dtype() {
            DType::F32 => Ok((CpuStorage::F32(run(f32s(self.name(), s, l)?)), shape)),
            DType::BF16 => {
                let x = s.to_dtype(l, DType::F32)?;
                let y = CpuStorage::F32(run(f32s(self.name(), &x, &Layout::contiguous(shape.clone()))?));
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
        crate::cuda::activation::leaky_relu_fwd(self.slope, (s, l))
    }

    fn bwd(&self, x: &Tensor, _: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&grad.contiguous()?, &LeakyReluGrad { slope: self.slope })?))
    }
}

impl CustomOp2 for LeakyReluGrad {
    fn name(&self) -> &'static str {
        "leaky_relu_grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (op, slope) = (self.name(), self.slope);
        cpu_f32_or_bf16(op, (s1, l1), (s2, l2), |s1, l1, s2, l2| {
            let (x, dy) = (f32s(op, s1, l1)?, f32s(op, s2, l2)?);
            if x.len() != dy.len() {
                return Err(
                    KernelsError::Layout { op, msg: format!("{} values and {} gradients", x.len(), dy.len()) }.into()
                );
            }
            let mut dx = vec![0f32; x.len()];
            dx.par_chunks_mut(CPU_RUN).zip(x.par_chunks(CPU_RUN).zip(dy.par_chunks(CPU_RUN))).for_each(
                |(dx, (x, dy))| {
                    for i in 0..dx.len() {
                        dx[i] = if x[i] > 0.0 { dy[i] } else { dy[i] * slope };
                    }
                },
            );
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
        crate::cuda::activation::leaky_relu_bwd(self.slope, (s1, l1), (s2, l2))
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
}
