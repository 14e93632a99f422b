//! Crash points for the crash tests: `crash_point("buyer.paid")` kills the process
//! with SIGKILL when the environment variable `AGORA_CRASH_AT` names that point.
//!
//! Only with the `test-utils` feature; otherwise a crash point is an empty function.
//! The variable is read once per process.

/// Dies here, like `kill -9`, if `AGORA_CRASH_AT` is `name`.
#[cfg(feature = "test-utils")]
pub(crate) fn crash_point(name: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if AT
        .get_or_init(|| std::env::var("AGORA_CRASH_AT").ok())
        .as_deref()
        != Some(name)
    {
        return;
    }
    eprintln!("crash point {name}: kill -9 {}", std::process::id());
    // The real thing: no destructors, no flushes, no unwinding.
    let _ = std::process::Command::new("kill")
        .args(["-9", &std::process::id().to_string()])
        .status();
    std::process::abort();
}

/// Nothing without the `test-utils` feature.
#[cfg(not(feature = "test-utils"))]
#[inline(always)]
pub(crate) fn crash_point(_name: &str) {}
