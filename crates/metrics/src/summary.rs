//! Means over cases per region that say what they excluded (both-empty NaN cases) and what they
//! penalised (one-sided empty cases).

use serde::Serialize;

use crate::pair::EmptyCase;
use crate::RegionMetrics;

/// Summary of one region over many cases.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionSummary {
    /// Region name.
    pub region: String,
    /// Number of cases that report this region (NaN cases included).
    pub n: usize,
    /// Mean Dice over the `n - n_nan` defined cases (NaN when there is none).
    pub dice_mean: f64,
    /// Population standard deviation (numpy's default, ddof = 0) of Dice over the same cases.
    pub dice_std: f64,
    /// Mean HD95 (mm) over the defined cases, penalised cases included with the penalty.
    pub hd95_mean: f64,
    /// Population standard deviation of HD95 (mm).
    pub hd95_std: f64,
    /// Mean maximum Hausdorff distance (mm).
    pub hd_mean: f64,
    /// Mean ASSD (mm).
    pub assd_mean: f64,
    /// Population standard deviation of ASSD (mm).
    pub assd_std: f64,
    /// Cases with NaN metrics (both masks empty under `BothEmpty::Nan`): excluded from the means and
    /// counted here.
    pub n_nan: usize,
    /// Cases where exactly one mask was empty: included in the means with the distance penalty.
    pub n_penalised: usize,
}

fn mean_std(x: &[f64]) -> (f64, f64) {
    if x.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    let v = x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n;
    (m, v.sqrt())
}

/// Summarise per-case region metrics (one `Vec` per case), one entry per region name in order of first
/// appearance.
pub fn summarize(cases: &[Vec<RegionMetrics>]) -> Vec<RegionSummary> {
    let mut names: Vec<&str> = Vec::new();
    for r in cases.iter().flatten() {
        if !names.contains(&r.region.as_str()) {
            names.push(&r.region);
        }
    }
    names
        .into_iter()
        .map(|name| {
            let all: Vec<_> = cases.iter().flatten().filter(|r| r.region == name).map(|r| r.metrics).collect();
            let defined: Vec<_> =
                all.iter().filter(|m| !(m.dice.is_nan() || m.hd95.is_nan() || m.assd.is_nan())).collect();
            let pick = |f: fn(&crate::PairMetrics) -> f64| mean_std(&defined.iter().map(|m| f(m)).collect::<Vec<_>>());
            let (dice_mean, dice_std) = pick(|m| m.dice);
            let (hd95_mean, hd95_std) = pick(|m| m.hd95);
            let (hd_mean, _) = pick(|m| m.hd);
            let (assd_mean, assd_std) = pick(|m| m.assd);
            RegionSummary {
                region: name.to_string(),
                n: all.len(),
                dice_mean,
                dice_std,
                hd95_mean,
                hd95_std,
                hd_mean,
                assd_mean,
                assd_std,
                n_nan: all.len() - defined.len(),
                n_penalised: defined
                    .iter()
                    .filter(|m| matches!(m.note, Some(EmptyCase::PredEmpty | EmptyCase::RefEmpty)))
                    .count(),
            }
        })
        .collect()
}
