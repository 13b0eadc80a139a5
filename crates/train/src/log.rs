//! The metrics log: one row per training step and per validation, as JSON lines or CSV with a fixed
//! header. On resume the rows after the checkpoint's step are dropped so the log never repeats a
//! step.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::config::LogFormat;
use crate::{Result, TrainError};

/// One row: its kind (`step` or `validation`), the step it follows, and named values.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `step` or `validation`.
    pub kind: String,
    /// Steps done when the row was written (1-based for step rows).
    pub step: u64,
    /// (column, value); NaN is written as `null` / an empty cell.
    pub values: Vec<(String, f64)>,
}

impl Row {
    /// The value of `column`.
    pub fn get(&self, column: &str) -> Option<f64> {
        self.values.iter().find(|(c, _)| c == column).map(|(_, v)| *v)
    }
}

/// An open metrics log.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    format: LogFormat,
    columns: Vec<String>,
    out: BufWriter<File>,
}

/// The log file name for a format.
pub fn log_file_name(format: LogFormat) -> &'static str {
    match format {
        LogFormat::Jsonl => "metrics.jsonl",
        LogFormat::Csv => "metrics.csv",
    }
}

impl MetricsLog {
    /// Creates `dir/metrics.{jsonl,csv}` with the value `columns` (CSV header: `kind,step,` then
    /// the columns). With `resume_step`, an existing log is kept up to and including that step
    /// (rows of later steps, written after the checkpoint, are dropped).
    pub fn open(dir: &Path, format: LogFormat, columns: Vec<String>, resume_step: Option<u64>) -> Result<Self> {
        let path = dir.join(log_file_name(format));
        let kept = match resume_step {
            Some(s) if path.exists() => read_rows(&path, format)?.into_iter().filter(|r| r.step <= s).collect(),
            _ => Vec::new(),
        };
        let file = File::create(&path).map_err(TrainError::io(&path))?;
        let mut log = Self { path, format, columns, out: BufWriter::new(file) };
        if format == LogFormat::Csv {
            let header = format!("kind,step,{}\n", log.columns.join(","));
            log.out.write_all(header.as_bytes()).map_err(TrainError::io(&log.path))?;
        }
        for r in &kept {
            log.write(r)?;
        }
        log.flush()?;
        Ok(log)
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a row (values whose column is unknown are an error in CSV, kept in JSON).
    pub fn write(&mut self, row: &Row) -> Result<()> {
        let line = match self.format {
            LogFormat::Jsonl => {
                let mut map = serde_json::Map::new();
                map.insert("kind".into(), row.kind.clone().into());
                map.insert("step".into(), row.step.into());
                for (c, v) in &row.values {
                    let v = serde_json::Number::from_f64(*v).map(serde_json::Value::Number).unwrap_or_default();
                    map.insert(c.clone(), v);
                }
                serde_json::Value::Object(map).to_string()
            }
            LogFormat::Csv => {
                if let Some((c, _)) = row.values.iter().find(|(c, _)| !self.columns.contains(c)) {
                    return Err(TrainError::Config(format!("metrics column {c} is not in the CSV header")));
                }
                let cells: Vec<String> = (self.columns.iter())
                    .map(|c| row.get(c).filter(|v| v.is_finite()).map(|v| format!("{v}")).unwrap_or_default())
                    .collect();
                format!("{},{},{}", row.kind, row.step, cells.join(","))
            }
        };
        writeln!(self.out, "{line}").map_err(TrainError::io(&self.path))
    }

    /// Flushes buffered rows to the file.
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(TrainError::io(&self.path))
    }
}

/// Reads every row of a log written by [`MetricsLog`].
pub fn read_rows(path: &Path, format: LogFormat) -> Result<Vec<Row>> {
    let file = File::open(path).map_err(TrainError::io(path))?;
    let bad = |line: usize, why: &str| TrainError::Data(format!("{}:{line}: {why}", path.display()));
    let mut rows = Vec::new();
    let mut header: Vec<String> = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(TrainError::io(path))?;
        if line.trim().is_empty() {
            continue;
        }
        match format {
            LogFormat::Jsonl => {
                let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| bad(i + 1, &e.to_string()))?;
                let obj = v.as_object().ok_or_else(|| bad(i + 1, "not a JSON object"))?;
                let kind = obj.get("kind").and_then(|k| k.as_str()).ok_or_else(|| bad(i + 1, "no kind"))?;
                let step = obj.get("step").and_then(|s| s.as_u64()).ok_or_else(|| bad(i + 1, "no step"))?;
                let values = (obj.iter())
                    .filter(|(k, _)| *k != "kind" && *k != "step")
                    .map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(f64::NAN)))
                    .collect();
                rows.push(Row { kind: kind.to_string(), step, values });
            }
            LogFormat::Csv => {
                let cells: Vec<&str> = line.split(',').collect();
                if header.is_empty() {
                    header = cells.iter().map(|s| s.to_string()).collect();
                    continue;
                }
                if cells.len() != header.len() || cells.len() < 2 {
                    return Err(bad(i + 1, "wrong number of cells"));
                }
                let step = cells[1].parse().map_err(|_| bad(i + 1, "bad step"))?;
                let values = (header[2..].iter().zip(&cells[2..]))
                    .map(|(c, v)| (c.clone(), v.parse().unwrap_or(f64::NAN)))
                    .collect();
                rows.push(Row { kind: cells[0].to_string(), step, values });
            }
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, step: u64, v: f64) -> Row {
        Row { kind: kind.into(), step, values: vec![("loss".into(), v), ("lr".into(), f64::NAN)] }
    }

    #[test]
    fn both_formats_round_trip_and_resume_drops_later_rows() {
        for format in [LogFormat::Jsonl, LogFormat::Csv] {
            let dir = tempfile::tempdir().unwrap();
            let cols = vec!["loss".to_string(), "lr".to_string()];
            let mut log = MetricsLog::open(dir.path(), format, cols.clone(), None).unwrap();
            for s in 1..=5 {
                log.write(&row("step", s, s as f64 * 0.5)).unwrap();
            }
            log.flush().unwrap();
            drop(log);
            let rows = read_rows(&dir.path().join(log_file_name(format)), format).unwrap();
            assert_eq!(rows.len(), 5);
            assert_eq!(rows[3].get("loss"), Some(2.0));
            assert!(rows[3].get("lr").unwrap().is_nan());
            let mut log = MetricsLog::open(dir.path(), format, cols, Some(3)).unwrap();
            log.write(&row("step", 4, 9.0)).unwrap();
            log.flush().unwrap();
            let rows = read_rows(log.path(), format).unwrap();
            assert_eq!(rows.iter().map(|r| r.step).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
            assert_eq!(rows[3].get("loss"), Some(9.0));
        }
    }
}
