//! Long sums in two stages, for candle's CUDA reductions, which run one thread block per output
//! value (a whole-tensor mean of a 96³ volume would run on one SM): the summed axis is split into
//! rows of at least 1024 values, summed first. Same value up to f32 rounding order.
//! (magseg-kernels has the same helper; this crate depends on candle-core only, DESIGN.md §1.)

use candle_core::Tensor;

use crate::Result;

/// The largest divisor of `len` that leaves ≥ 1024 values per row, or 1 (no split).
fn split_rows(len: usize) -> usize {
    if len < 2048 {
        return 1;
    }
    (1..=len / 1024).rev().find(|r| len % r == 0).unwrap_or(1)
}

/// The sum over the last dimension of `x`, which it removes.
pub(crate) fn sum_last(x: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let Some((&len, lead)) = dims.split_last() else {
        return Ok(x.clone());
    };
    let rows = split_rows(len);
    if rows == 1 {
        return Ok(x.sum(lead.len())?);
    }
    let split: Vec<usize> = lead.iter().copied().chain([rows, len / rows]).collect();
    Ok(x.reshape(split)?.sum(lead.len() + 1)?.sum(lead.len())?)
}

/// The mean of every element of `x`, a 0-d tensor.
pub(crate) fn mean_all(x: &Tensor) -> Result<Tensor> {
    let n = x.elem_count();
    Ok(sum_last(&x.flatten_all()?)?.affine(1.0 / n as f64, 0.0)?)
}

/// The maximum over dimension 1 (kept, size 1) of `x`, detached: an elementwise maximum of the
/// channel slices (C − 1 parallel passes, where candle's reduction over a 4-value axis launches
/// one 4-thread block per voxel).
pub(crate) fn channel_max(x: &Tensor) -> Result<Tensor> {
    let x = x.detach();
    let mut m = x.narrow(1, 0, 1)?;
    for k in 1..x.dim(1)? {
        m = m.maximum(&x.narrow(1, k, 1)?)?;
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn two_stage_sums_and_channel_max_equal_the_plain_ones() -> Result<()> {
        // Small integers: all partial sums are exact, so any order gives the same value.
        let v: Vec<f32> = (0..2 * 3 * 4096).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
        let x = Tensor::from_vec(v.clone(), (2, 3, 4096), &Device::Cpu)?;
        assert_eq!(split_rows(4096), 4);
        assert_eq!(sum_last(&x)?.to_vec2::<f32>()?, x.sum(2)?.to_vec2::<f32>()?);
        let mean = mean_all(&x)?.to_scalar::<f32>()?;
        assert_eq!(mean, v.iter().sum::<f32>() / v.len() as f32);
        let y = Tensor::from_vec(v, (2, 3, 8, 16, 32), &Device::Cpu)?;
        assert_eq!(
            channel_max(&y)?.flatten_all()?.to_vec1::<f32>()?,
            y.max_keepdim(1)?.flatten_all()?.to_vec1::<f32>()?
        );
        Ok(())
    }
}
