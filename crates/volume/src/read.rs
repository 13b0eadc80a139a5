//! Reading NIfTI-1 (`.nii`, `.nii.gz`, `.hdr/.img`, gzipped pairs) and Analyze 7.5 pairs into `Volume`s.
//!
//! The header is parsed by the `nifti` crate (Analyze headers get NIfTI magic patched in first, with
//! their orientation fields cleared); voxel data is decoded here straight into one buffer so that a
//! short file is reported exactly (`VolumeError::Truncated`) and conversion runs in parallel.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::orientation::{affine_spacing, header_affine};
use crate::volume::{FileFormat, Geometry, Image, LabelMap, Source, Volume};
use crate::{Result, VolumeError};

/// Supported on-disk voxel types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// uint8
    U8,
    /// int8
    I8,
    /// int16
    I16,
    /// uint16
    U16,
    /// int32
    I32,
    /// uint32
    U32,
    /// int64
    I64,
    /// uint64
    U64,
    /// float32
    F32,
    /// float64
    F64,
}

impl DataType {
    /// From the NIfTI datatype code, or `None` when unsupported.
    pub fn from_code(code: i16) -> Option<Self> {
        Some(match code {
            2 => Self::U8,
            256 => Self::I8,
            4 => Self::I16,
            512 => Self::U16,
            8 => Self::I32,
            768 => Self::U32,
            1024 => Self::I64,
            1280 => Self::U64,
            16 => Self::F32,
            64 => Self::F64,
            _ => return None,
        })
    }
    /// Bytes per voxel.
    pub fn size(self) -> usize {
        match self {
            Self::U8 | Self::I8 => 1,
            Self::I16 | Self::U16 => 2,
            Self::I32 | Self::U32 | Self::F32 => 4,
            Self::I64 | Self::U64 | Self::F64 => 8,
        }
    }
    /// The conventional name.
    pub fn name(self) -> &'static str {
        match self {
            Self::U8 => "uint8",
            Self::I8 => "int8",
            Self::I16 => "int16",
            Self::U16 => "uint16",
            Self::I32 => "int32",
            Self::U32 => "uint32",
            Self::I64 => "int64",
            Self::U64 => "uint64",
            Self::F32 => "float32",
            Self::F64 => "float64",
        }
    }
    /// True for integer types.
    pub fn is_integer(self) -> bool {
        !matches!(self, Self::F32 | Self::F64)
    }
}

/// Voxel bytes as stored, with what is needed to decode them.
struct Raw {
    source: Source,
    geometry: Geometry,
    channels: usize,
    dtype: DataType,
    little_endian: bool,
    bytes: Vec<u8>,
    /// `Some((slope, inter))` when scl_slope asks for scaling other than the identity.
    scale: Option<(f64, f64)>,
}

/// Read an intensity image as f32 (scl_slope/scl_inter applied); NaN or infinite voxels are an error.
pub fn read_image(path: impl AsRef<Path>) -> Result<Image> {
    let img = read_image_unchecked(path)?;
    check_finite(&img)?;
    Ok(img)
}

/// Read an intensity image as f32 without rejecting non-finite voxels (for reports such as `inspect`).
pub fn read_image_unchecked(path: impl AsRef<Path>) -> Result<Image> {
    let raw = read_raw(path.as_ref())?;
    let data = to_f32(&raw);
    Ok(Volume { data, geometry: raw.geometry, channels: raw.channels, source: raw.source })
}

/// Read a label map as i32. Float files are accepted when every voxel is a whole number.
pub fn read_labels(path: impl AsRef<Path>) -> Result<LabelMap> {
    let path = path.as_ref();
    let raw = read_raw(path)?;
    let data = if raw.dtype.is_integer() && raw.scale.is_none() {
        to_i32_exact(&raw).ok_or_else(|| {
            VolumeError::format(path, format!("label values of type {} exceed the int32 range", raw.dtype.name()))
        })?
    } else {
        let f = to_f32(&raw);
        let mut out = Vec::with_capacity(f.len());
        for (idx, v) in f.iter().enumerate() {
            if !v.is_finite() || v.fract() != 0.0 || v.abs() > 2.0e9 {
                return Err(VolumeError::format(
                    path,
                    format!("not a label map: voxel {idx} holds {v}, labels must be whole numbers"),
                ));
            }
            out.push(*v as i32);
        }
        out
    };
    Ok(Volume { data, geometry: raw.geometry, channels: raw.channels, source: raw.source })
}

/// Read only the header of a file and return its source description, grid and channel count.
pub fn read_header(path: impl AsRef<Path>) -> Result<(Source, Geometry, usize)> {
    let path = path.as_ref();
    let files = resolve(path)?;
    let mut reader = open(&files.header)?;
    let parsed = parse_header(&files, &mut reader)?;
    Ok((parsed.source, parsed.geometry, parsed.channels))
}

/// Error unless every voxel is finite.
pub fn check_finite(img: &Image) -> Result<()> {
    let count = img.data.par_iter().filter(|v| !v.is_finite()).count();
    if count == 0 {
        return Ok(());
    }
    let idx = img.data.iter().position(|v| !v.is_finite()).unwrap_or(0);
    let d = img.geometry.dims;
    let n = img.geometry.len().max(1);
    let (c, r) = (idx / n, idx % n);
    let first = [r % d[0], (r / d[0]) % d[1], r / (d[0] * d[1]), c];
    Err(VolumeError::NonFinite { path: img.source.path.clone().unwrap_or_default(), count, first })
}

/// The header and data files behind a path.
struct Files {
    header: PathBuf,
    /// `None` for single-file NIfTI.
    data: Option<PathBuf>,
}

fn lower_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default()
}

fn swap_suffix(path: &Path, from: &str, to: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = &name[..name.len() - from.len()];
    let upper = name[name.len() - from.len()..].chars().any(|c| c.is_ascii_uppercase());
    path.with_file_name(format!("{stem}{}", if upper { to.to_uppercase() } else { to.to_string() }))
}

fn resolve(path: &Path) -> Result<Files> {
    let name = lower_name(path);
    if !path.exists() {
        return Err(VolumeError::io(path, std::io::Error::new(ErrorKind::NotFound, "no such file")));
    }
    let pair = |hdr: PathBuf, img_candidates: [PathBuf; 2]| -> Result<Files> {
        let data = img_candidates.iter().find(|p| p.exists()).cloned().ok_or_else(|| {
            VolumeError::format(
                &hdr,
                format!("image file of the pair is missing (looked for {})", img_candidates[0].display()),
            )
        })?;
        Ok(Files { header: hdr, data: Some(data) })
    };
    if name.ends_with(".nii") || name.ends_with(".nii.gz") {
        Ok(Files { header: path.to_path_buf(), data: None })
    } else if name.ends_with(".hdr") {
        pair(path.to_path_buf(), [swap_suffix(path, ".hdr", ".img"), swap_suffix(path, ".hdr", ".img.gz")])
    } else if name.ends_with(".hdr.gz") {
        pair(path.to_path_buf(), [swap_suffix(path, ".hdr.gz", ".img.gz"), swap_suffix(path, ".hdr.gz", ".img")])
    } else if name.ends_with(".img") || name.ends_with(".img.gz") {
        let suffix = if name.ends_with(".img") { ".img" } else { ".img.gz" };
        let hdrs = [swap_suffix(path, suffix, ".hdr"), swap_suffix(path, suffix, ".hdr.gz")];
        let header = hdrs.iter().find(|p| p.exists()).cloned().ok_or_else(|| {
            VolumeError::format(path, format!("header file of the pair is missing (looked for {})", hdrs[0].display()))
        })?;
        Ok(Files { header, data: Some(path.to_path_buf()) })
    } else {
        Err(VolumeError::format(path, "unknown file type: expected .nii, .nii.gz, .hdr/.img or .hdr.gz/.img.gz"))
    }
}

fn open(path: &Path) -> Result<Box<dyn Read + Send>> {
    let file = File::open(path).map_err(|e| VolumeError::io(path, e))?;
    let buf = BufReader::with_capacity(1 << 20, file);
    if lower_name(path).ends_with(".gz") {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(buf)))
    } else {
        Ok(Box::new(buf))
    }
}

/// Read until `buf` is full or the stream ends; returns bytes read. Decoding errors are reported.
fn fill(reader: &mut dyn Read, buf: &mut [u8], path: &Path) -> Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match reader.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // A gzip stream cut short surfaces as UnexpectedEof: report the truncation exactly.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(VolumeError::format(path, format!("cannot decode file data: {e}"))),
        }
    }
    Ok(done)
}

struct Parsed {
    source: Source,
    geometry: Geometry,
    channels: usize,
    dtype: DataType,
    offset: u64,
}

fn parse_header(files: &Files, reader: &mut dyn Read) -> Result<Parsed> {
    let path = &files.header;
    let mut hb = [0u8; 348];
    let got = fill(reader, &mut hb, path)?;
    if got < 4 {
        return Err(VolumeError::format(path, format!("file is empty or too short ({got} bytes) to hold a header")));
    }
    let le = i32::from_le_bytes([hb[0], hb[1], hb[2], hb[3]]);
    let be = i32::from_be_bytes([hb[0], hb[1], hb[2], hb[3]]);
    if le == 540 || be == 540 {
        return Err(VolumeError::Unsupported {
            path: path.clone(),
            what: "NIfTI-2 files (convert to NIfTI-1, e.g. with nibabel: nib.Nifti1Image(img.dataobj, img.affine))"
                .into(),
        });
    }
    if le != 348 && be != 348 {
        return Err(VolumeError::format(path, "not a NIfTI-1 or Analyze 7.5 file (sizeof_hdr is not 348)"));
    }
    if got < 348 {
        return Err(VolumeError::format(path, format!("header is truncated: {got} of 348 bytes")));
    }
    let magic = [hb[344], hb[345], hb[346], hb[347]];
    let format = match (&magic, files.data.is_some()) {
        (b"n+1\0", false) => FileFormat::Nifti1Single,
        (b"ni1\0", true) => FileFormat::Nifti1Pair,
        (b"n+1\0", true) | (b"ni1\0", false) => {
            return Err(VolumeError::format(
                path,
                "NIfTI magic does not match the file layout (single file vs .hdr/.img pair)",
            ))
        }
        (_, true) => FileFormat::Analyze75,
        (_, false) => return Err(VolumeError::format(path, "no NIfTI-1 magic in a .nii file")),
    };
    if format == FileFormat::Analyze75 {
        hb[344..348].copy_from_slice(b"ni1\0");
    }
    let mut h = nifti::NiftiHeader::from_reader(&hb[..])
        .map_err(|e| VolumeError::format(path, format!("invalid header: {e}")))?;
    if format == FileFormat::Analyze75 {
        // Analyze keeps orient/originator where NIfTI keeps qform/sform: they carry no NIfTI meaning.
        h.qform_code = 0;
        h.sform_code = 0;
        h.pixdim[0] = 1.0;
        h.scl_slope = 0.0;
        h.scl_inter = 0.0;
    }
    let ndim = usize::from(h.dim[0]);
    if !(1..=7).contains(&ndim) {
        return Err(VolumeError::format(path, format!("dim[0] = {} is not in 1..=7", h.dim[0])));
    }
    let mut dims = [1usize; 3];
    let mut channels = 1usize;
    for a in 1..=ndim {
        let d = usize::from(h.dim[a]);
        if d == 0 {
            return Err(VolumeError::format(path, format!("dim[{a}] is 0")));
        }
        if a <= 3 {
            dims[a - 1] = d;
        } else {
            channels *= d;
        }
    }
    let dtype = DataType::from_code(h.datatype).ok_or_else(|| VolumeError::Unsupported {
        path: path.clone(),
        what: format!(
            "datatype code {} (supported: uint8, int8, int16, uint16, int32, uint32, int64, uint64, float32, float64)",
            h.datatype
        ),
    })?;
    if h.bitpix != 0 && h.bitpix as usize != dtype.size() * 8 {
        return Err(VolumeError::format(path, format!("bitpix {} does not match datatype {}", h.bitpix, dtype.name())));
    }
    let vox = f64::from(h.vox_offset);
    let offset = match format {
        FileFormat::Nifti1Single => {
            if !vox.is_finite() || vox < 348.0 || vox.fract() != 0.0 {
                return Err(VolumeError::format(
                    path,
                    format!("vox_offset {vox} is invalid for a .nii file (must be a whole number ≥ 352)"),
                ));
            }
            vox as u64 - 348
        }
        _ => {
            if !vox.is_finite() || vox < 0.0 || vox.fract() != 0.0 {
                return Err(VolumeError::format(path, format!("vox_offset {vox} is invalid")));
            }
            vox as u64
        }
    };
    let (affine, _) = header_affine(&h);
    let mut spacing = [0.0; 3];
    let from_affine = affine_spacing(&affine);
    for a in 0..3 {
        let p = f64::from(h.pixdim[a + 1]).abs();
        spacing[a] = if p.is_finite() && p > 0.0 { p } else { from_affine[a] };
        if !(spacing[a].is_finite() && spacing[a] > 0.0) {
            return Err(VolumeError::format(
                path,
                format!("voxel spacing along axis {a} is {} (pixdim and affine give none)", spacing[a]),
            ));
        }
    }
    let source = Source { path: Some(path.clone()), format, datatype: dtype.name(), header: h };
    Ok(Parsed { source, geometry: Geometry { dims, spacing, affine }, channels, dtype, offset })
}

fn read_raw(path: &Path) -> Result<Raw> {
    let _span = tracing::debug_span!("read_volume", path = %path.display()).entered();
    let files = resolve(path)?;
    let mut reader = open(&files.header)?;
    let parsed = parse_header(&files, &mut *reader)?;
    let data_path = files.data.clone().unwrap_or_else(|| files.header.clone());
    let mut data_reader = match &files.data {
        Some(p) => open(p)?,
        None => reader,
    };
    let nvox = parsed.geometry.len().checked_mul(parsed.channels);
    let expected = nvox
        .and_then(|n| n.checked_mul(parsed.dtype.size()))
        .ok_or_else(|| VolumeError::format(&files.header, "header dimensions overflow the address space"))?;
    // Skip the extensions (or, for pairs, any leading bytes of the .img).
    let skipped = std::io::copy(&mut (&mut data_reader).take(parsed.offset), &mut std::io::sink())
        .map_err(|e| VolumeError::format(&data_path, format!("cannot decode file data: {e}")))?;
    let offset_total = parsed.offset + if files.data.is_none() { 348 } else { 0 };
    if skipped < parsed.offset {
        return Err(VolumeError::Truncated {
            path: data_path,
            expected: expected as u64,
            found: 0,
            offset: offset_total,
        });
    }
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(expected).map_err(|_| {
        VolumeError::format(&files.header, format!("cannot allocate {expected} bytes for the voxel data"))
    })?;
    bytes.resize(expected, 0);
    let found = fill(&mut *data_reader, &mut bytes, &data_path)?;
    if found < expected {
        return Err(VolumeError::Truncated {
            path: data_path,
            expected: expected as u64,
            found: found as u64,
            offset: offset_total,
        });
    }
    let h = &parsed.source.header;
    let slope = f64::from(h.scl_slope);
    let inter = f64::from(h.scl_inter);
    let scale = if slope != 0.0 && slope.is_finite() && inter.is_finite() && (slope != 1.0 || inter != 0.0) {
        Some((slope, inter))
    } else {
        None
    };
    let little_endian = h.endianness == nifti::Endianness::Little;
    Ok(Raw {
        source: parsed.source,
        geometry: parsed.geometry,
        channels: parsed.channels,
        dtype: parsed.dtype,
        little_endian,
        bytes,
        scale,
    })
}

const CHUNK: usize = 1 << 16;

macro_rules! convert {
    ($raw:expr, $out:expr, $t:ty, $n:expr, $map:expr) => {{
        let le = $raw.little_endian;
        $out.par_chunks_mut(CHUNK).zip($raw.bytes.par_chunks(CHUNK * $n)).for_each(|(o, b)| {
            for (dst, src) in o.iter_mut().zip(b.chunks_exact($n)) {
                let arr: [u8; $n] = src.try_into().unwrap_or([0; $n]);
                let v = if le { <$t>::from_le_bytes(arr) } else { <$t>::from_be_bytes(arr) };
                *dst = $map(v);
            }
        });
    }};
}

fn to_f32(raw: &Raw) -> Vec<f32> {
    let n = raw.bytes.len() / raw.dtype.size();
    let mut out = vec![0f32; n];
    match raw.scale {
        None => match raw.dtype {
            DataType::U8 => convert!(raw, out, u8, 1, |v: u8| f32::from(v)),
            DataType::I8 => convert!(raw, out, i8, 1, |v: i8| f32::from(v)),
            DataType::I16 => convert!(raw, out, i16, 2, |v: i16| f32::from(v)),
            DataType::U16 => convert!(raw, out, u16, 2, |v: u16| f32::from(v)),
            DataType::I32 => convert!(raw, out, i32, 4, |v: i32| v as f32),
            DataType::U32 => convert!(raw, out, u32, 4, |v: u32| v as f32),
            DataType::I64 => convert!(raw, out, i64, 8, |v: i64| v as f32),
            DataType::U64 => convert!(raw, out, u64, 8, |v: u64| v as f32),
            DataType::F32 => convert!(raw, out, f32, 4, |v: f32| v),
            DataType::F64 => convert!(raw, out, f64, 8, |v: f64| v as f32),
        },
        Some((s, i)) => match raw.dtype {
            DataType::U8 => convert!(raw, out, u8, 1, |v: u8| (f64::from(v) * s + i) as f32),
            DataType::I8 => convert!(raw, out, i8, 1, |v: i8| (f64::from(v) * s + i) as f32),
            DataType::I16 => convert!(raw, out, i16, 2, |v: i16| (f64::from(v) * s + i) as f32),
            DataType::U16 => convert!(raw, out, u16, 2, |v: u16| (f64::from(v) * s + i) as f32),
            DataType::I32 => convert!(raw, out, i32, 4, |v: i32| (f64::from(v) * s + i) as f32),
            DataType::U32 => convert!(raw, out, u32, 4, |v: u32| (f64::from(v) * s + i) as f32),
            DataType::I64 => convert!(raw, out, i64, 8, |v: i64| (v as f64 * s + i) as f32),
            DataType::U64 => convert!(raw, out, u64, 8, |v: u64| (v as f64 * s + i) as f32),
            DataType::F32 => convert!(raw, out, f32, 4, |v: f32| (f64::from(v) * s + i) as f32),
            DataType::F64 => convert!(raw, out, f64, 8, |v: f64| (v * s + i) as f32),
        },
    }
    out
}

/// Integer voxels to i32; `None` when a value does not fit.
fn to_i32_exact(raw: &Raw) -> Option<Vec<i32>> {
    let n = raw.bytes.len() / raw.dtype.size();
    let mut out = vec![0i32; n];
    // Out-of-range values become i64::MIN sentinels, checked below.
    let mut wide = false;
    match raw.dtype {
        DataType::U8 => convert!(raw, out, u8, 1, |v: u8| i32::from(v)),
        DataType::I8 => convert!(raw, out, i8, 1, |v: i8| i32::from(v)),
        DataType::I16 => convert!(raw, out, i16, 2, |v: i16| i32::from(v)),
        DataType::U16 => convert!(raw, out, u16, 2, |v: u16| i32::from(v)),
        DataType::I32 => convert!(raw, out, i32, 4, |v: i32| v),
        _ => wide = true,
    }
    if wide {
        let mut big = vec![0i64; n];
        match raw.dtype {
            DataType::U32 => convert!(raw, big, u32, 4, |v: u32| i64::from(v)),
            DataType::I64 => convert!(raw, big, i64, 8, |v: i64| v),
            DataType::U64 => convert!(raw, big, u64, 8, |v: u64| i64::try_from(v).unwrap_or(i64::MAX)),
            _ => {}
        }
        for (o, b) in out.iter_mut().zip(big) {
            *o = i32::try_from(b).ok()?;
        }
    }
    Some(out)
}
