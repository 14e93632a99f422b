//! Kills a process that writes three keys at a time through
//! `wallets::store::AtomicWriter`, many times, and checks after each kill that the
//! database holds every key of the same round: never a round half written, never an
//! acknowledged (flushed) round lost.

use std::process::Command;

use wallets::store::AtomicWriter;

use crate::{run_then_kill, Schedule};

fn number(v: &[u8]) -> u64 {
    u64::from_be_bytes(v[..8].try_into().unwrap())
}

#[test]
fn kill_during_atomic_writes_never_leaves_half_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut schedule = Schedule(0x2545_f491_4f6c_dd1d);
    let mut acknowledged = 0;
    let mut replayed = 0;
    for round in 0..30 {
        let out = run_then_kill(
            Command::new(env!("CARGO_BIN_EXE_atomic-writer"))
                .arg(&path)
                .arg("10000000"),
            1 + schedule.next() % 60,
            round,
        );
        if let Some(last) = out.lines().last() {
            acknowledged = last.parse().unwrap();
        }

        let db = wallets::store::open(&path).unwrap();
        let pending = db
            .open_tree("__agora_atomic_intents")
            .unwrap()
            .get("pending")
            .unwrap()
            .is_some();
        let _writer = AtomicWriter::open(&db, &path).unwrap();
        replayed += usize::from(pending);
        let (a, b) = (db.open_tree("a").unwrap(), db.open_tree("b").unwrap());
        let x = a.get("x").unwrap().map_or(0, |v| number(&v));
        let y = b.get("y").unwrap().map_or(0, |v| number(&v));
        let z = a.get("z").unwrap().map_or(0, |v| number(&v));
        assert!(
            x == y && y == z,
            "round {round}: half a write survived: x {x}, y {y}, z {z}"
        );
        assert!(
            x >= acknowledged,
            "round {round}: round {acknowledged} was flushed, the database holds {x}"
        );
        assert!(
            db.open_tree("__agora_atomic_intents").unwrap().is_empty(),
            "round {round}: the intent was not cleared"
        );
    }
    // The kills must have landed inside writes at least once, or the test showed
    // nothing about replays.
    assert!(acknowledged > 0, "the writer never completed a round");
    eprintln!("{replayed} of 30 kills left a write to replay; {acknowledged} rounds written");
}
