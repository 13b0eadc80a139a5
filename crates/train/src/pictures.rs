//! Report pictures: an SVG heat map of scores (modality subsets × regions) and a PNG overlay of the
//! reference and predicted contours on one axial slice, plus helpers to pick and cut that slice.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::{Result, TrainError};

/// Reference contour colour (green).
const REFERENCE_RGB: [u8; 3] = [0, 220, 0];
/// Prediction contour colour (red).
const PREDICTION_RGB: [u8; 3] = [255, 40, 40];
/// Colour where both contours meet (yellow).
const BOTH_RGB: [u8; 3] = [255, 220, 0];
/// The heat map's colour for 1 (0 is white).
const HIGH_RGB: [f64; 3] = [8.0, 48.0, 107.0];
/// The heat map's colour for NaN.
const NAN_RGB: RGBColor = RGBColor(190, 190, 190);

/// Draws an SVG heat map at `path`: one row per entry of `rows` (modality subsets such as
/// `"flair+t1ce"`), one column per entry of `cols` (regions such as `"WT"`), `values[r][c]` in
/// `[0, 1]` colouring each cell from white (0) to dark blue (1) (values outside are clamped for the
/// colour; NaN is grey) and printed in the cell to 2 decimals, with row and column labels and
/// `title` on top.
///
/// The file is written through a temporary file in the same directory and renamed. Errors:
/// [`TrainError::Data`] when `values` is not `rows.len()` × `cols.len()`, [`TrainError::Plot`] when
/// drawing fails, [`TrainError::Io`] when writing fails.
pub fn heatmap_svg(path: &Path, title: &str, rows: &[String], cols: &[String], values: &[Vec<f64>]) -> Result<()> {
    if values.len() != rows.len() {
        return Err(TrainError::Data(format!(
            "heat map {}: {} rows of values for {} row labels",
            path.display(),
            values.len(),
            rows.len()
        )));
    }
    if let Some((r, row)) = values.iter().enumerate().find(|(_, row)| row.len() != cols.len()) {
        return Err(TrainError::Data(format!(
            "heat map {}: row {r} has {} values for {} column labels",
            path.display(),
            row.len(),
            cols.len()
        )));
    }
    let err = |e: &dyn std::fmt::Display| TrainError::Plot { path: path.to_path_buf(), reason: e.to_string() };
    let chars = |s: &String| s.chars().count() as u32;
    let cell_w = cols.iter().map(|c| chars(c) * 8 + 16).max().unwrap_or(0).max(70);
    let cell_h = 32u32;
    let left = rows.iter().map(|r| chars(r) * 8 + 24).max().unwrap_or(0).max(60);
    let top = 70u32;
    let n_rows = u32::try_from(rows.len()).map_err(|e| err(&e))?;
    let n_cols = u32::try_from(cols.len()).map_err(|e| err(&e))?;
    let width = (left + n_cols * cell_w + 20).max(title.chars().count() as u32 * 10 + 40);
    let height = top + n_rows * cell_h + 20;

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let centred = Pos::new(HPos::Center, VPos::Center);
        let title_style = TextStyle::from(("sans-serif", 20).into_font()).pos(centred);
        root.draw(&Text::new(title.to_string(), (width as i32 / 2, 20), title_style)).map_err(|e| err(&e))?;
        let label_style = TextStyle::from(("sans-serif", 15).into_font());
        let (left, top, cell_w, cell_h) = (left as i32, top as i32, cell_w as i32, cell_h as i32);
        for (c, name) in cols.iter().enumerate() {
            let x = left + c as i32 * cell_w + cell_w / 2;
            root.draw(&Text::new(name.clone(), (x, top - 14), label_style.pos(centred))).map_err(|e| err(&e))?;
        }
        for (r, (name, row)) in rows.iter().zip(values).enumerate() {
            let y0 = top + r as i32 * cell_h;
            let right_aligned = Pos::new(HPos::Right, VPos::Center);
            root.draw(&Text::new(name.clone(), (left - 8, y0 + cell_h / 2), label_style.pos(right_aligned)))
                .map_err(|e| err(&e))?;
            for (c, &v) in row.iter().enumerate() {
                let x0 = left + c as i32 * cell_w;
                let (fill, ink) = cell_colours(v);
                root.draw(&Rectangle::new([(x0, y0), (x0 + cell_w, y0 + cell_h)], fill.filled()))
                    .map_err(|e| err(&e))?;
                root.draw(&Rectangle::new([(x0, y0), (x0 + cell_w, y0 + cell_h)], WHITE.stroke_width(1)))
                    .map_err(|e| err(&e))?;
                let text = format!("{v:.2}");
                let style = TextStyle::from(("sans-serif", 14).into_font()).color(&ink).pos(centred);
                root.draw(&Text::new(text, (x0 + cell_w / 2, y0 + cell_h / 2), style)).map_err(|e| err(&e))?;
            }
        }
        root.present().map_err(|e| err(&e))?;
    }
    write_atomically(path, svg.as_bytes())
}

/// The fill and text colours of a heat-map cell holding `v`.
fn cell_colours(v: f64) -> (RGBColor, RGBColor) {
    if v.is_nan() {
        return (NAN_RGB, BLACK);
    }
    let t = v.clamp(0.0, 1.0);
    let mix = |i: usize| (255.0 + (HIGH_RGB[i] - 255.0) * t).round() as u8;
    let ink = if t > 0.55 { WHITE } else { BLACK };
    (RGBColor(mix(0), mix(1), mix(2)), ink)
}

/// Writes a PNG of one axial slice at `path`: `image` in grey, the contour of `reference` in green
/// (0,220,0), the contour of `prediction` in red (255,40,40) and yellow where both contours meet,
/// every pixel repeated `scale` × `scale` times (nearest neighbour).
///
/// The slice is laid out `image[x + width * y]` (as [`axial_slice`] returns it); pixel `(x, y)` is
/// drawn in picture row `height - 1 - y`, so y goes *up* the picture (anterior is up for RAS data).
/// Grey levels use a robust window: the 1st–99th percentiles of the non-zero finite pixels map to
/// 0–255 (clamped); zero and non-finite pixels are black. A contour pixel is a mask pixel with a
/// 4-neighbour outside the mask or outside the slice.
///
/// The file is written through a temporary file in the same directory and renamed. Errors:
/// [`TrainError::Data`] when a length is not `width * height`, a size is zero or the picture would
/// be too large; [`TrainError::Io`] when writing fails.
pub fn overlay_png(
    path: &Path,
    image: &[f32],
    width: usize,
    height: usize,
    reference: &[bool],
    prediction: &[bool],
    scale: usize,
) -> Result<()> {
    let data_err = |what: String| TrainError::Data(format!("overlay {}: {what}", path.display()));
    if width == 0 || height == 0 || scale == 0 {
        return Err(data_err(format!("empty picture ({width} x {height}, scale {scale})")));
    }
    let n = width.checked_mul(height).ok_or_else(|| data_err(format!("slice {width} x {height} is too large")))?;
    for (name, len) in [("image", image.len()), ("reference", reference.len()), ("prediction", prediction.len())] {
        if len != n {
            return Err(data_err(format!("{name} has {len} pixels, the slice {width} x {height} has {n}")));
        }
    }
    let too_large = || data_err(format!("{width} x {height} scaled by {scale} is too large"));
    let out_w = width.checked_mul(scale).ok_or_else(too_large)?;
    let out_h = height.checked_mul(scale).ok_or_else(too_large)?;
    let png_w = u32::try_from(out_w).map_err(|_| too_large())?;
    let png_h = u32::try_from(out_h).map_err(|_| too_large())?;
    let bytes = out_w.checked_mul(out_h).and_then(|p| p.checked_mul(3)).ok_or_else(too_large)?;

    let grey = grey_levels(image);
    let ref_contour = contour(reference, width, height);
    let pred_contour = contour(prediction, width, height);
    let colour = |i: usize| match (ref_contour[i], pred_contour[i]) {
        (true, true) => BOTH_RGB,
        (true, false) => REFERENCE_RGB,
        (false, true) => PREDICTION_RGB,
        (false, false) => [grey[i]; 3],
    };
    let mut rgb = Vec::with_capacity(bytes);
    for row in 0..out_h {
        let y = height - 1 - row / scale;
        for col in 0..out_w {
            rgb.extend_from_slice(&colour(col / scale + width * y));
        }
    }

    let mut encoded = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut encoded, png_w, png_h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let png_err = |e: png::EncodingError| TrainError::Io { path: path.to_path_buf(), source: png_io_error(e) };
        let mut writer = encoder.write_header().map_err(png_err)?;
        writer.write_image_data(&rgb).map_err(png_err)?;
        writer.finish().map_err(png_err)?;
    }
    write_atomically(path, &encoded)
}

/// The PNG encoder's error as an `io::Error`.
fn png_io_error(e: png::EncodingError) -> std::io::Error {
    match e {
        png::EncodingError::IoError(io) => io,
        other => std::io::Error::other(other),
    }
}

/// Grey level (0–255) of each pixel: the 1st–99th percentiles of the non-zero finite pixels map to
/// 0–255; zero and non-finite pixels are 0. When the window is empty every non-zero pixel is 128.
fn grey_levels(image: &[f32]) -> Vec<u8> {
    let mut nonzero: Vec<f32> = image.iter().copied().filter(|v| v.is_finite() && *v != 0.0).collect();
    if nonzero.is_empty() {
        return vec![0; image.len()];
    }
    nonzero.sort_unstable_by(f32::total_cmp);
    let at = |q: f64| nonzero[((nonzero.len() - 1) as f64 * q).round() as usize];
    let (lo, hi) = (at(0.01), at(0.99));
    image
        .iter()
        .map(|&v| {
            if !v.is_finite() || v == 0.0 {
                0
            } else if hi > lo {
                ((v - lo) / (hi - lo) * 255.0).clamp(0.0, 255.0).round() as u8
            } else {
                128
            }
        })
        .collect()
}

/// The contour of a `width` × `height` mask (`mask[x + width * y]`): the mask pixels with a
/// 4-neighbour outside the mask or outside the slice. Pixels beyond `mask.len()` count as outside.
fn contour(mask: &[bool], width: usize, height: usize) -> Vec<bool> {
    let inside = |x: usize, y: usize| mask.get(x + width * y).copied().unwrap_or(false);
    let mut out = vec![false; mask.len()];
    for y in 0..height {
        for x in 0..width {
            let i = x + width * y;
            if i >= mask.len() || !mask[i] {
                continue;
            }
            let border = x == 0 || y == 0 || x + 1 == width || y + 1 == height;
            out[i] = border || !inside(x - 1, y) || !inside(x + 1, y) || !inside(x, y - 1) || !inside(x, y + 1);
        }
    }
    out
}

/// The axial slice index `k` (third axis; data laid out `i + ni * (j + nj * k)` for
/// `dims = [ni, nj, nk]`) holding the most mask voxels; ties go to the lowest `k`, and an empty mask
/// (or one of zero size) gives the middle slice `nk / 2`. Voxels beyond `mask.len()` count as empty.
pub fn tumour_slice(mask: &[bool], dims: [usize; 3]) -> usize {
    let middle = dims[2] / 2;
    let plane = match dims[0].checked_mul(dims[1]) {
        Some(p) if p > 0 => p,
        _ => return middle,
    };
    let mut best = (0usize, middle);
    for (k, chunk) in mask.chunks(plane).take(dims[2]).enumerate() {
        let count = chunk.iter().filter(|&&b| b).count();
        if count > best.0 {
            best = (count, k);
        }
    }
    best.1
}

/// Plane `k` of a volume laid out `i + ni * (j + nj * k)` (`dims = [ni, nj, nk]`), as a slice of
/// `width = dims[0]`, `height = dims[1]` laid out `x + width * y`. Returns an empty `Vec` when `k` is
/// not below `dims[2]` or `data` is too short to hold the plane.
pub fn axial_slice<T: Copy>(data: &[T], dims: [usize; 3], k: usize) -> Vec<T> {
    if k >= dims[2] {
        return Vec::new();
    }
    let Some(plane) = dims[0].checked_mul(dims[1]) else { return Vec::new() };
    let Some(start) = plane.checked_mul(k) else { return Vec::new() };
    data.get(start..start + plane).map(<[T]>::to_vec).unwrap_or_default()
}

/// Writes `bytes` to a temporary file next to `path` and renames it onto `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().ok_or_else(|| TrainError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp: PathBuf = path.with_file_name(tmp_name);
    let written = (|| {
        let mut file = BufWriter::new(fs::File::create(&tmp)?);
        file.write_all(bytes)?;
        file.into_inner().map_err(|e| e.into_error())?.sync_all()
    })();
    if let Err(source) = written {
        let _ = fs::remove_file(&tmp);
        return Err(TrainError::Io { path: tmp, source });
    }
    fs::rename(&tmp, path).map_err(|source| {
        let _ = fs::remove_file(&tmp);
        TrainError::Io { path: path.to_path_buf(), source }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `width` × `height` mask of the rectangle `x0..=x1`, `y0..=y1`.
    fn rect(width: usize, height: usize, (x0, x1): (usize, usize), (y0, y1): (usize, usize)) -> Vec<bool> {
        (0..width * height).map(|i| (x0..=x1).contains(&(i % width)) && (y0..=y1).contains(&(i / width))).collect()
    }

    #[test]
    fn contour_of_a_filled_square_is_its_border_ring() {
        let (w, h) = (7, 6);
        let mask = rect(w, h, (1, 4), (1, 4));
        let got = contour(&mask, w, h);
        for y in 0..h {
            for x in 0..w {
                let inside = (1..=4).contains(&x) && (1..=4).contains(&y);
                let ring = inside && (x == 1 || x == 4 || y == 1 || y == 4);
                assert_eq!(got[x + w * y], ring, "({x}, {y})");
            }
        }
        assert_eq!(got.iter().filter(|&&b| b).count(), 12);
    }

    #[test]
    fn contour_counts_the_slice_border_as_outside() {
        let got = contour(&[true; 9], 3, 3);
        assert_eq!(got, vec![true, true, true, true, false, true, true, true, true]);
    }

    #[test]
    fn tumour_slice_picks_the_fullest_plane() {
        let dims = [3, 2, 5];
        let mut mask = vec![false; 30];
        mask[6] = true; // k = 1: one voxel
        for i in 18..21 {
            mask[i] = true; // k = 3: three voxels
        }
        mask[24] = true;
        mask[25] = true;
        mask[26] = true; // k = 4: three voxels too; the tie goes to k = 3
        assert_eq!(tumour_slice(&mask, dims), 3);
        mask[7] = true;
        mask[8] = true;
        mask[9] = true; // k = 1 now has four
        assert_eq!(tumour_slice(&mask, dims), 1);
    }

    #[test]
    fn tumour_slice_of_an_empty_mask_is_the_middle() {
        assert_eq!(tumour_slice(&[false; 30], [3, 2, 5]), 2);
        assert_eq!(tumour_slice(&[], [0, 2, 6]), 3);
    }

    #[test]
    fn axial_slice_cuts_plane_k() {
        let dims = [3, 2, 4];
        let data: Vec<u32> = (0..24).collect();
        assert_eq!(axial_slice(&data, dims, 2), vec![12, 13, 14, 15, 16, 17]);
        assert!(axial_slice(&data, dims, 4).is_empty());
        assert!(axial_slice(&data[..20], dims, 3).is_empty());
    }

    #[test]
    fn overlay_png_draws_both_contours_upscaled_with_y_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("overlay.png");
        let (w, h, scale) = (8usize, 6usize, 3usize);
        let image: Vec<f32> = (0..w * h).map(|i| i as f32 + 1.0).collect();
        let reference = rect(w, h, (1, 4), (1, 3));
        let prediction = rect(w, h, (3, 6), (2, 4));
        overlay_png(&path, &image, w, h, &reference, &prediction, scale).unwrap();

        let bytes = fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let mut reader = png::Decoder::new(fs::File::open(&path).unwrap()).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width as usize, info.height as usize), (w * scale, h * scale));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        let pixel = |x: usize, y: usize| {
            // Slice pixel (x, y) is drawn at picture row height-1-y; check the middle of its block.
            let (row, col) = ((h - 1 - y) * scale + 1, x * scale + 1);
            let o = (row * w * scale + col) * 3;
            [buf[o], buf[o + 1], buf[o + 2]]
        };
        assert_eq!(pixel(2, 1), REFERENCE_RGB); // bottom edge of the reference only
        assert_eq!(pixel(6, 3), PREDICTION_RGB); // right edge of the prediction only
        assert_eq!(pixel(3, 3), BOTH_RGB); // on both contours
        let inside = pixel(2, 2); // inside the reference, on neither contour: grey
        assert!(inside[0] == inside[1] && inside[1] == inside[2], "{inside:?}");
        assert_ne!(pixel(2, 4), REFERENCE_RGB); // where (2, 1) would land without the flip
        assert!(!dir.path().read_dir().unwrap().any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".tmp")));
    }

    #[test]
    fn overlay_png_rejects_mismatched_lengths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.png");
        let err = overlay_png(&path, &[1.0; 6], 3, 2, &[false; 5], &[false; 6], 2).unwrap_err();
        assert!(matches!(err, TrainError::Data(_)), "{err}");
        let err = overlay_png(&path, &[1.0; 6], 3, 2, &[false; 6], &[false; 6], 0).unwrap_err();
        assert!(matches!(err, TrainError::Data(_)), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn grey_window_ignores_zeros_and_outliers() {
        let mut image = vec![0.0f32; 200];
        for (i, v) in image.iter_mut().enumerate().skip(100) {
            *v = (i - 99) as f32; // 1..=100
        }
        image[199] = 1e6; // an outlier above the 99th percentile
        let grey = grey_levels(&image);
        assert!(grey[..100].iter().all(|&g| g == 0));
        assert_eq!(grey[199], 255);
        assert!(grey[150] > 100 && grey[150] < 160, "{}", grey[150]);
    }

    #[test]
    fn heatmap_svg_has_labels_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heat.svg");
        let rows = vec!["flair".to_string(), "flair+t1ce".to_string()];
        let cols = vec!["WT".to_string(), "TC".to_string(), "ET".to_string()];
        let values = vec![vec![0.871, 0.5, f64::NAN], vec![0.9, 0.0, 1.0]];
        heatmap_svg(&path, "Dice by subset & region", &rows, &cols, &values).unwrap();
        let svg = fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        for needle in ["flair+t1ce", "WT", "TC", "ET", "0.87", "0.50", "NaN", "1.00", "Dice by subset &amp; region"] {
            assert!(svg.contains(needle), "missing {needle}");
        }
    }

    #[test]
    fn heatmap_svg_rejects_a_ragged_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heat.svg");
        let rows = vec!["flair".to_string()];
        let cols = vec!["WT".to_string(), "TC".to_string()];
        let err = heatmap_svg(&path, "t", &rows, &cols, &[vec![0.5]]).unwrap_err();
        assert!(matches!(err, TrainError::Data(_)), "{err}");
        let err = heatmap_svg(&path, "t", &rows, &cols, &[]).unwrap_err();
        assert!(matches!(err, TrainError::Data(_)), "{err}");
    }
}
