//! Test helper for the crash test of [`wallets::store::AtomicWriter`]: writes round
//! after round of three keys in two trees, all to the same round number, while a
//! second thread flushes the database over and over so that the log reaches the
//! disk at arbitrary points, and prints each round once it is durable.
//!
//! Usage: `atomic-writer <database> <rounds>`.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use wallets::store::{AtomicWriter, Write};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(rounds)) = (args.get(1), args.get(2).and_then(|c| c.parse::<u64>().ok()))
    else {
        eprintln!("usage: atomic-writer <database> <rounds>");
        return ExitCode::from(2);
    };
    let path = std::path::Path::new(path);
    let opened = wallets::store::open(path).and_then(|db| {
        let writer = AtomicWriter::open(&db, path)?;
        Ok((db.open_tree("a")?, db.open_tree("b")?, writer, db))
    });
    let (a, b, writer, db) = match opened {
        Ok(o) => o,
        Err(e) => {
            eprintln!("atomic-writer: {e}");
            return ExitCode::from(1);
        }
    };
    let start = match a.get("x") {
        Ok(v) => v.map_or(0, |v| {
            u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8]))
        }),
        Err(e) => {
            eprintln!("atomic-writer: {e}");
            return ExitCode::from(1);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flusher = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if db.flush().is_err() {
                    return;
                }
            }
        })
    };
    let mut out = std::io::stdout().lock();
    // Values of some size, so that the log fills and rolls mid-round too.
    let filler = vec![0x5a_u8; 700];
    for round in start + 1..=start + rounds {
        let n = round.to_be_bytes();
        let mut long = n.to_vec();
        long.extend_from_slice(&filler);
        let writes = [
            Write::set(&a, "x", n.to_vec()),
            Write::set(&b, "y", long),
            Write::set(&a, "z", n.to_vec()),
        ];
        if let Err(e) = writer.write(&writes).and_then(|()| db.flush().map(drop)) {
            eprintln!("atomic-writer: {e}");
            return ExitCode::from(1);
        }
        if writeln!(out, "{round}").and_then(|()| out.flush()).is_err() {
            return ExitCode::from(1);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = flusher.join();
    ExitCode::SUCCESS
}
