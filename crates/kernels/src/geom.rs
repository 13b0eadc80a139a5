//! [`Conv3dGeometry`]: the sizes of one 3-D convolution, validated once and shared by every backend.

use crate::KernelsError;

/// The full shape description of a 3-D convolution (dilation 1, groups 1), in PyTorch's layouts:
/// input `(batch, in_channels, D, H, W)`, weight `(out_channels, in_channels, kD, kH, kW)`, output
/// `(batch, out_channels, oD, oH, oW)` with `o = (i + 2·padding − k) / stride + 1`.
///
/// The same geometry describes the transposed convolution whose *output* is this convolution's
/// input (see [`crate::conv_transpose3d()`]). Build it with [`Conv3dGeometry::new`], which checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv3dGeometry {
    /// Batch size N.
    pub batch: usize,
    /// Input channels Ci.
    pub in_channels: usize,
    /// Output channels Co.
    pub out_channels: usize,
    /// Input spatial size (D, H, W).
    pub input: [usize; 3],
    /// Kernel size (kD, kH, kW).
    pub kernel: [usize; 3],
    /// Stride per axis (≥ 1).
    pub stride: [usize; 3],
    /// Zero padding per axis, on both sides.
    pub padding: [usize; 3],
}

impl Conv3dGeometry {
    /// Checks the sizes: no zero sizes, strides ≥ 1, kernel no larger than the padded input.
    pub fn new(
        batch: usize,
        in_channels: usize,
        out_channels: usize,
        input: [usize; 3],
        kernel: [usize; 3],
        stride: [usize; 3],
        padding: [usize; 3],
    ) -> Result<Self, KernelsError> {
        let op = "conv3d";
        let g = Self { batch, in_channels, out_channels, input, kernel, stride, padding };
        if batch == 0 || in_channels == 0 || out_channels == 0 {
            return Err(KernelsError::Shape {
                op,
                msg: format!(
                    "batch ({batch}), input channels ({in_channels}) and output channels \
                     ({out_channels}) must be positive"
                ),
            });
        }
        if stride.contains(&0) {
            return Err(KernelsError::Config {
                op,
                msg: format!("stride must be at least 1 on every axis, got {stride:?}"),
            });
        }
        for a in 0..3 {
            if input[a] == 0 || kernel[a] == 0 {
                return Err(KernelsError::Shape {
                    op,
                    msg: format!("input size {input:?} and kernel size {kernel:?} must be positive"),
                });
            }
            if input[a] + 2 * padding[a] < kernel[a] {
                return Err(KernelsError::Shape {
                    op,
                    msg: format!(
                        "kernel {kernel:?} is larger than the padded input (input {input:?}, \
                         padding {padding:?})"
                    ),
                });
            }
        }
        Ok(g)
    }

    /// Output spatial size (oD, oH, oW).
    pub fn output(&self) -> [usize; 3] {
        let mut o = [0; 3];
        for a in 0..3 {
            o[a] = (self.input[a] + 2 * self.padding[a] - self.kernel[a]) / self.stride[a] + 1;
        }
        o
    }

    /// Number of kernel taps kD·kH·kW.
    pub fn kernel_volume(&self) -> usize {
        self.kernel.iter().product()
    }

    /// Number of input voxels per channel D·H·W.
    pub fn input_volume(&self) -> usize {
        self.input.iter().product()
    }

    /// Number of output voxels per channel oD·oH·oW.
    pub fn output_volume(&self) -> usize {
        self.output().iter().product()
    }

    /// Elements in the input tensor.
    pub fn input_len(&self) -> usize {
        self.batch * self.in_channels * self.input_volume()
    }

    /// Elements in the weight tensor.
    pub fn weight_len(&self) -> usize {
        self.out_channels * self.in_channels * self.kernel_volume()
    }

    /// Elements in the output tensor.
    pub fn output_len(&self) -> usize {
        self.batch * self.out_channels * self.output_volume()
    }

    /// Multiply-adds × 2 of the forward pass (each gradient costs the same).
    pub fn flops(&self) -> f64 {
        2.0 * self.batch as f64
            * self.out_channels as f64
            * self.in_channels as f64
            * self.kernel_volume() as f64
            * self.output_volume() as f64
    }

    /// Input shape `[N, Ci, D, H, W]`.
    pub fn input_shape(&self) -> [usize; 5] {
        let [d, h, w] = self.input;
        [self.batch, self.in_channels, d, h, w]
    }

    /// Weight shape `[Co, Ci, kD, kH, kW]`.
    pub fn weight_shape(&self) -> [usize; 5] {
        let [d, h, w] = self.kernel;
        [self.out_channels, self.in_channels, d, h, w]
    }

    /// Output shape `[N, Co, oD, oH, oW]`.
    pub fn output_shape(&self) -> [usize; 5] {
        let [d, h, w] = self.output();
        [self.batch, self.out_channels, d, h, w]
    }

    /// Checks slice lengths against this geometry before a CPU kernel touches them.
    pub(crate) fn check_lens(
        &self,
        op: &'static str,
        lens: [(&'static str, usize, usize); 3],
    ) -> Result<(), KernelsError> {
        for (what, got, want) in lens {
            if got != want {
                return Err(KernelsError::Shape {
                    op,
                    msg: format!("{what} has {got} elements, the geometry {self:?} needs {want}"),
                });
            }
        }
        Ok(())
    }
}
