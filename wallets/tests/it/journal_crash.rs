//! Kills a process that is appending to a journal, many times, and checks that
//! the journal is valid every time and never loses an acknowledged entry.

use std::process::Command;

use wallets::{journal, Wallet};

use crate::{run_then_kill, Schedule};

/// A throwaway key for the child process (not a secret of anyone's).
const TEST_KEY: &str = "0x8da4ef21b864d2cc526dbdb2a120bd2874c36c9d0a1fb7f8c63d7f7a8b41de8f";

#[test]
fn kill_during_append_always_leaves_a_valid_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let signer = Wallet::from_hex(TEST_KEY).unwrap().address();
    let mut schedule = Schedule(0x9e37_79b9_7f4a_7c15);

    let rounds = 40;
    let mut acknowledged_total: u64 = 0;
    let mut torn_seen = 0;
    for round in 0..rounds {
        let out = run_then_kill(
            Command::new(env!("CARGO_BIN_EXE_journal-writer"))
                .arg(&path)
                .arg("1000000")
                .env("JOURNAL_WRITER_KEY", TEST_KEY),
            1 + schedule.next() % 40,
            round,
        );

        // A journal the writer had not created yet is a valid empty one.
        let (entries, torn_tail_bytes) = if path.exists() {
            let report = journal::verify(&path, Some(signer))
                .unwrap_or_else(|e| panic!("round {round}: journal invalid after kill: {e}"));
            (report.entries, report.torn_tail_bytes)
        } else {
            assert_eq!(acknowledged_total, 0, "round {round}: the journal vanished");
            (0, 0)
        };
        if let Some(last) = out.lines().last() {
            let acked: u64 = last.parse().unwrap();
            acknowledged_total = acked + 1;
        }
        // Every acknowledged entry is there; at most one more made it to disk unacknowledged.
        assert!(
            entries >= acknowledged_total && entries <= acknowledged_total + 1,
            "round {round}: {entries} entries on disk, {acknowledged_total} acknowledged",
        );
        acknowledged_total = entries;
        if torn_tail_bytes > 0 {
            torn_seen += 1;
        }

        // A kill -9 cannot split one write(2) of a line, but a power cut can. Every
        // fourth round, tear the last line at a random byte the way a lost page
        // would, and let the next writer recover from it (unless the last writer was
        // killed before it could cut the previous tear).
        if round % 4 == 3 && entries > 0 && torn_tail_bytes == 0 {
            let bytes = std::fs::read(&path).unwrap();
            let body = &bytes[..bytes.len() - 1];
            let line_start = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let line_len = bytes.len() - line_start;
            let cut = 1 + (schedule.next() as usize) % (line_len - 1);
            std::fs::write(&path, &bytes[..bytes.len() - cut]).unwrap();
            let torn = journal::verify(&path, Some(signer)).unwrap();
            assert_eq!(torn.entries, entries - u64::from(cut > 1));
            assert_eq!(torn.torn_tail_bytes > 0, cut > 1);
            torn_seen += usize::from(cut > 1);
            acknowledged_total = torn.entries;
        }
    }
    assert!(torn_seen > 0, "no torn tail was exercised");
    let entries = journal::read_entries(&path).unwrap();
    assert!(
        entries.len() as u64 >= u64::from(rounds as u32),
        "the writer made too little progress to test anything: {} entries",
        entries.len()
    );
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.index, i as u64);
    }
    eprintln!(
        "{rounds} kills, {} entries, {torn_seen} torn tails recovered",
        entries.len()
    );
}
