//! Sums over long axes in two stages, for candle's CUDA reductions, which run one thread block per
//! output value: a whole-tensor sum runs on one of the GPU's ~132 SMs, a per-(sample, channel) sum of
//! an activation on a handful. Splitting the axis into `(rows, cols)` and summing `cols` first gives
//! one block per row; the second sum is short. The value is the same up to f32 rounding order.

use candle_core::{Result, Tensor};

/// The fewest values one first-stage block sums (candle's blocks have up to 1024 threads).
const MIN_COLS: usize = 1024;

/// How many rows to split an axis of `len` values into: the largest divisor of `len` that leaves at
/// least [`MIN_COLS`] values per row, or 1 (no split) when `len < 2 · MIN_COLS` or no divisor fits.
pub fn split_rows(len: usize) -> usize {
    if len < 2 * MIN_COLS {
        return 1;
    }
    (1..=len / MIN_COLS).rev().find(|r| len % r == 0).unwrap_or(1)
}

/// The sum over the last dimension of `x` (which it removes), in two stages when that is long.
pub fn sum_last(x: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    let Some((&len, lead)) = dims.split_last() else {
        return x.sum_all();
    };
    let rows = split_rows(len);
    if rows == 1 {
        return x.sum(lead.len());
    }
    let mut split = lead.to_vec();
    split.extend([rows, len / rows]);
    x.reshape(split)?.sum(lead.len() + 1)?.sum(lead.len())
}

/// The sum of every element of `x`, a 0-d tensor, in two stages when `x` is large.
pub fn sum_all(x: &Tensor) -> Result<Tensor> {
    sum_last(&x.flatten_all()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn split_rows_keeps_long_rows_and_divides_exactly() {
        assert_eq!(split_rows(2047), 1);
        assert_eq!(split_rows(2048), 2);
        assert_eq!(split_rows(96 * 96 * 96), 864); // 884736 = 864 · 1024
        assert_eq!(split_rows(4099), 1); // prime: no split
        for len in [2048, 3000, 4096, 10007 * 2, 884736, 768 * 3072] {
            let r = split_rows(len);
            assert_eq!(len % r, 0);
            assert!(r == 1 || len / r >= MIN_COLS, "{len}: {r} rows");
        }
    }

    #[test]
    fn two_stage_sums_equal_integer_sums() -> Result<()> {
        // Small integers: every partial sum is exact in f32, so both orders give the same value.
        for shape in [vec![3usize, 5000], vec![2, 4, 4096], vec![7], vec![2, 3, 4099]] {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
            let x = Tensor::from_vec(v.clone(), shape.as_slice(), &Device::Cpu)?;
            let last = *shape.last().unwrap();
            let want: Vec<f32> = v.chunks(last).map(|c| c.iter().sum()).collect();
            assert_eq!(sum_last(&x)?.flatten_all()?.to_vec1::<f32>()?, want, "{shape:?}");
            assert_eq!(sum_all(&x)?.to_scalar::<f32>()?, v.iter().sum::<f32>(), "{shape:?}");
        }
        Ok(())
    }
}
