//! A loopback HTTP/1.1 proxy in front of a JSON-RPC node that breaks one exchange:
//! for the first request whose body contains a marker it closes the client's
//! connection, either after the node took the request and answered
//! ([`Fault::SwallowAnswer`]: a node that died before answering) or before the
//! request reached the node ([`Fault::DropRequest`]: a connection that broke on the
//! way).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long the proxy waits for any one read or write before it drops the connection.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request or response head the proxy accepts.
const MAX_HEAD: usize = 64 * 1024;

/// What the proxy saw, shared between its connections.
#[derive(Debug, Default)]
struct Seen {
    /// Bodies of requests that contained the marker, in order.
    marked: Vec<Vec<u8>>,
    /// Bodies of the requests whose exchange was broken.
    faulted: Vec<Vec<u8>>,
}

/// How the proxy breaks the marked exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The node gets the request and answers; the client hears nothing.
    SwallowAnswer,
    /// The node never gets the request; the client hears nothing.
    DropRequest,
}

/// A running proxy; stops accepting when dropped.
#[derive(Debug)]
pub(crate) struct FaultyProxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultyProxy {
    /// Listens on a free loopback port and forwards to `upstream`; breaks the exchange
    /// of the first request whose body contains `marker` as `fault` says.
    pub(crate) async fn spawn(upstream: SocketAddr, marker: &'static str, fault: Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let task = serve(listener, seen.clone(), move |client, seen| async move {
            relay(client, upstream, marker.as_bytes(), fault, &seen).await
        });
        Self { addr, seen, task }
    }

    /// `http://addr` of the proxy.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Bodies of the requests that contained the marker, in order.
    pub(crate) fn marked(&self) -> Vec<Vec<u8>> {
        self.seen.lock().unwrap().marked.clone()
    }

    /// Bodies of the requests whose exchange was broken (at most one).
    pub(crate) fn faulted(&self) -> Vec<Vec<u8>> {
        self.seen.lock().unwrap().faulted.clone()
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections on `listener` until aborted, each handled by `handle` on a
/// task of its own with the proxy's shared record.
fn serve<S, F, Fut>(listener: TcpListener, seen: Arc<S>, handle: F) -> tokio::task::JoinHandle<()>
where
    S: Send + Sync + 'static,
    F: Fn(TcpStream, Arc<S>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let connection = handle(client, seen.clone());
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    eprintln!("proxy connection ended: {e}");
                }
            });
        }
    })
}

/// One HTTP/1.1 message read off a stream: head and body as they came.
struct Message {
    raw: Vec<u8>,
    body_at: usize,
    close: bool,
}

impl Message {
    fn body(&self) -> &[u8] {
        &self.raw[self.body_at..]
    }
}

fn io_error(reason: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, reason)
}

/// Reads one message (request or response) framed by `Content-Length`; `None` at a
/// clean end of stream before its first byte. `buf` keeps bytes read past the end of
/// the message for the next one (keep-alive).
async fn read_message(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<Message>> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(io_error("head too long".into()));
        }
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(IO_TIMEOUT, stream.read(&mut chunk)).await??;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(io_error("end of stream inside a head".into()))
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let mut length = 0;
    let mut close = false;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        match (name.trim(), value.trim()) {
            ("content-length", v) => {
                length = v
                    .parse::<usize>()
                    .map_err(|e| io_error(format!("content-length {v:?}: {e}")))?
            }
            ("transfer-encoding", v) => {
                return Err(io_error(format!("transfer-encoding {v} is not supported")))
            }
            ("connection", v) if v.contains("close") => close = true,
            _ => {}
        }
    }
    if head.starts_with("http/1.0") {
        close = true;
    }
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(IO_TIMEOUT, stream.read(&mut chunk)).await??;
        if n == 0 {
            return Err(io_error("end of stream inside a body".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let rest = buf.split_off(head_end + length);
    let raw = std::mem::replace(buf, rest);
    Ok(Some(Message {
        raw,
        body_at: head_end,
        close,
    }))
}

async fn write_all(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    tokio::time::timeout(IO_TIMEOUT, stream.write_all(bytes)).await?
}

/// Relays requests on one client connection over one upstream connection, one at a
/// time, until either side closes or the marked exchange is broken.
async fn relay(
    mut client: TcpStream,
    upstream: SocketAddr,
    marker: &[u8],
    fault: Fault,
    seen: &Mutex<Seen>,
) -> std::io::Result<()> {
    let mut node = TcpStream::connect(upstream).await?;
    let (mut from_client, mut from_node) = (Vec::new(), Vec::new());
    // Whether this exchange is the one to break, recorded once.
    let breaks = |request: &Message, now: Fault| {
        let marked = request.body().windows(marker.len()).any(|w| w == marker);
        let mut seen = seen.lock().unwrap();
        if marked && now == Fault::DropRequest {
            seen.marked.push(request.body().to_vec());
        }
        let hit = marked && now == fault && seen.faulted.is_empty();
        if hit {
            seen.faulted.push(request.body().to_vec());
        }
        hit
    };
    while let Some(request) = read_message(&mut client, &mut from_client).await? {
        if breaks(&request, Fault::DropRequest) {
            // The request never reaches the node.
            return Ok(());
        }
        write_all(&mut node, &request.raw).await?;
        let Some(answer) = read_message(&mut node, &mut from_node).await? else {
            return Err(io_error("the node closed without answering".into()));
        };
        if breaks(&request, Fault::SwallowAnswer) {
            // The node has taken the request and answered; the client never hears it.
            return Ok(());
        }
        write_all(&mut client, &answer.raw).await?;
        if request.close || answer.close {
            return Ok(());
        }
    }
    Ok(())
}

/// Block ranges (`from`, `to`) of the `eth_getLogs` calls relayed, then of those
/// refused.
type Ranges = (Vec<(u64, u64)>, Vec<(u64, u64)>);

/// A loopback proxy in front of a JSON-RPC node that refuses `eth_getLogs` over more
/// than `cap` blocks, answering with the JSON-RPC error hosted nodes give (as they
/// cap a query's block range or result size); everything else is relayed.
#[derive(Debug)]
pub(crate) struct RangeCappedProxy {
    addr: SocketAddr,
    /// `(from, to)` of every `eth_getLogs` relayed, then of every one refused.
    seen: Arc<Mutex<Ranges>>,
    task: tokio::task::JoinHandle<()>,
}

impl RangeCappedProxy {
    pub(crate) async fn spawn(upstream: SocketAddr, cap: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new((Vec::new(), Vec::new())));
        let task = serve(listener, seen.clone(), move |client, seen| async move {
            relay_capped(client, upstream, cap, &seen).await
        });
        Self { addr, seen, task }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The block ranges of the `eth_getLogs` calls relayed.
    pub(crate) fn relayed(&self) -> Vec<(u64, u64)> {
        self.seen.lock().unwrap().0.clone()
    }

    /// The block ranges of the `eth_getLogs` calls refused.
    pub(crate) fn refused(&self) -> Vec<(u64, u64)> {
        self.seen.lock().unwrap().1.clone()
    }
}

impl Drop for RangeCappedProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The block range and id of an `eth_getLogs` request body, if it is one.
fn log_range(body: &[u8]) -> Option<((u64, u64), serde_json::Value)> {
    let request: serde_json::Value = serde_json::from_slice(body).ok()?;
    if request["method"] != "eth_getLogs" {
        return None;
    }
    let block = |name: &str| {
        let hex = request["params"][0][name].as_str()?;
        u64::from_str_radix(hex.strip_prefix("0x")?, 16).ok()
    };
    Some((
        (block("fromBlock")?, block("toBlock")?),
        request["id"].clone(),
    ))
}

async fn relay_capped(
    mut client: TcpStream,
    upstream: SocketAddr,
    cap: u64,
    seen: &Mutex<Ranges>,
) -> std::io::Result<()> {
    let mut node = TcpStream::connect(upstream).await?;
    let (mut from_client, mut from_node) = (Vec::new(), Vec::new());
    while let Some(request) = read_message(&mut client, &mut from_client).await? {
        let range = log_range(request.body());
        if let Some(((from, to), id)) = range.as_ref().filter(|((f, t), _)| t - f + 1 > cap) {
            seen.lock().unwrap().1.push((*from, *to));
            let body = serde_json::json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": {"code": -32005, "message": format!("query exceeds max block range {cap}")},
            })
            .to_string();
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            write_all(&mut client, answer.as_bytes()).await?;
            continue;
        }
        if let Some((range, _)) = range {
            seen.lock().unwrap().0.push(range);
        }
        write_all(&mut node, &request.raw).await?;
        let Some(answer) = read_message(&mut node, &mut from_node).await? else {
            return Err(io_error("the node closed without answering".into()));
        };
        write_all(&mut client, &answer.raw).await?;
        if request.close || answer.close {
            return Ok(());
        }
    }
    Ok(())
}
