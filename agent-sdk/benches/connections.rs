//! Many peer connections to one host, each figure beside a baseline from the same
//! run.
//!
//! `cargo bench -p agent-sdk --bench connections` starts a host with one echo agent
//! on 127.0.0.1 in a child process (this binary again, with
//! `AGORA_BENCH_ROLE=server`), so that its resident memory is the host's alone, and
//! opens N WebSocket connections to it from this process (default 1,000; set
//! `AGORA_BENCH_CONNECTIONS`), each a peer with a wallet of its own sending signed
//! envelopes by hand. It prints:
//! - resident memory per open connection on the serving host: its RSS delta over
//!   the N connections, once each has done one signed ask and got its signed reply,
//!   against the host with one connection;
//! - round trips per second with all N connections busy (one ask in flight on each)
//!   vs the same asks over 16 connections (64 in flight on each);
//! - connections past `EdgeLimits::max_connections`: refused by the client's count
//!   and by the host's counter, and whether `/health` answers at the cap;
//! - fairness: polite peers asking steadily (one ask every 100 ms each) alone, then
//!   while a few peers flood (64 asks in flight each, as fast as they are answered):
//!   the polite peers' p50/p99 latency and each class's share of the replies;
//! - the same polite peers beside a few peers that ask as fast as they are read and
//!   never read a reply (the host disconnects them after
//!   `EdgeLimits::write_timeout`), and the host's RSS before and after;
//! - the host's RSS after all that.
//!
//! Everything stays on loopback and is bounded in count and time.
//! `AGORA_BENCH_QUICK=1` for a short run.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_core::envelope::{Draft, Envelope};
use agent_sdk::prelude::*;
use agent_sdk::testing::Echoer;
use agent_sdk::{Clock, EdgeLimits};
use futures::{SinkExt, StreamExt};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use wallets::B256;

const CHAIN: u64 = 1337;
const ROLE: &str = "AGORA_BENCH_ROLE";
/// The longest any single wait of the bench lasts.
const WAIT: Duration = Duration::from_secs(10);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The serving host: one echo agent; answers `stats` on stdin with its RSS and
/// edge counters; stops when stdin closes.
fn server() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::spawn(
        HostConfig::new(CHAIN, dir.path().join("host"))
            .workers(2)
            .listen("127.0.0.1:0".parse()?),
    )?;
    let echo = AgentBuilder::new("echo").skill(Echoer).spawn(&host)?;
    let url = host.url().ok_or_else(|| anyhow::anyhow!("not listening"))?;
    println!("READY {url} {}", echo.address());
    for line in std::io::stdin().lock().lines() {
        if line?.trim() == "stats" {
            let s = host.edge_stats();
            println!(
                "STATS {} {} {} {} {}",
                rss_bytes(),
                s.connections,
                s.connections_refused,
                s.refused,
                s.write_timeouts
            );
        }
    }
    host.shutdown();
    Ok(())
}

#[derive(Clone, Copy, Debug)]
struct Stats {
    rss: u64,
    connections: u64,
    connections_refused: u64,
    refused: u64,
    write_timeouts: u64,
}

/// The serving host's process; it stops when its stdin closes, and is killed if
/// it does not.
struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
    url: String,
    agent: Address,
}

impl Server {
    fn spawn() -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(ROLE, "server")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let ready = lines.recv_timeout(Duration::from_secs(30)).unwrap();
        let mut parts = ready.split_whitespace();
        assert_eq!(parts.next(), Some("READY"), "server said {ready:?}");
        let url = parts.next().unwrap().to_owned();
        let agent = parts.next().unwrap().parse().unwrap();
        Self {
            child,
            stdin,
            lines,
            url,
            agent,
        }
    }

    fn stats(&mut self) -> Stats {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "stats").unwrap();
        stdin.flush().unwrap();
        let line = self.lines.recv_timeout(WAIT).unwrap();
        let n: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap())
            .collect();
        Stats {
            rss: n[0],
            connections: n[1],
            connections_refused: n[2],
            refused: n[3],
            write_timeouts: n[4],
        }
    }

    fn addr(&self) -> String {
        self.url.trim_start_matches("ws://").to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.stdin.take());
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now_ms() -> u64 {
    Clock::system().unix_ms()
}

/// A signed `test.Echo` ask.
fn ask_frame(from: &Wallet, to: Address, dialogue: B256, sequence: u64) -> Message {
    let env = Envelope::seal(
        from,
        Draft {
            recipient: to,
            dialogue,
            sequence,
            expiry: now_ms() + 60_000,
            chain_id: CHAIN,
            kind: "ask/test.Echo".into(),
            payload: serde_json::json!({ "text": "forecast" }),
        },
    )
    .unwrap();
    Message::Binary(env.to_bytes())
}

/// One peer: a wallet and its connection; its steady asks go in one dialogue.
struct Peer {
    wallet: Wallet,
    ws: Ws,
    dialogue: B256,
    sequence: u64,
}

#[derive(Debug)]
enum Failed {
    Refused,
    TimedOut,
    Closed,
}

impl Peer {
    async fn connect(url: &str) -> Option<Self> {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .ok()?
            .ok()?;
        Some(Self {
            wallet: Wallet::random(),
            ws,
            dialogue: B256::random(),
            sequence: 0,
        })
    }

    /// One ask and its answer: the reply's round-trip time, or why none came.
    async fn ask(&mut self, to: Address) -> Result<Duration, Failed> {
        self.sequence += 1;
        let frame = ask_frame(&self.wallet, to, self.dialogue, self.sequence);
        let t = Instant::now();
        self.ws.send(frame).await.map_err(|_| Failed::Closed)?;
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next()).await;
            match next.map_err(|_| Failed::TimedOut)? {
                Some(Ok(Message::Binary(b))) => {
                    let Ok(env) = Envelope::from_bytes(&b) else {
                        continue;
                    };
                    if env.kind == "reply" && env.payload["re"] == self.sequence {
                        return Ok(t.elapsed());
                    }
                }
                Some(Ok(Message::Text(t))) => {
                    let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
                    if v["sequence"] == self.sequence {
                        return Err(Failed::Refused);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Err(Failed::Closed),
            }
        }
    }
}

/// Connects `n` peers, `64` at a time, each doing one ask; the ones that got
/// their reply, and how many did not.
async fn open_peers(url: &str, to: Address, n: usize, ask: bool) -> (Vec<Peer>, usize) {
    let peers: Vec<Option<Peer>> = futures::stream::iter(0..n)
        .map(|_| async move {
            let mut p = Peer::connect(url).await?;
            if ask {
                p.ask(to).await.ok()?;
            }
            Some(p)
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let failed = peers.iter().filter(|p| p.is_none()).count();
    (peers.into_iter().flatten().collect(), failed)
}

/// `n` pre-signed asks from `from`, each in a dialogue of its own (so they may be
/// admitted in any order).
fn presign(from: &Wallet, to: Address, n: usize) -> Vec<Message> {
    (0..n)
        .map(|_| ask_frame(from, to, B256::random(), 1))
        .collect()
}

/// Pre-signs `n` asks for each peer, on two threads.
fn presign_all(peers: &[Peer], to: Address, n: usize) -> Vec<Vec<Message>> {
    let half = peers.len().div_ceil(2);
    std::thread::scope(|s| {
        let parts: Vec<_> = peers
            .chunks(half.max(1))
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|p| presign(&p.wallet, to, n))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    sent: u64,
    replied: u64,
    refused: u64,
}

/// Sends `frames` with at most `window` unanswered, until all are answered or
/// `until`; the peer comes back with what was sent and answered.
async fn pipeline(
    peer: Peer,
    frames: Vec<Message>,
    window: usize,
    until: Instant,
) -> (Peer, Counts) {
    let Peer {
        wallet,
        ws,
        dialogue,
        sequence,
    } = peer;
    let total = frames.len() as u64;
    let (mut sink, mut stream) = ws.split();
    let permits = Arc::new(Semaphore::new(window));
    let writer = async {
        let mut sent = 0u64;
        for f in frames {
            let Ok(Ok(p)) = tokio::time::timeout_at(until.into(), permits.acquire()).await else {
                break;
            };
            p.forget();
            match tokio::time::timeout_at(until.into(), sink.send(f)).await {
                Ok(Ok(())) => sent += 1,
                _ => break,
            }
        }
        sent
    };
    let reader = async {
        let (mut replied, mut refused) = (0u64, 0u64);
        while replied + refused < total {
            match tokio::time::timeout_at(until.into(), stream.next()).await {
                Ok(Some(Ok(Message::Binary(_)))) => replied += 1,
                Ok(Some(Ok(Message::Text(_)))) => refused += 1,
                Ok(Some(Ok(_))) => continue,
                _ => break,
            }
            permits.add_permits(1);
        }
        (replied, refused)
    };
    let (sent, (replied, refused)) = tokio::join!(writer, reader);
    let ws = sink.reunite(stream).unwrap();
    (
        Peer {
            wallet,
            ws,
            dialogue,
            sequence,
        },
        Counts {
            sent,
            replied,
            refused,
        },
    )
}

/// Runs `pipeline` on every peer with its frames at once; the peers back, and
/// the counts summed.
async fn pipelines(
    peers: Vec<Peer>,
    frames: Vec<Vec<Message>>,
    window: usize,
    until: Instant,
) -> (Vec<Peer>, Counts) {
    let tasks: Vec<_> = peers
        .into_iter()
        .zip(frames)
        .map(|(p, f)| tokio::spawn(pipeline(p, f, window, until)))
        .collect();
    let mut back = Vec::new();
    let mut sum = Counts::default();
    for t in tasks {
        let (p, c) = t.await.unwrap();
        back.push(p);
        sum.sent += c.sent;
        sum.replied += c.replied;
        sum.refused += c.refused;
    }
    (back, sum)
}

/// Round trips per second of `per_peer` pre-signed asks from each peer, `window`
/// in flight on each.
async fn throughput(
    peers: Vec<Peer>,
    to: Address,
    per_peer: usize,
    window: usize,
) -> (Vec<Peer>, f64, Counts) {
    let frames = presign_all(&peers, to, per_peer);
    let t = Instant::now();
    let (peers, c) = pipelines(
        peers,
        frames,
        window,
        Instant::now() + Duration::from_secs(120),
    )
    .await;
    (peers, c.replied as f64 / t.elapsed().as_secs_f64(), c)
}

#[derive(Debug, Default)]
struct Polite {
    latencies: Vec<Duration>,
    failed: u64,
}

/// Each peer asks once every `every` (one at a time) until `until`.
async fn polite(
    peers: Vec<Peer>,
    to: Address,
    every: Duration,
    until: Instant,
) -> (Vec<Peer>, Polite) {
    let n = peers.len() as u32;
    let tasks: Vec<_> = peers
        .into_iter()
        .enumerate()
        .map(|(i, mut p)| {
            tokio::spawn(async move {
                // Spread the peers over the period.
                tokio::time::sleep(every * i as u32 / n.max(1)).await;
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut out = Polite::default();
                loop {
                    tick.tick().await;
                    if Instant::now() >= until {
                        break;
                    }
                    match p.ask(to).await {
                        Ok(l) => out.latencies.push(l),
                        Err(_) => out.failed += 1,
                    }
                }
                (p, out)
            })
        })
        .collect();
    let mut back = Vec::new();
    let mut all = Polite::default();
    for t in tasks {
        let (p, o) = t.await.unwrap();
        back.push(p);
        all.latencies.extend(o.latencies);
        all.failed += o.failed;
    }
    all.latencies.sort();
    (back, all)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn pct(v: &[Duration], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i].as_secs_f64() * 1e3
}

/// Sends pre-signed asks as fast as the host reads them until `until`,
/// never reading a reply; the count sent, and the connection (kept open).
async fn deaf_flood(
    addr: &str,
    url: &str,
    frames: Vec<Message>,
    until: Instant,
) -> (
    u64,
    tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(addr.parse().unwrap()).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    let mut sent = 0;
    for f in frames {
        match tokio::time::timeout_at(until.into(), ws.send(f)).await {
            Ok(Ok(())) => sent += 1,
            _ => break,
        }
    }
    (sent, ws)
}

/// `GET /health` over a fresh connection: the status line, or why none came.
fn health(addr: &str) -> String {
    let get = || -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect(addr)?;
        s.set_read_timeout(Some(WAIT))?;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out.lines().next().unwrap_or("(closed at once)").to_owned())
    };
    get().unwrap_or_else(|e| format!("({e})"))
}

/// Raises the soft limit of open files to the hard one (the child inherits it).
fn raise_nofile() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current != l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

fn main() {
    if std::env::var_os(ROLE).is_some() {
        if let Err(e) = server() {
            eprintln!("server: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    let quick = std::env::var_os("AGORA_BENCH_QUICK").is_some();
    let n: usize = std::env::var("AGORA_BENCH_CONNECTIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000);
    let nofile = raise_nofile();
    assert!(
        nofile > 2 * n as u64 + 256,
        "open-file limit {nofile} is too low for {n} connections on both sides"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(n, quick));
}

async fn run(n: usize, quick: bool) {
    let max_connections = EdgeLimits::default().max_connections;
    let phase = Duration::from_secs(if quick { 2 } else { 5 });
    let per_peer = if quick { 2 } else { 5 };
    let (n_polite, n_flood, flood_window) = (50usize, 4usize, 64usize);
    let mut server = Server::spawn();
    let (url, to) = (server.url.clone(), server.agent);

    // 1. Memory per connection: the host with one connection that has done an ask,
    // then with N more.
    let (warm, _) = open_peers(&url, to, 1, true).await;
    assert_eq!(warm.len(), 1, "the host does not answer");
    let before = server.stats();
    let t = Instant::now();
    let (mut peers, failed) = open_peers(&url, to, n, true).await;
    let opened = t.elapsed();
    let after = server.stats();
    let per = after.rss.saturating_sub(before.rss) as f64 / peers.len().max(1) as f64;
    println!(
        "memory per connection: {:.1} KB ({} connections each with one signed ask answered, in {:.1} s, {failed} failed; host RSS {:.1} MB with 1 connection, {:.1} MB with {})",
        per / 1024.0,
        peers.len(),
        opened.as_secs_f64(),
        before.rss as f64 / 1048576.0,
        after.rss as f64 / 1048576.0,
        peers.len() + 1
    );

    // 2. Past the cap: open connections until the cap, and 50 more.
    let open_now = peers.len() + warm.len();
    let extra = max_connections.saturating_sub(open_now) + 50;
    let (extras, refused) = open_peers(&url, to, extra, false).await;
    let at_cap = server.stats();
    let health_at_cap = health(&server.addr());
    drop(extras);
    println!(
        "past max_connections ({max_connections}): {extra} more tried with {open_now} open, {refused} refused (host counter {}); /health at the cap: {health_at_cap}",
        at_cap.connections_refused - after.connections_refused
    );

    // 3. Throughput: the same asks over 16 connections (64 in flight on each), then
    // over all N (one in flight on each); the medians of a few rounds.
    let few = 16.min(peers.len());
    let total = per_peer * peers.len();
    let (mut bases, mut rates) = (Vec::new(), Vec::new());
    let (mut bc, mut ac) = (Counts::default(), Counts::default());
    for _ in 0..if quick { 1 } else { 3 } {
        let rest = peers.split_off(few);
        let (few_peers, base, c) = throughput(peers, to, total / few.max(1), 64).await;
        bases.push(base);
        bc = c;
        peers = few_peers;
        peers.extend(rest);
        let (all, rate, c) = throughput(peers, to, per_peer, 1).await;
        rates.push(rate);
        ac = c;
        peers = all;
    }
    let (rate, base) = (median(rates), median(bases));
    let all = peers;
    println!(
        "round trips with {} connections open: {rate:.0}/s all busy (one in flight each, {} answered, {} refused) vs {base:.0}/s over {few} of them (64 in flight each, {} answered, {} refused); ratio {:.2}",
        all.len() + 1,
        ac.replied,
        ac.refused,
        bc.replied,
        bc.refused,
        rate / base
    );
    // The host answers /health between the phases.
    let health_now = health(&server.addr());

    // 4. Fairness: polite peers alone, then beside flooders.
    let mut peers = all;
    let idle = peers.split_off(n_polite + n_flood);
    let flooders = peers.split_off(n_polite);
    let every = Duration::from_millis(100);
    let (politely, alone) = polite(peers, to, every, Instant::now() + phase).await;
    // Enough pre-signed asks for a flooder at its full rate limit (2,000/s).
    let flood_frames = presign_all(&flooders, to, 2_000 * (phase.as_secs() as usize + 1));
    let until = Instant::now() + phase;
    let flood = tokio::spawn(pipelines(flooders, flood_frames, flood_window, until));
    let (politely, beside) = polite(politely, to, every, until).await;
    let (_, fc) = flood.await.unwrap();
    let served = beside.latencies.len() as u64 + fc.replied;
    println!(
        "polite peers ({n_polite}, one ask per 100 ms each) alone: p50 {:.2} ms, p99 {:.2} ms, {} answered, {} failed",
        pct(&alone.latencies, 0.5),
        pct(&alone.latencies, 0.99),
        alone.latencies.len(),
        alone.failed
    );
    println!(
        "polite peers beside {n_flood} flooders ({flood_window} in flight each): p50 {:.2} ms, p99 {:.2} ms, {} answered, {} failed; share of replies: polite {:.1}%, flooders {:.1}% ({} sent, {} answered, {} refused: {:.0}/s per flooder)",
        pct(&beside.latencies, 0.5),
        pct(&beside.latencies, 0.99),
        beside.latencies.len(),
        beside.failed,
        100.0 * beside.latencies.len() as f64 / served.max(1) as f64,
        100.0 * fc.replied as f64 / served.max(1) as f64,
        fc.sent,
        fc.replied,
        fc.refused,
        fc.replied as f64 / phase.as_secs_f64() / n_flood as f64
    );

    // 5. Peers that ask and never read their replies (a small receive buffer, so
    // that the host's send side fills soon), beside the polite peers; long enough
    // for the host to give up on them.
    let write_timeout = EdgeLimits::default().write_timeout;
    let deaf_phase = if quick {
        write_timeout + phase
    } else {
        write_timeout * 3
    };
    let (politely, deaf_alone) = polite(politely, to, every, Instant::now() + phase).await;
    let before_deaf = server.stats();
    let per_deaf = 2_000 * (deaf_phase.as_secs() as usize + 1);
    let deaf_frames: Vec<Vec<Message>> = std::thread::scope(|s| {
        let signers: Vec<_> = (0..n_flood)
            .map(|_| s.spawn(move || presign(&Wallet::random(), to, per_deaf)))
            .collect();
        signers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let until = Instant::now() + deaf_phase;
    let deaf: Vec<_> = deaf_frames
        .into_iter()
        .map(|frames| {
            let addr = server.addr();
            let url = url.clone();
            tokio::spawn(async move { deaf_flood(&addr, &url, frames, until).await })
        })
        .collect();
    let (politely, beside_deaf) = polite(politely, to, every, until).await;
    let mut deaf_sent = 0;
    let mut deaf_conns = Vec::new();
    for d in deaf {
        let (sent, conn) = d.await.unwrap();
        deaf_sent += sent;
        deaf_conns.push(conn);
    }
    let after_deaf = server.stats();
    let (politely, after_alone) = polite(politely, to, every, Instant::now() + phase).await;
    println!(
        "polite peers beside {n_flood} peers that never read their replies, for {} s ({deaf_sent} asks sent, {} disconnected by the host): p50 {:.2} ms, p99 {:.2} ms, {} answered, {} failed (alone just before: p50 {:.2} ms, p99 {:.2} ms; just after: p50 {:.2} ms, p99 {:.2} ms); host RSS {:.1} MB -> {:.1} MB",
        deaf_phase.as_secs(),
        after_deaf.write_timeouts - before_deaf.write_timeouts,
        pct(&beside_deaf.latencies, 0.5),
        pct(&beside_deaf.latencies, 0.99),
        beside_deaf.latencies.len(),
        beside_deaf.failed,
        pct(&deaf_alone.latencies, 0.5),
        pct(&deaf_alone.latencies, 0.99),
        pct(&after_alone.latencies, 0.5),
        pct(&after_alone.latencies, 0.99),
        before_deaf.rss as f64 / 1048576.0,
        after_deaf.rss as f64 / 1048576.0,
    );
    drop(deaf_conns);

    // 6. Still up, and what it holds now.
    let end = server.stats();
    println!(
        "after the load: /health {health_now} between phases, {} now; host RSS {:.1} MB with {} connections open; envelopes refused at the edge: {}; connections accepted: {}",
        health(&server.addr()),
        end.rss as f64 / 1048576.0,
        idle.len() + n_polite + 1,
        end.refused,
        end.connections
    );
    drop((idle, politely, warm));
}
