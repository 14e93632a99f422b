//! A host with one agent (skills `test.Add` and `test.Echo`) in a process of its
//! own, for the SDK's multi-process tests.
//!
//! ```text
//! AGORA_PEER_KEY=<hex secret> agora-test-peer <store dir> <listen addr> [<chain id>]
//! ```
//! Prints `READY <ws url> <agent address>` once it listens, then serves until
//! killed or until its standard input closes.

use std::io::{BufRead, Write};
use std::sync::Arc;

use agent_sdk::testing::{Counter, Echoer};
use agent_sdk::{AgentBuilder, Host, HostConfig};
use wallets::Wallet;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: agora-test-peer <store dir> <listen addr> [<chain id>]";
    let store = args.next().ok_or(usage)?;
    let listen = args.next().ok_or(usage)?.parse()?;
    let chain_id = args.next().map_or(Ok(1337), |c| c.parse())?;
    let key = std::env::var("AGORA_PEER_KEY").map_err(|_| "AGORA_PEER_KEY is not set")?;
    let wallet = Arc::new(Wallet::from_hex(&key)?);
    let host = Host::spawn(HostConfig::new(chain_id, store).listen(listen).workers(2))?;
    let agent = AgentBuilder::new("peer")
        .wallet(wallet)
        .skill(Counter)
        .skill(Echoer)
        .spawn(&host)?;
    let url = host.url().ok_or("no listen address")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY {url} {}", agent.address())?;
    out.flush()?;
    drop(out);
    // Serve until stdin closes (the parent died or let go).
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
    }
    host.shutdown();
    Ok(())
}
