//! Runtime benchmarks, each beside a baseline measured in the same run.
//!
//! `cargo bench -p agent-sdk --bench runtime` prints:
//! - local one-way messages per second between two agents on one host (typed
//!   value, recipient/chain/expiry/replay checks, skill dispatch) vs two bare actix
//!   actors doing `do_send` of the same value (goal ≥ 0.8×, ≥ 1M msg/s);
//! - WebSocket request/reply round trips per second between two hosts on loopback
//!   (signed envelopes both ways, verified, replay state group-committed to disk),
//!   one at a time and 32 in flight, vs a bare tokio-tungstenite echo of the same
//!   bytes, and vs the signature work alone (2 signs + 2 verifies per round trip);
//! - resident memory per idle agent with 10,000 agents in one process (goal ≤ 20 KB).
//!
//! Set `AGORA_BENCH_QUICK=1` for a short run, `AGORA_BENCH_ONLY=local|ws|memory` for
//! one part.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Arbiter, System};
use agent_sdk::prelude::*;
use agent_sdk::testing::{Echo, Echoer};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

#[derive(Clone, Copy, Serialize, Deserialize, JsonSchema)]
struct Ping(u64);

impl Request for Ping {
    const KIND: &'static str = "bench.Ping";
    type Response = ();
}

impl actix::Message for Ping {
    type Result = ();
}

struct Sink(Arc<AtomicU64>);

impl Actor for Sink {
    type Context = actix::Context<Self>;
}

impl actix::Handler<Ping> for Sink {
    type Result = ();
    fn handle(&mut self, m: Ping, _: &mut Self::Context) {
        self.0.fetch_add(m.0 & 1 | 1, Ordering::Relaxed);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn wait_for(counter: &AtomicU64, n: u64) {
    while counter.load(Ordering::Relaxed) < n {
        tokio::task::yield_now().await;
    }
}

/// Bare actix: an actor on its own arbiter, fed with do_send from this thread.
async fn bare_actix(n: u64) -> f64 {
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let arbiter = Arbiter::new();
    let addr = Sink::start_in_arbiter(&arbiter.handle(), move |_| Sink(c));
    let t = Instant::now();
    for i in 0..n {
        addr.do_send(Ping(i));
    }
    wait_for(&count, n).await;
    let rate = n as f64 / t.elapsed().as_secs_f64();
    arbiter.stop();
    rate
}

/// Ours: two agents on a one-worker host, one-way tells in one dialogue.
async fn agents_local(host: &Host, n: u64) -> f64 {
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let mailbox: usize = std::env::var("AGORA_BENCH_MAILBOX")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(1024);
    let b = AgentBuilder::new("sink")
        .limits(agent_sdk::AgentLimits {
            mailbox,
            ..agent_sdk::AgentLimits::default()
        })
        .skill(skill_fn(move |_ctx: Context, Ping(i): Ping| {
            c.fetch_add(i & 1 | 1, Ordering::Relaxed);
            async { Ok(()) }
        }))
        .spawn(host)
        .unwrap();
    let a = AgentBuilder::new("source").spawn(host).unwrap();
    let ctx = a.context();
    let d = ctx.new_dialogue();
    let t = Instant::now();
    for i in 0..n {
        ctx.tell_in(d, b.address(), Ping(i)).await.unwrap();
    }
    wait_for(&count, n).await;
    let rate = n as f64 / t.elapsed().as_secs_f64();
    host.stop_agent(&a.address());
    host.stop_agent(&b.address());
    rate
}

/// A bare WebSocket echo server on loopback; returns its URL.
async fn echo_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_binary() && ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    url
}

async fn bare_ws_round_trips(url: &str, n: u64, bytes: usize) -> f64 {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let frame = vec![b'x'; bytes];
    let t = Instant::now();
    for _ in 0..n {
        ws.send(WsMessage::Binary(frame.clone())).await.unwrap();
        ws.next().await.unwrap().unwrap();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

async fn agent_round_trips(ctx: &Context, to: Address, n: u64, in_flight: u64) -> f64 {
    let t = Instant::now();
    let per = n / in_flight;
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let d = ctx.new_dialogue();
                for i in 0..per {
                    let text = format!("forecast {i}");
                    let r = ctx
                        .ask_in(d, to, Echo { text }, Duration::from_secs(30))
                        .await
                        .unwrap();
                    assert!(r.text.starts_with("forecast"));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (per * in_flight) as f64 / t.elapsed().as_secs_f64()
}

fn signature_work_round_trips(n: u64) -> f64 {
    let (a, b) = (Wallet::random(), Wallet::random());
    let (ka, kb) = (a.public_key(), b.public_key());
    let t = Instant::now();
    for i in 0..n {
        let m = format!("round trip {i}");
        let s1 = a.sign_message(&m).unwrap();
        let h = wallets::eip191::hash_message(&m);
        s1.verify_with_key(&h, &ka).unwrap();
        let s2 = b.sign_message(&m).unwrap();
        s2.verify_with_key(&h, &kb).unwrap();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let quick = std::env::var_os("AGORA_BENCH_QUICK").is_some();
    let rounds = if quick { 3 } else { 5 };
    let n_local: u64 = if quick { 200_000 } else { 1_000_000 };
    let n_ws: u64 = if quick { 500 } else { 2_000 };
    let only = std::env::var("AGORA_BENCH_ONLY").unwrap_or_default();
    let part = move |name: &str| only.is_empty() || only == name;
    let system = System::new();
    system.block_on(async move {
        let dir = tempfile::tempdir().unwrap();

        // 1. Local messages.
        if part("local") {
        let host = Host::spawn(HostConfig::new(1337, dir.path().join("local")).workers(1)).unwrap();
        let (mut ours, mut bare) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            bare.push(bare_actix(n_local).await);
            ours.push(agents_local(&host, n_local).await);
        }
        drop(host);
        let (o, b) = (median(ours), median(bare));
        println!("local one-way messages: agents {:.2} M/s, bare actix {:.2} M/s, ratio {:.2} (goal >= 0.8, >= 1 M/s)", o / 1e6, b / 1e6, o / b);
        }

        // 2. WebSocket round trips.
        if part("ws") {
        let h1 = Host::spawn(HostConfig::new(1337, dir.path().join("h1")).workers(1).listen("127.0.0.1:0".parse().unwrap())).unwrap();
        let h2 = Host::spawn(HostConfig::new(1337, dir.path().join("h2")).workers(1).listen("127.0.0.1:0".parse().unwrap())).unwrap();
        let server = AgentBuilder::new("echo").skill(Echoer).spawn(&h2).unwrap();
        let client = AgentBuilder::new("client").spawn(&h1).unwrap();
        h1.add_peer(server.address(), h2.url().unwrap());
        let ctx = client.context();
        agent_round_trips(&ctx, server.address(), 50, 1).await; // connect, warm up
        let echo_url = echo_server().await;
        let (mut seq, mut par, mut raw, mut sig) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            raw.push(bare_ws_round_trips(&echo_url, n_ws, 560).await);
            sig.push(signature_work_round_trips(n_ws / 4));
            seq.push(agent_round_trips(&ctx, server.address(), n_ws / 2, 1).await);
            par.push(agent_round_trips(&ctx, server.address(), n_ws * 2, 32).await);
        }
        let (seq, par, raw, sig) = (median(seq), median(par), median(raw), median(sig));
        println!("websocket round trips: agents {seq:.0}/s one at a time, {par:.0}/s with 32 in flight; bare ws echo {raw:.0}/s (ratio {:.3}); signature work alone {sig:.0}/s (ratio {:.2} one at a time, {:.2} with 32 in flight)", seq / raw, seq / sig, par / sig);
        drop((h1, h2));
        }
        if !part("memory") {
            return;
        }

        // 3. Memory per idle agent.
        let host = Host::spawn(HostConfig::new(1337, dir.path().join("many")).workers(2)).unwrap();
        let first = AgentBuilder::new("warm").skill(Echoer).spawn(&host).unwrap();
        // Warm the host up: once the first agent answered, the runtime runs.
        first.context().ask(first.address(), Echo { text: "warm".into() }).await.unwrap();
        let n_agents = 10_000u64;
        let before = rss_bytes();
        let mut handles = Vec::with_capacity(n_agents as usize);
        for i in 0..n_agents {
            handles.push(AgentBuilder::new(format!("agent-{i}")).skill(Echoer).spawn(&host).unwrap());
        }
        // Wait until every actor started: each of the two workers starts its agents
        // in order, so once the last agent of each answered, all have started.
        let probe = first.context();
        for last in handles.iter().rev().take(2) {
            probe.ask(last.address(), Echo { text: "up".into() }).await.unwrap();
        }
        let after = rss_bytes();
        let per = (after.saturating_sub(before)) as f64 / n_agents as f64;
        println!("memory per idle agent: {:.1} KB with {n_agents} agents (goal <= 20 KB)", per / 1024.0);
        drop(handles);
        drop(host);
    });
}
