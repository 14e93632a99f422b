//! What the `llm` and `service` benches share: the thread count and the tally of
//! work and time per scenario, accumulated over every criterion iteration, from which
//! they report rates and ratios measured in the same run.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Threads for the engine: `$AGORA_BENCH_THREADS`, else every core.
pub(crate) fn threads() -> usize {
    std::env::var("AGORA_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Units of work (tokens, jobs) and time per scenario.
pub(crate) fn tally() -> &'static Mutex<BTreeMap<&'static str, (u64, Duration)>> {
    static T: OnceLock<Mutex<BTreeMap<&'static str, (u64, Duration)>>> = OnceLock::new();
    T.get_or_init(Mutex::default)
}

/// Adds `units` done in `time` to scenario `name`.
pub(crate) fn record(name: &'static str, units: u64, time: Duration) {
    let mut t = tally().lock().unwrap();
    let e = t.entry(name).or_default();
    e.0 += units;
    e.1 += time;
}

/// Units per second of scenario `name`; NaN if it never ran.
pub(crate) fn rate(name: &str) -> f64 {
    let t = tally().lock().unwrap();
    t.get(name)
        .map_or(f64::NAN, |(n, d)| *n as f64 / d.as_secs_f64().max(1e-9))
}
