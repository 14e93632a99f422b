//! Crash tests: for each step of a deal, the buyer or the seller — each in a process
//! of its own (`agora-negotiation-peer`), on a devnet this test serves over loopback —
//! is killed with SIGKILL at that step (`AGORA_CRASH_AT`), restarted on the same
//! store and journal, and left to resume. Then: the seller was paid exactly once, to
//! the base unit; the buyer has its delivery; both journals hold the receipt; nothing
//! is left in escrow; and the audit of both journals, matched on chain, is clean. In
//! `channel` mode the test then settles the seller's best voucher itself (the seller
//! would, later) and checks the same balances.
//!
//! The seller listens on port 0 and says where (`READY <url> <address>`); restarted,
//! it gets another port, which the test gives the running buyer (a `PEER` line on
//! its standard input) and every buyer it starts later. The test waits on the
//! processes' exits and lines, each wait bounded by a deadline; no fixed delays.

use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use agent_sdk::prelude::*;
use futures::StreamExt;
use negotiation::audit::{audit, ChainCheck};
use negotiation::test_utils::{usdc, Chain};
use negotiation::PaymentMode;
use registry::devnet::dev_wallet;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const PEER: &str = env!("CARGO_BIN_EXE_agora-negotiation-peer");

/// Where the seller listens: any free loopback port; it reports the one it got.
const LISTEN: &str = "127.0.0.1:0";

/// How long a seller may take to say it is ready, or to stop once asked to.
const WAIT: Duration = Duration::from_secs(60);

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

/// A peer process, killed on drop.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
}

impl Proc {
    fn spawn(mut command: Command) -> Self {
        let mut child = command.kill_on_drop(true).spawn().unwrap();
        Self {
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            child,
        }
    }

    /// What it wrote on its standard output (all of it, once it has exited).
    async fn stdout(&mut self) -> String {
        let mut out = String::new();
        if let Some(mut s) = self.stdout.take() {
            let _ = s.read_to_string(&mut out).await;
        }
        out
    }

    /// Tells a buyer that `address` listens at `url` now. A buyer that has exited
    /// already cannot take it; the next one is started with the new address.
    async fn tell_peer(&mut self, address: Address, url: &str) {
        if let Some(stdin) = &mut self.stdin {
            let _ = stdin
                .write_all(format!("PEER {address} {url}\n").as_bytes())
                .await;
            let _ = stdin.flush().await;
        }
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

/// Starts the seller and waits until it says where it listens; returns it and its
/// URL.
async fn spawn_seller(
    dir: &Path,
    rpc: &str,
    crash_at: Option<&str>,
    run: usize,
) -> Result<(Proc, String), String> {
    let mut c = command(dir, "seller", crash_at, run);
    c.arg(LISTEN).arg(rpc).arg(dir.join("addresses.json"));
    let mut p = Proc::spawn(c);
    let mut out = BufReader::new(p.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(WAIT, out.read_line(&mut line))
        .await
        .map_err(|_| format!("the seller (run {run}) said nothing within {WAIT:?}"))?
        .map_err(|e| format!("the seller's stdout: {e}"))?;
    let mut words = line.split_whitespace();
    let url = match (words.next(), words.next()) {
        (Some("READY"), Some(url)) => url.to_owned(),
        _ => return Err(format!("the seller said {line:?}")),
    };
    // Its stdout stays open (and unread) while it runs.
    p.stdout = Some(out.into_inner());
    Ok((p, url))
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
    Proc::spawn(c)
}

/// The entries of the journal at `path` (its writer has stopped), which must hold one
/// of `kind`.
fn entries_with(path: &Path, kind: &str) -> Result<Vec<wallets::JournalEntry>, String> {
    let entries = wallets::journal::read_entries(path).map_err(|e| e.to_string())?;
    if entries.iter().any(|e| e.kind == kind) {
        Ok(entries)
    } else {
        Err(format!("{} has no {kind} entry", path.display()))
    }
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
    let on_seller = step.starts_with("seller.").then_some(step);
    let on_buyer = step.starts_with("buyer.").then_some(step);
    let mut runs = 0;
    let (mut sp, seller_url) = spawn_seller(&dir, &rpc, on_seller, runs).await?;
    let mut s = Setup {
        dir: dir.clone(),
        rpc: rpc.clone(),
        seller_url,
        seller,
        mode: mode.as_str(),
    };
    let mut bp = spawn_buyer(&s, on_buyer, runs);
    let mut crashes = Vec::new();
    // Which process ended first.
    enum Ended {
        Seller(ExitStatus),
        Buyer(ExitStatus),
    }
    let dealing = async {
        loop {
            let ended = tokio::select! {
                status = sp.child.wait() => Ended::Seller(status.unwrap()),
                status = bp.child.wait() => Ended::Buyer(status.unwrap()),
            };
            // A dead seller is restarted (on another port, which the buyer is told).
            let seller_died = match ended {
                Ended::Seller(status) => Some(status),
                Ended::Buyer(status) => {
                    let out = bp.stdout().await;
                    if status.signal() == Some(9) {
                        if on_buyer.is_none() || !crashes.is_empty() {
                            return Err(format!("the buyer was killed unexpectedly: {status}"));
                        }
                        crashes.push("buyer");
                    } else if status.success() {
                        return Ok(out);
                    } else if runs > 8 {
                        return Err(format!("the buyer keeps failing: {out}"));
                    }
                    runs += 1;
                    // It failed because the seller was down, or was killed: try again
                    // (resume, or a new deal), with the seller restarted first if it
                    // is dead.
                    let seller_died = sp.child.try_wait().unwrap();
                    bp = spawn_buyer(&s, None, runs);
                    seller_died
                }
            };
            if let Some(status) = seller_died {
                if status.signal() != Some(9) || on_seller.is_none() || !crashes.is_empty() {
                    return Err(format!("the seller ended unexpectedly: {status}"));
                }
                crashes.push("seller");
                runs += 1;
                (sp, s.seller_url) = spawn_seller(&dir, &rpc, None, runs).await?;
                bp.tell_peer(seller, &s.seller_url).await;
            }
        }
    };
    let deal = match tokio::time::timeout(Duration::from_secs(90), dealing).await {
        Ok(deal) => deal?,
        Err(_) => {
            return Err(format!(
                "no deal in 90 s; crashes {crashes:?}; logs in {}",
                dir.display()
            ))
        }
    };
    if crashes.len() != 1 {
        return Err(format!("the crash point was not reached: {crashes:?}"));
    }
    let deal = deal.trim().to_owned();
    if !deal.starts_with("DEAL ") {
        return Err(format!("the buyer said {deal:?}"));
    }
    // The buyer told the seller its receipt and had it confirmed before it said DEAL.
    // The seller is asked to stop (its stdin closes); once it has, both journals are
    // final.
    drop(sp.stdin.take());
    match tokio::time::timeout(WAIT, sp.child.wait()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(format!("waiting for the seller: {e}")),
        Err(_) => return Err(format!("the seller did not stop within {WAIT:?}")),
    }
    drop(sp);
    let theirs = entries_with(&dir.join("seller.journal"), "receipt")?;
    let ours = entries_with(&dir.join("buyer.journal"), "receipt")?;
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
