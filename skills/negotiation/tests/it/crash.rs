//! Crash tests: for each step of a deal, the buyer or the seller — each in a process
//! of its own (`agora-negotiation-peer`), on a devnet this test serves over loopback —
//! is killed with SIGKILL at that step (`AGORA_CRASH_AT`), restarted on the same
//! store and journal, and left to resume. Then: the seller was paid exactly once, to
//! the base unit; the buyer has its delivery; both journals hold the receipt; nothing
//! is left in escrow; and the audit of both journals, matched on chain, is clean. In
//! `channel` mode the test then settles the seller's best voucher itself (the seller
//! would, later) and checks the same balances.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use agent_sdk::prelude::*;
use futures::StreamExt;
use negotiation::audit::{audit, ChainCheck};
use negotiation::test_utils::{usdc, Chain};
use negotiation::PaymentMode;
use registry::devnet::dev_wallet;

const PEER: &str = env!("CARGO_BIN_EXE_agora-negotiation-peer");

/// The crash points on the way of an `authorization` deal (`*.journaled`: between a
/// journal append and the state save after it).
const AUTHORIZATION_STEPS: [&str; 15] = [
    "buyer.called",
    "buyer.proposed",
    "buyer.accepted",
    "buyer.paid",
    "buyer.paying",
    "buyer.delivered",
    "buyer.journaled",
    "buyer.receipt",
    "buyer.receipted",
    "seller.proposed",
    "seller.accepted",
    "seller.settling",
    "seller.settled",
    "seller.journaled",
    "seller.delivered",
];

/// The crash points on the way of an `escrow` deal.
const ESCROW_STEPS: [&str; 14] = [
    "buyer.called",
    "buyer.proposed",
    "buyer.accepted",
    "buyer.paid",
    "buyer.paying",
    "buyer.delivered",
    "buyer.journaled",
    "buyer.receipt",
    "buyer.receipted",
    "seller.proposed",
    "seller.accepted",
    "seller.settling",
    "seller.delivering",
    "seller.delivered",
];

/// The crash points on the way of a `channel` deal: funding the channel, then the
/// first order through it.
const CHANNEL_STEPS: [&str; 13] = [
    "buyer.called",
    "buyer.accepted",
    "buyer.funding",
    "buyer.funded",
    "buyer.ordered",
    "buyer.delivered",
    "buyer.journaled",
    "buyer.receipted",
    "seller.accepted",
    "seller.funding",
    "seller.funded",
    "seller.ordered",
    "seller.delivered",
];

/// A peer process, killed and reaped on drop.
struct Proc {
    child: Child,
    _stdin: ChildStdin,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(dir: &Path, role: &str, crash_at: Option<&str>, run: usize) -> Command {
    let mut c = Command::new(PEER);
    c.arg(role)
        .arg(dir)
        .env_remove("AGORA_CRASH_AT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(File::create(dir.join(format!("{role}-{run}.log"))).unwrap());
    if let Some(at) = crash_at {
        c.env("AGORA_CRASH_AT", at);
    }
    c
}

/// Starts the seller and waits until it listens.
async fn spawn_seller(
    dir: PathBuf,
    listen: String,
    rpc: String,
    crash_at: Option<&'static str>,
    run: usize,
) -> Proc {
    tokio::task::spawn_blocking(move || {
        let mut c = command(&dir, "seller", crash_at, run);
        c.arg(&listen).arg(&rpc).arg(dir.join("addresses.json"));
        let mut child = c.spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("READY "), "the seller said {line:?}");
        Proc {
            child,
            _stdin: stdin,
        }
    })
    .await
    .unwrap()
}

struct Setup {
    dir: PathBuf,
    rpc: String,
    seller_url: String,
    seller: Address,
    mode: &'static str,
}

fn spawn_buyer(s: &Setup, crash_at: Option<&str>, run: usize) -> Proc {
    let mut c = command(&s.dir, "buyer", crash_at, run);
    c.arg(&s.rpc)
        .arg(s.dir.join("addresses.json"))
        .arg(&s.seller_url)
        .arg(s.seller.to_string())
        .arg(s.mode);
    let mut child = c.spawn().unwrap();
    let stdin = child.stdin.take().unwrap();
    Proc {
        child,
        _stdin: stdin,
    }
}

fn stdout_of(p: &mut Proc) -> String {
    let mut out = String::new();
    if let Some(mut s) = p.child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    out
}

/// The entries of the journal at `path` once it has one of `kind`.
async fn wait_for(path: &Path, kind: &str) -> Result<Vec<wallets::JournalEntry>, String> {
    for _ in 0..100 {
        let entries = wallets::journal::read_entries(path).map_err(|e| e.to_string())?;
        if entries.iter().any(|e| e.kind == kind) {
            return Ok(entries);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("{} has no {kind} entry", path.display()))
}

/// One deal with a crash at `step`; `Err` says what went wrong (and keeps the
/// directory with the journals and the processes' logs).
async fn crash_at(mode: PaymentMode, step: &'static str) -> Result<String, String> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let outcome = deal_with_crash(mode, step, &dir).await;
    if outcome.is_err() {
        let _ = tmp.keep();
    }
    outcome.map_err(|e| format!("{e}\n(kept {})", dir.display()))
}

async fn deal_with_crash(
    mode: PaymentMode,
    step: &'static str,
    dir: &Path,
) -> Result<String, String> {
    let dir = dir.to_owned();
    let chain = Chain::start(&dir).await;
    std::fs::write(
        dir.join("addresses.json"),
        serde_json::to_vec(&chain.addresses).unwrap(),
    )
    .unwrap();
    let (buyer, seller) = (dev_wallet(3).address(), dev_wallet(2).address());
    chain.minter.mint(buyer, usdc("10")).await.unwrap();
    let rpc = chain.node.http_url();
    let listen = format!("127.0.0.1:{}", agent_sdk::testing::free_port().unwrap());
    let on_seller = step.starts_with("seller.").then_some(step);
    let on_buyer = step.starts_with("buyer.").then_some(step);
    let mut runs = 0;
    let mut sp = spawn_seller(dir.clone(), listen.clone(), rpc.clone(), on_seller, runs).await;
    let s = Setup {
        dir: dir.clone(),
        rpc: rpc.clone(),
        seller_url: format!("ws://{listen}"),
        seller,
        mode: mode.as_str(),
    };
    let mut bp = spawn_buyer(&s, on_buyer, runs);
    let mut crashes = Vec::new();
    let until = Instant::now() + Duration::from_secs(90);
    let deal = loop {
        if Instant::now() > until {
            return Err(format!(
                "no deal in 90 s; crashes {crashes:?}; logs in {}",
                dir.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(status) = sp.child.try_wait().unwrap() {
            if status.signal() != Some(9) || on_seller.is_none() || !crashes.is_empty() {
                return Err(format!("the seller ended unexpectedly: {status}"));
            }
            crashes.push("seller");
            runs += 1;
            sp = spawn_seller(dir.clone(), listen.clone(), rpc.clone(), None, runs).await;
        }
        if let Some(status) = bp.child.try_wait().unwrap() {
            let out = stdout_of(&mut bp);
            if status.signal() == Some(9) {
                if on_buyer.is_none() || !crashes.is_empty() {
                    return Err(format!("the buyer was killed unexpectedly: {status}"));
                }
                crashes.push("buyer");
            } else if status.success() {
                break out;
            } else if runs > 8 {
                return Err(format!("the buyer keeps failing: {out}"));
            } else {
                // The seller was down: try again (resume, or a new deal).
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            runs += 1;
            bp = spawn_buyer(&s, None, runs);
        }
    };
    if crashes.len() != 1 {
        return Err(format!("the crash point was not reached: {crashes:?}"));
    }
    let deal = deal.trim().to_owned();
    if !deal.starts_with("DEAL ") {
        return Err(format!("the buyer said {deal:?}"));
    }
    // The receipt is told; give it a moment to land.
    let theirs = wait_for(&dir.join("seller.journal"), "receipt").await?;
    drop(sp);
    let ours = wait_for(&dir.join("buyer.journal"), "receipt").await?;
    let receipts = |e: &[wallets::JournalEntry]| e.iter().filter(|e| e.kind == "receipt").count();
    if receipts(&ours) != 1 || receipts(&theirs) != 1 {
        return Err(format!(
            "receipts: buyer {}, seller {}",
            receipts(&ours),
            receipts(&theirs)
        ));
    }
    // A step redone after a crash journals nothing twice.
    for (who, entries) in [("buyer", &ours), ("seller", &theirs)] {
        let mut seen = std::collections::HashSet::new();
        for e in entries.iter() {
            if !seen.insert((e.kind.clone(), e.body.to_string())) {
                return Err(format!("the {who} journaled {} twice: {}", e.kind, e.body));
            }
        }
    }
    let holder = if mode == PaymentMode::Channel {
        settle_best_voucher(&rpc, &chain.addresses, &theirs).await?;
        chain.addresses.channel
    } else {
        chain.addresses.escrow
    };
    let balances = (
        chain.balance(seller).await,
        chain.balance(buyer).await,
        chain.balance(wallets::Address(holder.0)).await,
    );
    if balances != (usdc("1.5"), usdc("8.5"), Amount::ZERO) {
        return Err(format!(
            "balances (seller, buyer, escrow or channel): {balances:?}"
        ));
    }
    let report = audit(
        &[dir.join("buyer.journal"), dir.join("seller.journal")],
        Some(&ChainCheck::new(rpc, chain.addresses)),
    )
    .await
    .unwrap();
    // (A channel agreement itself is paid through its orders.)
    let unfinished = report.deals.iter().any(|d| {
        d.stage != "received" && !(d.mode == PaymentMode::Channel && d.channel_agreement.is_none())
    });
    if !report.is_clean() || unfinished {
        return Err(format!("audit:\n{}", report.to_table()));
    }
    Ok(format!(
        "{step}: {} run(s), {} deal(s) audited",
        runs + 1,
        report.deals.len()
    ))
}

/// Closes the channel with the best voucher the seller journaled, as the seller.
async fn settle_best_voucher(
    rpc: &str,
    addresses: &registry::chain::Addresses,
    seller_entries: &[wallets::JournalEntry],
) -> Result<(), String> {
    let best = seller_entries
        .iter()
        .filter(|e| e.kind == "payment" && e.body.get("orderId").is_some())
        .filter_map(|e| {
            serde_json::from_value::<wallets::SignedPayment>(e.body["payment"].clone()).ok()
        })
        .max_by_key(|p| p.payment.amount())
        .ok_or("the seller journaled no voucher")?;
    let client = registry::chain::connect(rpc, std::sync::Arc::new(dev_wallet(2)))
        .await
        .map_err(|e| e.to_string())?;
    registry::chain::Deployment::at(client, addresses)
        .settle_channel(&best, true)
        .await
        .map_err(|e| format!("settling the channel: {e}"))?;
    Ok(())
}

async fn crash_loop(mode: PaymentMode, steps: &[&'static str]) {
    let outcomes: Vec<(&str, Result<String, String>)> = futures::stream::iter(steps.iter())
        .map(|step| async move { (*step, crash_at(mode, step).await) })
        .buffer_unordered(3)
        .collect()
        .await;
    let mut failed = Vec::new();
    for (step, outcome) in outcomes {
        match outcome {
            Ok(line) => eprintln!("crash ({}) {line}", mode.as_str()),
            Err(e) => failed.push(format!("{step}: {e}")),
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_buyer_or_seller_resumes_at_every_step_of_an_authorization_deal() {
    crash_loop(PaymentMode::Authorization, &AUTHORIZATION_STEPS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_buyer_or_seller_resumes_at_every_step_of_an_escrow_deal() {
    crash_loop(PaymentMode::Escrow, &ESCROW_STEPS).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_buyer_or_seller_resumes_at_every_step_of_a_channel_deal() {
    crash_loop(PaymentMode::Channel, &CHANNEL_STEPS).await;
}
