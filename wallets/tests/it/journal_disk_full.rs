//! A journal on a full disk: an append that does not fit fails with the disk's
//! error, leaves the file as it was (even when part of the batch got written), and
//! the journal goes on once there is room again.
//!
//! The disk is a 1 MiB tmpfs of the test's own, mounted in a temporary directory and
//! unmounted at the end; mounting needs root, so elsewhere the test says so and does
//! nothing else.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::json;
use wallets::{journal, Journal, Wallet};

/// A tmpfs of `bytes` at `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, bytes: u64) -> Option<Self> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "agora-test"])
            .arg(dir)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "skipped: cannot mount a tmpfs here (needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Self(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Fills the disk holding `path` with the file `path` until it is full.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let page = vec![0u8; 4096];
    loop {
        match file.write_all(&page) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => return, // ENOSPC
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
}

#[test]
fn a_full_disk_fails_the_append_and_leaves_the_journal_valid() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_disk) = Tmpfs::mount(dir.path(), 1 << 20) else {
        return;
    };
    let path = dir.path().join("journal.jsonl");
    let wallet = Arc::new(Wallet::random());
    let signer = wallet.address();
    let mut j = Journal::open(&path, wallet.clone()).unwrap();
    for i in 0..3 {
        j.append("payment", json!({"amount": (i * 1000).to_string()}))
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();

    // The disk full but for one page: a 12 KiB entry starts to be written, and
    // does not fit.
    let filler = dir.path().join("filler");
    fill(&filler);
    let len = std::fs::metadata(&filler).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&filler)
        .unwrap()
        .set_len(len - 4096)
        .unwrap();
    let big = "x".repeat(12 * 1024);
    let err = j
        .append("delivery", json!({"result": big.clone()}))
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("No space left on device"), "{message}");
    assert!(message.contains("journal.jsonl"), "{message}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the failed append stayed"
    );
    assert_eq!(journal::verify(&path, Some(signer)).unwrap().entries, 3);
    assert_eq!(j.len(), 3);

    // Room again: the journal goes on from where it was, in memory and on disk.
    std::fs::remove_file(&filler).unwrap();
    j.append("delivery", json!({"result": big})).unwrap();
    j.append("receipt", json!({"ok": true})).unwrap();
    let report = journal::verify(&path, Some(signer)).unwrap();
    assert_eq!((report.entries, report.torn_tail_bytes), (5, 0));
    drop(j);
    assert_eq!(Journal::open(&path, wallet).unwrap().len(), 5);
}
