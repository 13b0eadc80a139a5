//! Shared synthetic cases for the integration tests.

#![allow(dead_code)]

use magseg_patch::CaseData;

/// Intensity of voxel (i, j, k) in channel c: injective over the grid, never zero.
pub fn value(i: usize, j: usize, k: usize, c: usize) -> f32 {
    1.0 + i as f32 + 100.0 * j as f32 + 10_000.0 * k as f32 + 1_000_000.0 * c as f32
}

/// Label as a function of the channel-0 intensity, so alignment can be checked after augmentation.
pub fn label_of(v: f32) -> u8 {
    ((v as u64) % 3) as u8
}

/// A case whose labels are `label_of(channel 0)` everywhere.
pub fn functional_case(dims: [usize; 3], channels: usize) -> CaseData {
    let n: usize = dims.iter().product();
    let mut image = Vec::with_capacity(n * channels);
    for c in 0..channels {
        for k in 0..dims[2] {
            for j in 0..dims[1] {
                for i in 0..dims[0] {
                    image.push(value(i, j, k, c));
                }
            }
        }
    }
    let labels = image[..n].iter().map(|&v| label_of(v)).collect();
    CaseData::new("functional", dims, channels, image, labels).unwrap()
}

/// A case with a small foreground cube at `at` (size 3) inside a brain (non-zero) box, zero outside.
pub fn sparse_case(dims: [usize; 3], at: [usize; 3]) -> CaseData {
    let n: usize = dims.iter().product();
    let mut image = vec![0.0; n * 2];
    let mut labels = vec![0u8; n];
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                let v = i + dims[0] * (j + dims[1] * k);
                if i > 2 && j > 2 && k > 2 {
                    image[v] = 1.0 + (v % 7) as f32;
                    image[v + n] = 2.0;
                }
                let inside = (0..3).all(|a| [i, j, k][a] >= at[a] && [i, j, k][a] < at[a] + 3);
                if inside {
                    labels[v] = 2;
                }
            }
        }
    }
    CaseData::new("sparse", dims, 2, image, labels).unwrap()
}
