//! The three conv3d passes ([`Pass`]) and [`conv_op!`], which declares a candle custom op running one.

use candle_core::{CpuStorage, Layout, Shape};

use crate::check::{cpu_f32_or_bf16, f32_data};
use crate::{cpu, Conv3dGeometry, KernelsError};

/// One pass of a [`Conv3dGeometry`]: its operands, its result, and its CPU and GPU implementations.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pass {
    /// `(x, w)` → `y`.
    Forward,
    /// `(dy, w)` → `dx`.
    BackwardData,
    /// `(x, dy)` → `dw`.
    BackwardWeight,
}

/// An f32 CPU pass on contiguous slices (operands, then the result, overwritten).
type CpuPass = fn(&Conv3dGeometry, &[f32], &[f32], &mut [f32]) -> Result<(), KernelsError>;

/// A GPU pass (module `cuda`): op name for errors, geometry, implementation, operands.
#[cfg(feature = "cuda")]
type CudaPass = fn(
    &'static str,
    &Conv3dGeometry,
    crate::CudaConvPath,
    (&candle_core::CudaStorage, &Layout),
    (&candle_core::CudaStorage, &Layout),
) -> candle_core::Result<(candle_core::CudaStorage, Shape)>;

impl Pass {
    /// The name errors of this pass carry (that of the conv3d custom op running it).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Forward => "conv3d",
            Self::BackwardData => "conv3d-backward-data",
            Self::BackwardWeight => "conv3d-backward-weight",
        }
    }

    /// Shapes of the first operand, the second operand and the result.
    fn shapes(self, g: &Conv3dGeometry) -> [[usize; 5]; 3] {
        match self {
            Self::Forward => [g.input_shape(), g.weight_shape(), g.output_shape()],
            Self::BackwardData => [g.output_shape(), g.weight_shape(), g.input_shape()],
            Self::BackwardWeight => [g.input_shape(), g.output_shape(), g.weight_shape()],
        }
    }

    /// Runs the pass on the CPU (f32, or bf16 through f32) into a fresh result.
    pub(crate) fn cpu(
        self,
        g: &Conv3dGeometry,
        a: (&CpuStorage, &Layout),
        b: (&CpuStorage, &Layout),
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (span, f): (_, CpuPass) = match self {
            Self::Forward => (tracing::trace_span!("conv3d_cpu_fwd", ?g), cpu::conv3d_forward_f32),
            Self::BackwardData => (tracing::trace_span!("conv3d_cpu_bwd_data", ?g), cpu::conv3d_backward_data_f32),
            Self::BackwardWeight => {
                (tracing::trace_span!("conv3d_cpu_bwd_weight", ?g), cpu::conv3d_backward_weight_f32)
            }
        };
        let _span = span.entered();
        let (op, [da, db, dout]) = (self.name(), self.shapes(g));
        cpu_f32_or_bf16(op, a, b, |s1, l1, s2, l2| {
            let a = f32_data(op, s1, l1, &da)?;
            let b = f32_data(op, s2, l2, &db)?;
            let mut out = vec![0.0f32; dout.iter().product()];
            f(g, a, b, &mut out)?;
            Ok((CpuStorage::F32(out), Shape::from(dout.to_vec())))
        })
    }

    /// Runs the pass on the GPU with the implementation `path`.
    #[cfg(feature = "cuda")]
    pub(crate) fn cuda(
        self,
        g: &Conv3dGeometry,
        path: crate::CudaConvPath,
        a: (&candle_core::CudaStorage, &Layout),
        b: (&candle_core::CudaStorage, &Layout),
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        let (span, f): (_, CudaPass) = match self {
            Self::Forward => (tracing::trace_span!("conv3d_cuda_fwd", ?g), crate::cuda::forward),
            Self::BackwardData => (tracing::trace_span!("conv3d_cuda_bwd_data", ?g), crate::cuda::backward_data),
            Self::BackwardWeight => (tracing::trace_span!("conv3d_cuda_bwd_weight", ?g), crate::cuda::backward_weight),
        };
        let _span = span.entered();
        f(self.name(), g, path, a, b)
    }
}

/// Declares a conv custom op: a `Copy` struct of a [`Conv3dGeometry`] and a [`crate::CudaConvPath`]
/// with a `new`, and its [`candle_core::CustomOp2`] impl named `$name` that runs [`Pass`] `$pass` on
/// the CPU or GPU (inside the spans `$cpu_span` / `$cuda_span` when given). With `grads`, the op is
/// differentiable: the input gradient is op `$dx` applied to `($dx1, $dx2)`, the weight gradient op
/// `$dw` applied to `($dw1, $dw2)`, all ops of the same geometry and path, each computed only when
/// the graph tracks that operand (no input gradient for an image, none for frozen weights).
macro_rules! conv_op {
    (
        $(#[$doc:meta])*
        $ty:ident: $name:literal, $pass:expr
        $(, spans($cpu_span:literal, $cuda_span:literal))?
        $(, grads($x:ident, $w:ident, $grad:ident) {
            dx = $dx:ident($dx1:ident, $dx2:ident),
            dw = $dw:ident($dw1:ident, $dw2:ident) $(,)?
        })? $(,)?
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $ty {
            /// The sizes of the convolution this op is a pass of; the operands must match them.
            pub geometry: $crate::Conv3dGeometry,
            /// The CUDA implementation (ignored on the CPU).
            pub path: $crate::CudaConvPath,
        }

        impl $ty {
            /// The op for `geometry`, with the CUDA implementation chosen by `MAGSEG_CONV_CUDA`.
            pub fn new(geometry: $crate::Conv3dGeometry) -> Self {
                Self { geometry, path: $crate::CudaConvPath::Auto }
            }
        }

        impl candle_core::CustomOp2 for $ty {
            fn name(&self) -> &'static str {
                $name
            }

            fn cpu_fwd(
                &self,
                s1: &candle_core::CpuStorage,
                l1: &candle_core::Layout,
                s2: &candle_core::CpuStorage,
                l2: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
                $(let _span = tracing::trace_span!($cpu_span, g = ?self.geometry).entered();)?
                $pass.cpu(&self.geometry, (s1, l1), (s2, l2))
            }

            #[cfg(feature = "cuda")]
            fn cuda_fwd(
                &self,
                s1: &candle_core::CudaStorage,
                l1: &candle_core::Layout,
                s2: &candle_core::CudaStorage,
                l2: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
                $(let _span = tracing::trace_span!($cuda_span, g = ?self.geometry).entered();)?
                $pass.cuda(&self.geometry, self.path, (s1, l1), (s2, l2))
            }

            $(
                fn bwd(
                    &self,
                    $x: &candle_core::Tensor,
                    $w: &candle_core::Tensor,
                    _res: &candle_core::Tensor,
                    $grad: &candle_core::Tensor,
                ) -> candle_core::Result<(Option<candle_core::Tensor>, Option<candle_core::Tensor>)> {
                    let (geometry, path) = (self.geometry, self.path);
                    let $grad = &$grad.contiguous()?;
                    let dx = $x.track_op().then(|| $dx1.apply_op2_no_bwd($dx2, &$dx { geometry, path })).transpose()?;
                    let dw = $w.track_op().then(|| $dw1.apply_op2_no_bwd($dw2, &$dw { geometry, path })).transpose()?;
                    Ok((dx, dw))
                }
            )?
        }
    };
}
pub(crate) use conv_op;
