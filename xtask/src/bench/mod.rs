//! `cargo xtask bench <what>`: side-by-side timings against peer tools in one run on one machine.

mod io;
mod metrics;
mod model;
mod ops;

/// Median of a non-empty list of seconds.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    s[s.len() / 2]
}

/// Dispatch `cargo xtask bench ...`.
pub fn run(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("io") => io::run(&args[1..]),
        Some("metrics") => metrics::run(&args[1..]),
        Some("ops") => ops::run(&args[1..]),
        Some("model") => model::run(&args[1..]),
        Some(other) => Err(format!("unknown benchmark '{other}' (known: io, metrics, ops, model)")),
        None => Err(crate::USAGE.into()),
    }
}
