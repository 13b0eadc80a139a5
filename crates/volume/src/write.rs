//! Writing NIfTI-1 (`.nii.gz` or `.nii`) atomically, with the reference image's geometry and codes.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::{ArrayView, ShapeBuilder};

use crate::orientation::{affine_to_quaternion, header_affine};
use crate::volume::{Image, LabelMap, Volume};
use crate::{Result, VolumeError};

/// Write a label map: uint8 when every value fits, else int16, else int32.
/// `inputs` are files that must never be overwritten (the images the labels were made from).
pub fn write_labels(path: impl AsRef<Path>, labels: &LabelMap, inputs: &[PathBuf]) -> Result<()> {
    let (lo, hi) = labels.data.iter().fold((0i32, 0i32), |(l, h), &v| (l.min(v), h.max(v)));
    if lo >= 0 && hi <= 255 {
        let d: Vec<u8> = labels.data.iter().map(|&v| v as u8).collect();
        write_typed(path.as_ref(), labels, &d, nifti::NiftiType::Uint8, inputs)
    } else if lo >= i32::from(i16::MIN) && hi <= i32::from(i16::MAX) {
        let d: Vec<i16> = labels.data.iter().map(|&v| v as i16).collect();
        write_typed(path.as_ref(), labels, &d, nifti::NiftiType::Int16, inputs)
    } else {
        write_typed(path.as_ref(), labels, &labels.data, nifti::NiftiType::Int32, inputs)
    }
}

/// Write an image (intensities or probabilities) as float32.
pub fn write_image(path: impl AsRef<Path>, image: &Image, inputs: &[PathBuf]) -> Result<()> {
    write_typed(path.as_ref(), image, &image.data, nifti::NiftiType::Float32, inputs)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn write_typed<T, U>(
    path: &Path,
    vol: &Volume<U>,
    data: &[T],
    dtype: nifti::NiftiType,
    inputs: &[PathBuf],
) -> Result<()>
where
    T: nifti::DataElement + bytemuck::Pod,
{
    let _span = tracing::debug_span!("write_volume", path = %path.display()).entered();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let lower = name.to_lowercase();
    let ext = if lower.ends_with(".nii.gz") {
        ".nii.gz"
    } else if lower.ends_with(".nii") {
        ".nii"
    } else {
        return Err(VolumeError::Invalid(format!("{}: output must end in .nii.gz or .nii", path.display())));
    };
    let mut protected: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    if let Some(p) = &vol.source.path {
        protected.push(p);
    }
    if protected.iter().any(|p| same_file(p, path)) {
        return Err(VolumeError::Invalid(format!("refusing to overwrite input file {}", path.display())));
    }
    let header = output_header(vol, dtype);
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(VolumeError::Invalid(format!("output folder {} does not exist", dir.display())));
    }
    // No dots before the extension: the nifti writer re-derives extensions from the path.
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".magseg_tmp_{}_{n}{ext}", std::process::id()));
    let [nx, ny, nz] = vol.geometry.dims;
    let result = if vol.channels == 1 {
        ArrayView::from_shape((nx, ny, nz).f(), data)
            .map(|a| nifti::writer::WriterOptions::new(&tmp).reference_header(&header).write_nifti(&a))
    } else {
        ArrayView::from_shape((nx, ny, nz, vol.channels).f(), data)
            .map(|a| nifti::writer::WriterOptions::new(&tmp).reference_header(&header).write_nifti(&a))
    };
    let cleanup = |e: String| {
        let _ = fs::remove_file(&tmp);
        VolumeError::Invalid(format!("{}: cannot write: {e}", path.display()))
    };
    result.map_err(|e| cleanup(e.to_string()))?.map_err(|e| cleanup(e.to_string()))?;
    if let Ok(f) = fs::File::open(&tmp) {
        let _ = f.sync_all();
    }
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        VolumeError::io(path, e)
    })
}

/// The header to write: the source's codes and qform are kept when the geometry is unchanged;
/// otherwise sform and qform are both set from the volume's affine.
fn output_header<U>(vol: &Volume<U>, dtype: nifti::NiftiType) -> nifti::NiftiHeader {
    let src = &vol.source.header;
    let mut h = src.clone();
    h.endianness = nifti::Endianness::native();
    h.datatype = dtype as i16;
    h.scl_slope = 1.0;
    h.scl_inter = 0.0;
    h.cal_min = 0.0;
    h.cal_max = 0.0;
    h.intent_code = 0;
    h.extents = 0;
    h.regular = b'r';
    let _ = h.set_description_str("magseg");
    let (src_affine, _) = header_affine(src);
    let same_dims = usize::from(src.dim[1]) == vol.geometry.dims[0]
        && usize::from(src.dim[2]) == vol.geometry.dims[1]
        && usize::from(src.dim[3]) == vol.geometry.dims[2];
    let unchanged = same_dims
        && (0..3).all(|r| (0..4).all(|c| (src_affine[r][c] - vol.geometry.affine[r][c]).abs() < 1e-6))
        && (src.sform_code > 0 || src.qform_code > 0);
    if !unchanged {
        let m = &vol.geometry.affine;
        let code = src.sform_code.max(src.qform_code).max(2);
        h.sform_code = code;
        h.qform_code = code;
        h.srow_x = [m[0][0] as f32, m[0][1] as f32, m[0][2] as f32, m[0][3] as f32];
        h.srow_y = [m[1][0] as f32, m[1][1] as f32, m[1][2] as f32, m[1][3] as f32];
        h.srow_z = [m[2][0] as f32, m[2][1] as f32, m[2][2] as f32, m[2][3] as f32];
        let (b, c, d, qfac) = affine_to_quaternion(m);
        h.quatern_b = b as f32;
        h.quatern_c = c as f32;
        h.quatern_d = d as f32;
        h.quatern_x = m[0][3] as f32;
        h.quatern_y = m[1][3] as f32;
        h.quatern_z = m[2][3] as f32;
        h.pixdim[0] = qfac as f32;
    }
    for a in 0..3 {
        h.pixdim[a + 1] = vol.geometry.spacing[a] as f32;
    }
    if h.xyzt_units == 0 {
        h.xyzt_units = 2; // millimetres
    }
    h
}
