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

/// Median seconds of `reps` calls of `f` after one warm-up call; the first error stops it.
pub fn time_median<T, E>(reps: usize, mut f: impl FnMut() -> Result<T, E>) -> Result<f64, E> {
    std::hint::black_box(f()?);
    let mut ts = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = std::time::Instant::now();
        std::hint::black_box(f()?);
        ts.push(t.elapsed().as_secs_f64());
    }
    Ok(median(&ts))
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
