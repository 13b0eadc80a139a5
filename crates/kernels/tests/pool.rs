//! `max_pool2` against its definition (PyTorch's `max_pool3d(kernel 2, stride 2)`): each output is its
//! window's largest value, and the gradient of `Σ y·r` reaches exactly the window maxima — with
//! distinct values (f32, and bf16 through an exact round trip), with ties (the first maximum in
//! (d, h, w) order takes the whole gradient, as PyTorch's scan `val > max || isnan(val)` does), and
//! with NaNs (the output is NaN and the NaN takes the gradient). Errors for odd sizes and ranks.

use candle_core::{DType, Device, Tensor, Var};

/// The definition: for every window, the chosen input index (first maximum in window order, or the
/// last NaN), the output values and the input gradient of `Σ y·r`.
fn reference(x: &[f32], [n, c, d, h, w]: [usize; 5], r: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (mut y, mut dx) = (Vec::new(), vec![0f32; x.len()]);
    for nc in 0..n * c {
        for k in 0..d / 2 {
            for j in 0..h / 2 {
                for i in 0..w / 2 {
                    let idx =
                        |t: usize| ((nc * d + 2 * k + (t >> 2)) * h + 2 * j + ((t >> 1) & 1)) * w + 2 * i + (t & 1);
                    let mut best = idx(0);
                    for t in 1..8 {
                        if x[idx(t)] > x[best] || x[idx(t)].is_nan() {
                            best = idx(t);
                        }
                    }
                    dx[best] = r[y.len()];
                    y.push(x[best]);
                }
            }
        }
    }
    (y, dx)
}

/// `max_pool2` of `xv` shaped `dims` in `dtype`: the output and the gradient of `Σ y·r`, as f32.
fn run(xv: &[f32], dims: [usize; 5], r: &[f32], dtype: DType) -> (Vec<f32>, Vec<f32>) {
    let x = Var::from_tensor(&Tensor::from_vec(xv.to_vec(), &dims, &Device::Cpu).unwrap().to_dtype(dtype).unwrap())
        .unwrap();
    let y = magseg_kernels::max_pool2(&x).unwrap();
    assert_eq!(y.dims(), &[dims[0], dims[1], dims[2] / 2, dims[3] / 2, dims[4] / 2]);
    let rt = Tensor::from_vec(r.to_vec(), y.dims(), &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
    let g = (&y * &rt).unwrap().sum_all().unwrap().backward().unwrap();
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap();
    (flat(&y), flat(g.get(&x).unwrap()))
}

/// Bitwise equality that treats NaN as equal to NaN.
fn same(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y || (x.is_nan() && y.is_nan()))
}

#[test]
fn distinct_values_ties_and_nans_follow_pytorch() {
    let dims = [2usize, 3, 4, 6, 8];
    let len: usize = dims.iter().product();
    let r: Vec<f32> = (1..=len / 8).map(|v| v as f32).collect();
    // A permutation of 0..len (distinct, exact in bf16 up to 256: scaled into bf16's exact range below).
    let distinct: Vec<f32> = (0..len).map(|i| ((i * 7919) % len) as f32).collect();
    // Few levels: most windows hold ties, several all-equal (like a zero background).
    let ties: Vec<f32> = (0..len).map(|i| ((i * 31 + i / 7) % 3) as f32 - 1.0).collect();
    let constant = vec![0.5f32; len];
    let mut nans = distinct.clone();
    for i in (0..len).step_by(13) {
        nans[i] = f32::NAN;
    }
    for (what, xv) in [("distinct", &distinct), ("ties", &ties), ("constant", &constant), ("nans", &nans)] {
        let (want_y, want_dx) = reference(xv, dims, &r);
        let (y, dx) = run(xv, dims, &r, DType::F32);
        assert!(same(&y, &want_y), "{what}: values");
        assert!(same(&dx, &want_dx), "{what}: gradient");
    }
    // The constant volume: every window's gradient at its first element (d, h, w even).
    let (_, dx) = run(&constant, dims, &r, DType::F32);
    for (i, g) in dx.iter().enumerate() {
        let (x, t) = (i % dims[4], i / dims[4]);
        let (yy, t) = (t % dims[3], t / dims[3]);
        let z = t % dims[2];
        assert_eq!(*g != 0.0, x % 2 == 0 && yy % 2 == 0 && z % 2 == 0, "constant: element {i}");
    }
    // bf16: values exact in bf16 (integers up to 256, and the tie levels), so the same choices.
    let small: Vec<f32> = distinct.iter().map(|v| (v % 251.0) - 125.0).collect();
    let r_small: Vec<f32> = r.iter().map(|v| v % 200.0).collect();
    for (what, xv) in [("bf16 small", &small), ("bf16 ties", &ties)] {
        let (want_y, want_dx) = reference(xv, dims, &r_small);
        let (y, dx) = run(xv, dims, &r_small, DType::BF16);
        assert!(same(&y, &want_y), "{what}: values");
        assert!(same(&dx, &want_dx), "{what}: gradient");
    }
}

#[test]
fn other_dtypes_take_the_composed_path_and_bad_shapes_are_errors() {
    let xv: Vec<f32> = (0..2 * 4 * 4 * 4).map(|i| ((i * 37) % 128) as f32).collect();
    let x = Tensor::from_vec(xv.clone(), (1, 2, 4, 4, 4), &Device::Cpu).unwrap();
    let y64 = magseg_kernels::max_pool2(&x.to_dtype(DType::F64).unwrap()).unwrap();
    let (want, _) = reference(&xv, [1, 2, 4, 4, 4], &[0.0; 16]);
    assert_eq!(y64.flatten_all().unwrap().to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap(), want);
    let odd = Tensor::zeros((1, 1, 4, 5, 4), DType::F32, &Device::Cpu).unwrap();
    assert!(magseg_kernels::max_pool2(&odd).is_err());
    assert!(magseg_kernels::max_pool2(&Tensor::zeros((4, 4, 4), DType::F32, &Device::Cpu).unwrap()).is_err());
    for empty in [(1, 1, 0, 2, 2), (0, 1, 2, 2, 2)] {
        assert!(magseg_kernels::max_pool2(&Tensor::zeros(empty, DType::F32, &Device::Cpu).unwrap()).is_err());
    }
}
