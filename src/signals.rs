//! Ctrl-C and SIGTERM for the long-running commands.
//!
//! `tokio::signal::ctrl_c()` listens only from the moment its future is first
//! polled: a Ctrl-C that comes while a command is busy elsewhere (between two polls
//! of a fresh `ctrl_c()` in a loop) is lost, and the command runs on. `Stop` starts
//! listening once, before the command says it is serving, and keeps every signal
//! that comes after until it is read.

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// The signals that stop a command: SIGINT (Ctrl-C) and SIGTERM.
pub(crate) struct Stop {
    interrupt: Signal,
    terminate: Signal,
}

impl Stop {
    /// Starts listening. From here on, neither signal ends the process by itself.
    pub(crate) fn listen() -> Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("installing the Ctrl-C handler")?,
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        })
    }

    /// Waits for either signal, including one that came before this call; returns its
    /// name.
    pub(crate) async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "Ctrl-C",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn raise(sig: &str) {
        let status = std::process::Command::new("kill")
            .args([sig, &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    // One test raises both signals in turn: the handlers are process-wide, and tests
    // of this binary run in parallel.
    #[tokio::test]
    async fn a_signal_that_comes_while_the_command_is_busy_is_kept() {
        let mut stop = Stop::listen().unwrap();
        for (sig, name) in [("-INT", "Ctrl-C"), ("-TERM", "SIGTERM")] {
            // The signal comes while nothing waits for it ...
            raise(sig);
            tokio::time::sleep(Duration::from_millis(200)).await;
            // ... and the next wait sees it.
            let got = tokio::time::timeout(Duration::from_secs(10), stop.recv())
                .await
                .unwrap_or_else(|_| panic!("{name} was lost"));
            assert_eq!(got, name);
        }
        // Nothing more is pending.
        assert!(
            tokio::time::timeout(Duration::from_millis(300), stop.recv())
                .await
                .is_err()
        );
    }
}
