//! Integration tests of the wallets crate (one binary, a module per area).

mod atomic_crash;
mod journal_crash;
mod journal_disk_full;
mod signing;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

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

/// Starts `command` with its output piped, waits until it has acknowledged `acks`
/// durable writes (one line each on stdout), kills it with SIGKILL, and returns every
/// line it printed. Fails the test (naming `round`) if it wrote to stderr.
///
/// The kill is placed by what the child says, not by time: on a busy machine a
/// child killed after a fixed delay may not have opened its files yet. Once the
/// child has printed its `acks`-th line it is already inside its next write, so the
/// kill lands at a point of the write that the machine's timing picks.
fn run_then_kill(command: &mut Command, acks: u64, round: usize) -> String {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut out = String::new();
    // Reads up to the `acks`-th line, or to the end if the child exits first.
    for _ in 0..acks {
        if stdout.read_line(&mut out).unwrap() == 0 {
            break;
        }
    }
    child.kill().unwrap();
    stdout.read_to_string(&mut out).unwrap();
    let mut err = String::new();
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
