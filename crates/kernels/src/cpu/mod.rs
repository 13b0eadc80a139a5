//! CPU implementations on plain slices (f32), independent of candle so that other backends can
//! share the shape logic and tests can call them directly.

mod col2vol;
mod conv;
mod corr;
mod gemm;
mod implicit;
mod pointwise;
mod wgrad;

pub use conv::{conv3d_backward_data_f32, conv3d_forward_f32};
pub use wgrad::conv3d_backward_weight_f32;
