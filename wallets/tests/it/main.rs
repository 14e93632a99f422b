//! Integration tests of the wallets crate (one binary, a module per area).

mod atomic_crash;
mod journal_crash;
mod signing;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A seeded xorshift: kill schedules that can be replayed when a test fails.
struct Schedule(u64);

impl Schedule {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Starts `command` with its output piped, kills it with SIGKILL after `after`, and
/// returns what it printed on stdout; fails the test (naming `round`) if it wrote to
/// stderr.
fn run_then_kill(command: &mut Command, after: Duration, round: usize) -> String {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    child.kill().unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    child.wait().unwrap();
    assert!(err.is_empty(), "round {round}: the writer failed: {err}");
    out
}
