//! Test helper for the journal's crash tests: appends entries to a journal as fast
//! as it can and prints the index of each one once it is durable.
//!
//! Usage: `journal-writer <journal> <count>` with the signing key (a throwaway test
//! key) in the `JOURNAL_WRITER_KEY` environment variable, as hex.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use wallets::{Journal, Wallet};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(count)) = (args.get(1), args.get(2).and_then(|c| c.parse::<u64>().ok()))
    else {
        eprintln!("usage: journal-writer <journal> <count>  (key in JOURNAL_WRITER_KEY)");
        return ExitCode::from(2);
    };
    let Ok(key) = std::env::var("JOURNAL_WRITER_KEY") else {
        eprintln!("journal-writer: JOURNAL_WRITER_KEY is not set");
        return ExitCode::from(2);
    };
    let wallet = match Wallet::from_hex(&key) {
        Ok(w) => Arc::new(w),
        Err(e) => {
            eprintln!("journal-writer: JOURNAL_WRITER_KEY: {e}");
            return ExitCode::from(2);
        }
    };
    let mut journal = match Journal::open(path, wallet) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("journal-writer: {e}");
            return ExitCode::from(1);
        }
    };
    let mut out = std::io::stdout().lock();
    // A body of some size, so that a kill often lands in the middle of a write.
    let filler = "x".repeat(512);
    for _ in 0..count {
        let index = journal.len();
        let body = serde_json::json!({"amount": (index * 10_000).to_string(), "memo": filler});
        if let Err(e) = journal.append("payment", body) {
            eprintln!("journal-writer: {e}");
            return ExitCode::from(1);
        }
        if writeln!(out, "{index}").and_then(|()| out.flush()).is_err() {
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}
