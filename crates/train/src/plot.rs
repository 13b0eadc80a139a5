//! The training-curve picture (SVG): the training loss per step with its per-epoch mean, and the
//! validation Dice of each (subset, region) and the selection score per validation.

use std::path::Path;

use plotters::prelude::*;

use crate::log::Row;
use crate::{Result, TrainError};

/// Draws `rows` (a metrics log) into an SVG at `path`; `steps_per_epoch` groups the loss means.
pub fn draw_curves(rows: &[Row], steps_per_epoch: u64, path: &Path) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| TrainError::Plot { path: path.to_path_buf(), reason: e.to_string() };
    let loss: Vec<(f64, f64)> = (rows.iter().filter(|r| r.kind == "step"))
        .filter_map(|r| Some((r.step as f64, r.get("loss").filter(|v| v.is_finite())?)))
        .collect();
    let spe = steps_per_epoch.max(1) as f64;
    let mut means: Vec<(f64, f64)> = Vec::new();
    let mut acc = (0.0, 0usize, 0u64);
    for &(s, l) in &loss {
        let e = ((s - 1.0) / spe).floor() as u64;
        if acc.1 > 0 && e != acc.2 {
            means.push(((acc.2 as f64 + 1.0) * spe, acc.0 / acc.1 as f64));
            acc = (0.0, 0, e);
        }
        acc = (acc.0 + l, acc.1 + 1, e);
    }
    if acc.1 > 0 {
        means.push(((acc.2 as f64 + 1.0) * spe, acc.0 / acc.1 as f64));
    }
    let vals: Vec<&Row> = rows.iter().filter(|r| r.kind == "validation").collect();
    let mut series: Vec<String> = Vec::new();
    for r in &vals {
        for (c, _) in &r.values {
            if (c.starts_with("dice/") || c == "score") && !series.contains(c) {
                series.push(c.clone());
            }
        }
    }

    let root = SVGBackend::new(path, (1280, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(620);
    let max_step = loss.last().map(|l| l.0).unwrap_or(1.0).max(1.0);
    let max_loss = loss.iter().map(|l| l.1).fold(0.0f64, f64::max).max(1e-3) * 1.05;
    let mut chart = ChartBuilder::on(&left)
        .caption("training loss", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(0.0..max_step, 0.0..max_loss)
        .map_err(|e| err(&e))?;
    chart.configure_mesh().x_desc("step").y_desc("loss").draw().map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(loss.iter().copied(), RGBColor(150, 170, 220).stroke_width(1)))
        .map_err(|e| err(&e))?
        .label("per step")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RGBColor(150, 170, 220)));
    chart
        .draw_series(LineSeries::new(means.iter().copied(), BLUE.stroke_width(2)))
        .map_err(|e| err(&e))?
        .label("epoch mean")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw().map_err(|e| err(&e))?;

    let mut chart = ChartBuilder::on(&right)
        .caption("validation Dice", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(44)
        .build_cartesian_2d(0.0..max_step, 0.0..1.0)
        .map_err(|e| err(&e))?;
    chart.configure_mesh().x_desc("step").y_desc("Dice").draw().map_err(|e| err(&e))?;
    for (i, name) in series.iter().enumerate() {
        let pts: Vec<(f64, f64)> =
            (vals.iter()).filter_map(|r| Some((r.step as f64, r.get(name).filter(|v| v.is_finite())?))).collect();
        let color = if name == "score" { BLACK.to_rgba() } else { Palette99::pick(i).to_rgba() };
        let width = if name == "score" { 3 } else { 1 };
        let label = name.strip_prefix("dice/").unwrap_or(name).to_string();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(width)))
            .map_err(|e| err(&e))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
    }
    if !series.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(("sans-serif", 11))
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_an_svg_with_both_panels() {
        let dir = tempfile::tempdir().unwrap();
        let mut rows = Vec::new();
        for s in 1..=20u64 {
            rows.push(Row { kind: "step".into(), step: s, values: vec![("loss".into(), 2.0 / s as f64)] });
            if s % 5 == 0 {
                let d = s as f64 / 25.0;
                rows.push(Row {
                    kind: "validation".into(),
                    step: s,
                    values: vec![("dice/flair/WT".into(), d), ("score".into(), d * 0.9)],
                });
            }
        }
        let path = dir.path().join("curves.svg");
        draw_curves(&rows, 5, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"));
        for text in ["training loss", "validation Dice", "flair/WT", "epoch mean"] {
            assert!(svg.contains(text), "missing {text}");
        }
        // The per-step polyline has one point per step.
        assert!(svg.matches("<polyline").count() >= 4);
    }
}
