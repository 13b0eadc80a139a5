//! Bad shapes, dtypes and configurations return typed errors, never panics.

mod common;

use candle_core::{DType, Device, Tensor};
use common::Rng;
use magseg_kernels::{conv3d, conv_transpose3d, cpu, instance_norm, Conv3dConfig, Conv3dGeometry, KernelsError};

/// candle errors only keep the message of a wrapped [`KernelsError`]: the variant's wording.
fn kind(e: &candle_core::Error) -> &'static str {
    let m = e.to_string();
    let table = [
        ("must have rank", "rank"),
        ("invalid configuration", "config"),
        ("dtypes differ", "dtype-mismatch"),
        ("is not supported", "dtype"),
        ("no implementation on device", "device"),
    ];
    table.iter().find(|(needle, _)| m.contains(needle)).map_or("shape", |(_, k)| k)
}

#[test]
fn conv3d_rejects_bad_arguments() {
    let mut rng = Rng(5);
    let x = rng.tensor(&[1, 2, 4, 4, 4]);
    let w = rng.tensor(&[3, 2, 3, 3, 3]);
    let cfg = Conv3dConfig::default();
    let err = |r: candle_core::Result<Tensor>| kind(&r.expect_err("must fail"));

    let x4 = x.squeeze(0).unwrap();
    assert_eq!(err(conv3d(&x4, &w, None, cfg)), "rank");
    let w_bad = rng.tensor(&[3, 5, 3, 3, 3]);
    assert_eq!(err(conv3d(&x, &w_bad, None, cfg)), "shape");
    let big = rng.tensor(&[3, 2, 5, 5, 5]);
    assert_eq!(err(conv3d(&x, &big, None, cfg)), "shape");
    let stride0 = Conv3dConfig { stride: [1, 0, 1], padding: [0; 3] };
    assert_eq!(err(conv3d(&x, &w, None, stride0)), "config");
    let bias = rng.tensor(&[4]);
    assert_eq!(err(conv3d(&x, &w, Some(&bias), cfg)), "shape");
    let xf64 = x.to_dtype(DType::F64).unwrap();
    assert_eq!(err(conv3d(&xf64, &w, None, cfg)), "dtype-mismatch");
    let wf64 = w.to_dtype(DType::F64).unwrap();
    assert_eq!(err(conv3d(&xf64, &wf64, None, cfg)), "dtype");
    // Mixed f32 / bf16 is a clear error (never a silent conversion, never a panic), both ways and
    // for the bias; the message names both dtypes.
    let xbf = x.to_dtype(DType::BF16).unwrap();
    let wbf = w.to_dtype(DType::BF16).unwrap();
    for (a, b) in [(&xbf, &w), (&x, &wbf)] {
        let e = conv3d(a, b, None, cfg).expect_err("mixed dtypes must fail");
        assert_eq!(kind(&e), "dtype-mismatch");
        assert!(e.to_string().contains("bf16") && e.to_string().contains("f32"), "{e}");
    }
    let bias3 = rng.tensor(&[3]);
    assert_eq!(err(conv3d(&xbf, &wbf, Some(&bias3), cfg)), "dtype-mismatch");
    assert!(conv3d(&xbf, &wbf, Some(&bias3.to_dtype(DType::BF16).unwrap()), cfg).is_ok());
    let e = conv3d(&xf64, &wf64, None, cfg).unwrap_err().to_string();
    assert!(e.contains("f32, bf16"), "the message lists the supported dtypes: {e}");
    let xu = Tensor::zeros((1, 2, 4, 4, 4), DType::U8, &Device::Cpu).unwrap();
    let wu = Tensor::zeros((3, 2, 3, 3, 3), DType::U8, &Device::Cpu).unwrap();
    assert_eq!(err(conv3d(&xu, &wu, None, cfg)), "dtype");
}

#[test]
fn conv_transpose3d_and_instance_norm_reject_bad_arguments() {
    let mut rng = Rng(6);
    let x = rng.tensor(&[1, 2, 3, 3, 3]);
    let w = rng.tensor(&[2, 4, 2, 2, 2]);
    let err = |r: candle_core::Result<Tensor>| kind(&r.expect_err("must fail"));
    let w_bad = rng.tensor(&[3, 4, 2, 2, 2]);
    assert_eq!(err(conv_transpose3d(&x, &w_bad, None, [2; 3])), "shape");
    assert_eq!(err(conv_transpose3d(&x, &w, None, [0, 2, 2])), "config");
    let bias = rng.tensor(&[2]);
    assert_eq!(err(conv_transpose3d(&x, &w, Some(&bias), [2; 3])), "shape");
    assert!(conv_transpose3d(&x, &w, Some(&rng.tensor(&[4])), [2; 3]).is_ok());
    let wbf = w.to_dtype(DType::BF16).unwrap();
    assert_eq!(err(conv_transpose3d(&x, &wbf, None, [2; 3])), "dtype-mismatch");

    let v = rng.tensor(&[4, 5]);
    assert_eq!(err(instance_norm(&v, None, None, 1e-5)), "rank");
    assert_eq!(err(instance_norm(&x, None, None, -1.0)), "config");
    let g = rng.tensor(&[3]);
    assert_eq!(err(instance_norm(&x, Some(&g), None, 1e-5)), "shape");
    let empty_batch = Tensor::zeros((0, 2, 3, 3, 3), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(err(instance_norm(&empty_batch, None, None, 1e-5)), "shape");
}

#[test]
fn slice_kernels_check_lengths() {
    let g = Conv3dGeometry::new(1, 2, 3, [4; 3], [3; 3], [1; 3], [1; 3]).unwrap();
    let x = vec![0.0; g.input_len()];
    let w = vec![0.0; g.weight_len() - 1];
    let mut y = vec![0.0; g.output_len()];
    assert!(matches!(cpu::conv3d_forward_f32(&g, &x, &w, &mut y), Err(KernelsError::Shape { .. })));
    assert!(Conv3dGeometry::new(0, 2, 3, [4; 3], [3; 3], [1; 3], [1; 3]).is_err());
    assert!(Conv3dGeometry::new(1, 2, 3, [4; 3], [3; 3], [1, 1, 0], [1; 3]).is_err());
}
