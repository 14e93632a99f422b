//! Two agents on two hosts (two ports) talking over loopback WebSocket.
//!
//! Run: `cargo run -p agent-sdk --example two_hosts`
//!
//! Starts host A on a free port and host B on another, puts a counter agent on B and
//! a client on A, and has the client keep a running total in one dialogue with the
//! counter: every message is an EIP-712 signed envelope, verified by the receiving
//! host before the skill sees it. Prints each total, the connection count of each
//! host (one connection, used both ways), and B's `/metrics` URL.

use std::time::Duration;

use agent_sdk::prelude::*;
use agent_sdk::testing::{Add, Counter};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let any_port = "127.0.0.1:0".parse()?;
    let a = Host::spawn(
        HostConfig::new(1337, dir.path().join("a"))
            .name("a")
            .listen(any_port),
    )?;
    let b = Host::spawn(
        HostConfig::new(1337, dir.path().join("b"))
            .name("b")
            .listen(any_port),
    )?;
    let counter = AgentBuilder::new("counter").skill(Counter).spawn(&b)?;
    let client = AgentBuilder::new("client").spawn(&a)?;
    let url = b
        .url()
        .ok_or_else(|| anyhow::anyhow!("host b does not listen"))?;
    a.add_peer(counter.address(), url.clone());
    println!("host a: {}, host b: {url}", a.url().unwrap_or_default());

    let ctx = client.context();
    let dialogue = ctx.new_dialogue();
    for n in [5, 10, 27] {
        let total = ctx
            .ask_in(
                dialogue,
                counter.address(),
                Add { n },
                Duration::from_secs(10),
            )
            .await?;
        println!("added {n:>2}: total {total}");
    }
    println!(
        "connections: a dialed {}, b accepted {}",
        a.edge_stats().connections,
        b.edge_stats().connections
    );
    println!(
        "metrics: http://{}/metrics",
        b.local_addr().map(|x| x.to_string()).unwrap_or_default()
    );
    Ok(())
}
