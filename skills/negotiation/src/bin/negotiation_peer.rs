//! A negotiation buyer or seller in a process of its own, on a chain served over
//! loopback, for the crash tests (`skills/negotiation/tests/it/crash.rs`). Set `AGORA_CRASH_AT`
//! to a crash point (e.g. `buyer.paid`) and the process kills itself with SIGKILL
//! there.
//!
//! ```text
//! agora-negotiation-peer seller <dir> <listen addr> <rpc url> <addresses.json>
//! agora-negotiation-peer buyer <dir> <rpc url> <addresses.json> <seller url> <seller address> <mode>
//! ```
//! The seller (dev account 2, fixed price 1.5 USDC, store and journal in `<dir>`)
//! listens on `<listen addr>` (port 0: any free port), prints
//! `READY <ws url> <address>` with the address it got, and serves until its standard
//! input closes. The buyer (dev account 3, store and journal in `<dir>`) resumes its
//! open deals and, if none completes, hires the seller for one forecast; it prints
//! `DEAL <agreement hash> <settling tx>` and exits 0, or `ERROR <reason>` and exits 1.
//! A line `PEER <address> <ws url>` on the buyer's standard input tells it where that
//! agent listens now (a seller restarted on another port).

use std::future::Future;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agent_sdk::{AgentBuilder, EdgeLimits, Host, HostConfig, Peer, StaticDirectory};
use negotiation::test_utils::{usdc, KIND, TOKEN};
use negotiation::{
    service_fn, token_domain, Buyer, ChainSettlement, ChainVerifier, Deal, DefaultSellerStrategy,
    PaymentMode, Seller, ServiceOutput,
};
use registry::chain::Addresses;
use registry::devnet::dev_wallet;
use serde_json::json;
use wallets::{Journal, Limits, SpendingPolicy};

type Failure = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match args.first().map(String::as_str) {
            Some("seller") => seller(args.get(1..).unwrap_or_default()).await,
            Some("buyer") => buyer(args.get(1..).unwrap_or_default()).await,
            _ => Err("usage: agora-negotiation-peer seller|buyer ...".into()),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("ERROR {e}");
            ExitCode::FAILURE
        }
    }
}

fn arg<'a>(args: &'a [String], i: usize, what: &str) -> Result<&'a str, Failure> {
    args.get(i)
        .map(String::as_str)
        .ok_or_else(|| format!("missing argument: {what}").into())
}

fn addresses(path: &str) -> Result<Addresses, Failure> {
    Ok(serde_json::from_slice(&std::fs::read(path)?)?)
}

fn host(dir: &Path, name: &str, chain_id: u64, listen: &str) -> Result<Host, Failure> {
    let edge = EdgeLimits {
        max_backoff: Duration::from_millis(200),
        ..EdgeLimits::default()
    };
    Ok(Host::spawn(
        HostConfig::new(chain_id, dir.join(format!("{name}-store")))
            .name(name)
            .workers(2)
            .edge(edge)
            .listen(listen.parse()?),
    )?)
}

async fn seller(args: &[String]) -> Result<(), Failure> {
    let dir = PathBuf::from(arg(args, 0, "dir")?);
    let listen = arg(args, 1, "listen address")?;
    let rpc = arg(args, 2, "rpc url")?;
    let addresses = addresses(arg(args, 3, "addresses.json")?)?;
    let host = host(&dir, "seller", addresses.chain_id, listen)?;
    let wallet = Arc::new(dev_wallet(2));
    let settlement = ChainSettlement::connect(rpc, wallet.clone(), &addresses, TOKEN).await?;
    let journal = Journal::open(dir.join("seller.journal"), wallet.clone())?;
    let service = service_fn(|task: String| async move {
        Ok(ServiceOutput::new(
            json!({"task": task, "forecast": "sunny", "celsius": 21}),
        ))
    });
    let seller = Seller::new(
        KIND,
        wallet.clone(),
        DefaultSellerStrategy::fixed(usdc("1.5")),
        service,
        settlement,
        journal,
    );
    let agent = seller
        .install(AgentBuilder::new("seller").wallet(wallet))
        .spawn(&host)?;
    let url = host.url().ok_or("no listen address")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY {url} {}", agent.address())?;
    out.flush()?;
    drop(out);
    // Serve until stdin closes (the test let go, or died).
    tokio::task::spawn_blocking(
        || for _ in std::io::stdin().lock().lines().map_while(Result::ok) {},
    )
    .await?;
    host.shutdown();
    Ok(())
}

async fn buyer(args: &[String]) -> Result<(), Failure> {
    let dir = PathBuf::from(arg(args, 0, "dir")?);
    let rpc = arg(args, 1, "rpc url")?;
    let addresses = addresses(arg(args, 2, "addresses.json")?)?;
    let seller_url = arg(args, 3, "seller url")?.to_owned();
    let seller: wallets::Address = arg(args, 4, "seller address")?.parse()?;
    let mode = match arg(args, 5, "mode")? {
        "authorization" => PaymentMode::Authorization,
        "escrow" => PaymentMode::Escrow,
        "channel" => PaymentMode::Channel,
        other => return Err(format!("unknown payment mode {other}").into()),
    };
    let host = host(&dir, "buyer", addresses.chain_id, "127.0.0.1:0")?;
    let wallet = Arc::new(dev_wallet(3));
    let limits = Limits {
        per_deal: Some(usdc("10")),
        ..Limits::default()
    };
    let policy = addresses.pin(
        SpendingPolicy::open(dir.join("buyer.policy"), wallet.clone(), limits)?,
        TOKEN,
    );
    // The seller's endpoint is the host's (given below, and again by `PEER` lines),
    // not the directory's: a directory endpoint would replace a newer one at each hire.
    let peer = Peer {
        address: seller,
        endpoint: None,
        price: None,
    };
    let agent = AgentBuilder::new("buyer")
        .wallet(wallet.clone())
        .policy(Arc::new(policy))
        .directory(StaticDirectory::default().with(KIND, peer))
        .spawn(&host)?;
    host.add_peer(seller, seller_url);
    let mut buyer = Buyer::new(
        wallet.clone(),
        token_domain(&addresses, TOKEN),
        Journal::open(dir.join("buyer.journal"), wallet.clone())?,
    )
    .with_verifier(ChainVerifier::connect(rpc, &addresses).await?)
    .with_delivery_timeout(Duration::from_secs(3));
    if mode != PaymentMode::Authorization {
        buyer = buyer
            .with_settlement(ChainSettlement::connect(rpc, wallet, &addresses, TOKEN).await?)
            .with_channel_orders(2);
    }
    let ctx = agent.context();
    let work = async {
        let mut done: Option<Deal> = None;
        for outcome in buyer.resume(&ctx).await? {
            match outcome {
                Ok(deal) => done = Some(deal),
                Err(e) => eprintln!("resumed deal failed: {e}"),
            }
        }
        Ok::<_, Failure>(match done {
            Some(deal) => deal,
            None => {
                buyer
                    .hire(&ctx, "Forecast for Lisbon", KIND, usdc("5"), mode)
                    .await?
            }
        })
    };
    let deal = while_following_peers(&host, work).await?;
    println!(
        "DEAL {} {}",
        deal.agreement.agreement.hash(),
        deal.delivery.settlement.tx_hash
    );
    host.shutdown();
    Ok(())
}

/// Runs `work`, meanwhile giving `host` each `PEER <address> <ws url>` line of
/// standard input as that agent's endpoint.
async fn while_following_peers<T>(host: &Host, work: impl Future<Output = T>) -> T {
    let (tx, mut lines) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let follow = async move {
        while let Some(line) = lines.recv().await {
            let mut words = line.split_whitespace();
            let peer = match (words.next(), words.next(), words.next()) {
                (Some("PEER"), Some(address), Some(url)) => address
                    .parse::<wallets::Address>()
                    .map(|a| (a, url.to_owned())),
                _ => {
                    eprintln!("ignored on stdin: {line:?}");
                    continue;
                }
            };
            match peer {
                Ok((address, url)) => {
                    eprintln!("peer {address} now at {url}");
                    host.add_peer(address, url);
                }
                Err(e) => eprintln!("ignored on stdin: {line:?}: {e}"),
            }
        }
        // Standard input closed: nothing more to follow.
        std::future::pending::<std::convert::Infallible>().await
    };
    match futures::future::select(pin!(work), pin!(follow)).await {
        futures::future::Either::Left((done, _)) => done,
        futures::future::Either::Right((never, _)) => match never {},
    }
}
