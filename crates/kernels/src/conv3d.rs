//! `conv3d` and its three custom ops: forward, backward-data and backward-weight.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};

use crate::check::{check_channel_vec, cpu_f32_or_bf16, dims5, f32_data, same_dtype_device};
use crate::{add_channel_bias, cpu, Conv3dGeometry, CudaConvPath, KernelsError};

/// Stride and zero padding of a 3-D convolution (dilation 1, groups 1), per axis (D, H, W).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv3dConfig {
    /// Step of the kernel per axis (≥ 1).
    pub stride: [usize; 3],
    /// Zeros added on both sides of each axis.
    pub padding: [usize; 3],
}

impl Default for Conv3dConfig {
    fn default() -> Self {
        Self { stride: [1; 3], padding: [0; 3] }
    }
}

/// 3-D convolution (cross-correlation, as PyTorch's `conv3d`): `x (N, Ci, D, H, W)`,
/// `w (Co, Ci, kD, kH, kW)`, optional `bias (Co,)`; returns `(N, Co, oD, oH, oW)` with
/// `o = (i + 2·padding − k) / stride + 1`. Differentiable in `x`, `w` and `bias`.
///
/// Bad shapes, dtypes (mixed, or neither f32 nor bf16) or configurations return an error wrapping
/// [`KernelsError`]. Supported: f32 and bf16 on the CPU (bf16 computed in f32, result rounded to
/// bf16), and on CUDA devices with the `cuda` feature (bf16 with f32 accumulation).
pub fn conv3d(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, cfg: Conv3dConfig) -> candle_core::Result<Tensor> {
    conv3d_with_path(x, w, bias, cfg, CudaConvPath::Auto)
}

/// [`conv3d()`] with an explicit CUDA implementation for the op and its gradients (tests,
/// benchmarks; the CPU ignores `path`).
pub fn conv3d_with_path(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    cfg: Conv3dConfig,
    path: CudaConvPath,
) -> candle_core::Result<Tensor> {
    let _span = tracing::debug_span!("conv3d", x = ?x.dims(), w = ?w.dims(), ?path).entered();
    let g = conv3d_geometry(x, w, bias, cfg)?;
    let y = x.contiguous()?.apply_op2(&w.contiguous()?, Conv3d { geometry: g, path })?;
    match bias {
        Some(b) => add_channel_bias(&y, b),
        None => Ok(y),
    }
}

/// Validates the arguments of [`conv3d()`] and returns the geometry.
fn conv3d_geometry(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    cfg: Conv3dConfig,
) -> Result<Conv3dGeometry, KernelsError> {
    let op = "conv3d";
    let [n, ci, d, h, wd] = dims5(op, "input", x)?;
    let [co, wci, kd, kh, kw] = dims5(op, "weight", w)?;
    same_dtype_device(op, x, w)?;
    if wci != ci {
        return Err(KernelsError::Shape {
            op,
            msg: format!("input has {ci} channels but the weight {:?} expects {wci}", w.dims()),
        });
    }
    if let Some(b) = bias {
        check_channel_vec(op, "bias", b, co, x, true)?;
    }
    Conv3dGeometry::new(n, ci, co, [d, h, wd], [kd, kh, kw], cfg.stride, cfg.padding)
}

/// Output buffer helper: runs `f` on a fresh zeroed f32 buffer of `len` elements.
pub(crate) fn run_f32(
    len: usize,
    shape: [usize; 5],
    f: impl FnOnce(&mut [f32]) -> Result<(), KernelsError>,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let mut out = vec![0.0f32; len];
    f(&mut out)?;
    Ok((CpuStorage::F32(out), Shape::from(shape.to_vec())))
}

/// The forward custom op of [`conv3d()`]: arguments (input, weight), result the output (no bias).
/// Its gradient uses [`Conv3dBackwardData`] and [`Conv3dBackwardWeight`].
#[derive(Debug, Clone, Copy)]
pub struct Conv3d {
    /// The sizes this op was built for; the operands must match them.
    pub geometry: Conv3dGeometry,
    /// The CUDA implementation (ignored on the CPU).
    pub path: CudaConvPath,
}

impl Conv3d {
    /// The op for `geometry`, with the CUDA implementation chosen by `MAGSEG_CONV_CUDA`.
    pub fn new(geometry: Conv3dGeometry) -> Self {
        Self { geometry, path: CudaConvPath::Auto }
    }
}

impl CustomOp2 for Conv3d {
    fn name(&self) -> &'static str {
        "conv3d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = &self.geometry;
        let _span = tracing::trace_span!("conv3d_cpu_fwd", ?g).entered();
        cpu_f32_or_bf16(self.name(), (s1, l1), (s2, l2), |s1, l1, s2, l2| {
            let x = f32_data(self.name(), s1, l1, &g.input_shape())?;
            let w = f32_data(self.name(), s2, l2, &g.weight_shape())?;
            run_f32(g.output_len(), g.output_shape(), |y| cpu::conv3d_forward_f32(g, x, w, y))
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
        let _span = tracing::trace_span!("conv3d_cuda_fwd", g = ?self.geometry).entered();
        crate::cuda::forward(self.name(), &self.geometry, self.path, (s1, l1), (s2, l2))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = self.geometry;
        let grad = grad.contiguous()?;
        // Only what the graph needs: no input gradient for an image, none for frozen weights.
        let path = self.path;
        let dx =
            x.track_op().then(|| grad.apply_op2_no_bwd(w, &Conv3dBackwardData { geometry: g, path })).transpose()?;
        let dw =
            w.track_op().then(|| x.apply_op2_no_bwd(&grad, &Conv3dBackwardWeight { geometry: g, path })).transpose()?;
        Ok((dx, dw))
    }
}

/// Backward-data of [`Conv3d`]: arguments (output gradient, weight), result the input gradient
/// (a transposed convolution; also the forward pass of [`crate::conv_transpose3d()`]).
#[derive(Debug, Clone, Copy)]
pub struct Conv3dBackwardData {
    /// The sizes of the forward convolution.
    pub geometry: Conv3dGeometry,
    /// The CUDA implementation (ignored on the CPU).
    pub path: CudaConvPath,
}

impl Conv3dBackwardData {
    /// The op for `geometry`, with the CUDA implementation chosen by `MAGSEG_CONV_CUDA`.
    pub fn new(geometry: Conv3dGeometry) -> Self {
        Self { geometry, path: CudaConvPath::Auto }
    }
}

impl CustomOp2 for Conv3dBackwardData {
    fn name(&self) -> &'static str {
        "conv3d-backward-data"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = &self.geometry;
        let _span = tracing::trace_span!("conv3d_cpu_bwd_data", ?g).entered();
        cpu_f32_or_bf16(self.name(), (s1, l1), (s2, l2), |s1, l1, s2, l2| {
            let dy = f32_data(self.name(), s1, l1, &g.output_shape())?;
            let w = f32_data(self.name(), s2, l2, &g.weight_shape())?;
            run_f32(g.input_len(), g.input_shape(), |dx| cpu::conv3d_backward_data_f32(g, dy, w, dx))
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
        let _span = tracing::trace_span!("conv3d_cuda_bwd_data", g = ?self.geometry).entered();
        crate::cuda::backward_data(self.name(), &self.geometry, self.path, (s1, l1), (s2, l2))
    }
}

/// Backward-weight of [`Conv3d`]: arguments (input, output gradient), result the weight gradient.
#[derive(Debug, Clone, Copy)]
pub struct Conv3dBackwardWeight {
    /// The sizes of the forward convolution.
    pub geometry: Conv3dGeometry,
    /// The CUDA implementation (ignored on the CPU).
    pub path: CudaConvPath,
}

impl Conv3dBackwardWeight {
    /// The op for `geometry`, with the CUDA implementation chosen by `MAGSEG_CONV_CUDA`.
    pub fn new(geometry: Conv3dGeometry) -> Self {
        Self { geometry, path: CudaConvPath::Auto }
    }
}

impl CustomOp2 for Conv3dBackwardWeight {
    fn name(&self) -> &'static str {
        "conv3d-backward-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = &self.geometry;
        let _span = tracing::trace_span!("conv3d_cpu_bwd_weight", ?g).entered();
        cpu_f32_or_bf16(self.name(), (s1, l1), (s2, l2), |s1, l1, s2, l2| {
            let x = f32_data(self.name(), s1, l1, &g.input_shape())?;
            let dy = f32_data(self.name(), s2, l2, &g.output_shape())?;
            run_f32(g.weight_len(), g.weight_shape(), |dw| cpu::conv3d_backward_weight_f32(g, x, dy, dw))
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
        let _span = tracing::trace_span!("conv3d_cuda_bwd_weight", g = ?self.geometry).entered();
        crate::cuda::backward_weight(self.name(), &self.geometry, self.path, (s1, l1), (s2, l2))
    }
}
