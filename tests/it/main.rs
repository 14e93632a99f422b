//! Integration tests of the `agora` binary and of the crates working together.

mod audit_browser;
mod audit_cli;
mod browser;
mod chain_cli;
mod config_cli;
#[cfg(feature = "llm")]
mod demo;
mod model_cli;
#[cfg(feature = "llm")]
mod multihost;
#[cfg(feature = "llm")]
mod oracle_cli;
mod up;
mod wallet_cli;

/// Held by the tests that run the real model in a subprocess (the demo, `agora up`):
/// two of them at once on a small machine slow each other past their timeouts.
#[cfg(feature = "llm")]
pub(crate) static MODEL_SUBPROCESS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Sends `signal` (as `kill` spells it: "-INT", "-TERM") to `child` and waits up to
/// `limit` for it to exit, on a thread of its own. `None` when it did not: it is then
/// killed, so that a test fails instead of waiting for ever.
pub(crate) fn stop_child(
    child: &mut std::process::Child,
    signal: &str,
    limit: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    use std::process::Command;
    let pid = child.id().to_string();
    let sent = Command::new("kill").args([signal, &pid]).status().unwrap();
    assert!(sent.success(), "kill {signal} {pid}");
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        s.spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(limit) {
            Ok(status) => Some(status.unwrap()),
            Err(_) => {
                let _ = Command::new("kill").args(["-9", &pid]).status();
                None
            }
        }
    })
}
