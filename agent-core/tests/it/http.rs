//! The host's port as an HTTP server: the host's own routes, errors instead of
//! resets, mounted services (an `axum::Router` among them), limits, TLS, and the
//! WebSocket handshake.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agent_core::http::{Bytes, Full, Incoming, RemoteAddr, Request, Response, StatusCode};
use agent_core::{EdgeLimits, Error, HostConfig, ServerTls};
use futures::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use wallets::{Wallet, B256};

use crate::support::{agent, host, host_with, now_ms, seal, CHAIN, WAIT};

/// A response as it came over the wire.
#[derive(Debug)]
struct Reply {
    status: u16,
    /// Names in lowercase.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// The first whole response at the start of `buf` and its length; with
    /// `head_only` (the answer to a `HEAD`) it has no body whatever its length.
    fn parse(buf: &[u8], head_only: bool) -> Option<(Self, usize)> {
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = std::str::from_utf8(&buf[..end - 4]).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap()["HTTP/1.1 ".len()..][..3]
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| l.split_once(':').unwrap())
            .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut reply = Self {
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = match reply.header("content-length") {
            Some(n) if !head_only => n.parse().unwrap(),
            _ => 0,
        };
        let body = buf.get(end..end + len)?;
        reply.body = body.to_vec();
        Some((reply, end + len))
    }
}

/// Reads the next response on `stream`, keeping what follows it in `buf`.
async fn read_reply<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Reply {
    loop {
        if let Some((reply, n)) = Reply::parse(buf, false) {
            buf.drain(..n);
            return reply;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("a response in time")
            .expect("no reset");
        assert!(n > 0, "closed before a whole response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Writes `request` and reads until the host closes the connection, which must
/// be a close, not a reset.
async fn exchange_on<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, request: &[u8]) -> Vec<u8> {
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut out))
        .await
        .expect("the host closes the connection in time")
        .expect("a close, not a reset");
    out
}

/// `request` on a fresh connection; the one response that comes back before the
/// host closes the connection.
async fn exchange(addr: SocketAddr, request: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let out = exchange_on(&mut stream, request.as_bytes()).await;
    let head_only = request.starts_with("HEAD ");
    let (reply, n) = Reply::parse(&out, head_only).expect("a whole response");
    assert_eq!(n, out.len(), "nothing after the response");
    reply
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n")
}

/// `request` asking the server to close the connection after its response (which
/// the host's own answers do anyway; a mounted service's keep it open).
fn closing(request: &str) -> String {
    request.replacen("\r\n", "\r\nconnection: close\r\n", 1)
}

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn the_hosts_own_routes_answer_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path(), "a");
    let alice = agent(&h, "alice", vec![]);
    let addr = h.local_addr().unwrap();

    let health = exchange(addr, &get("/health")).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.header("content-type"), Some("text/plain"));
    assert_eq!(health.header("connection"), Some("close"));
    assert_eq!(health.text(), "ok\n");

    let metrics = exchange(addr, &get("/metrics.json")).await;
    assert_eq!(metrics.header("content-type"), Some("application/json"));
    assert_eq!(metrics.json()["edge"]["connections"], 0);
    assert!(metrics.json()["agents"][alice.address().to_string()].is_object());

    let cards = exchange(addr, &get("/cards")).await;
    assert_eq!(cards.header("content-type"), Some("application/json"));
    assert_eq!(cards.json()[0]["name"], "alice");
    let card = exchange(addr, &get(&format!("/card/{}", alice.address()))).await;
    assert_eq!(card.json(), cards.json()[0]);
    assert_eq!(card.json()["services"][0]["endpoint"], h.url().unwrap());

    // The same bytes as the host's own answer, as a plain `GET` of it gets.
    let cards_again = exchange(addr, &get("/cards?x=1")).await;
    assert_eq!(cards_again.body, cards.body);

    for missing in ["/card/0x12", "/card/nope", "/card", "/health/", "/nothing"] {
        let r = exchange(addr, &get(missing)).await;
        assert_eq!(r.status, 404, "{missing}");
    }

    let head = exchange(addr, "HEAD /health HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("3"));
    assert!(head.body.is_empty());
}

#[tokio::test]
async fn posts_and_unknown_paths_get_an_answer_not_a_reset() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path(), "a");
    let addr = h.local_addr().unwrap();

    let r = exchange(addr, &post("/health", "hello")).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let r = exchange(addr, &post("/card/0x12", &"x".repeat(10_000))).await;
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    let r = exchange(addr, &post("/x402/weather", "{}")).await;
    assert_eq!(r.status, 404);
    let r = exchange(addr, "DELETE /nothing HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(r.status, 404);
    // The WebSocket paths: an upgrade, or nothing.
    let r = exchange(addr, &post("/", "hello")).await;
    assert_eq!((r.status, r.header("allow")), (405, Some("GET")));
    let r = exchange(addr, &get("/ws")).await;
    assert_eq!((r.status, r.header("upgrade")), (426, Some("websocket")));

    // A chunked body is read too.
    let chunked = "POST /metrics HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n\
                   5\r\nhello\r\n0\r\n\r\n";
    assert_eq!(exchange(addr, chunked).await.status, 405);

    for malformed in [
        "GET /health HTTP/1.1\r\nhost x\r\n\r\n",
        "GET /he alth HTTP/1.1\r\n\r\n",
        "G(T /health HTTP/1.1\r\n\r\n",
        "GET /health HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
    ] {
        let r = exchange(addr, malformed).await;
        assert_eq!(r.status, 400, "{malformed:?}");
    }
    assert_eq!(h.edge_stats().connections, 0, "no WebSocket among them");
}

#[tokio::test]
async fn oversized_heads_and_bodies_get_431_and_413() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path(), "a");
    let addr = h.local_addr().unwrap();
    let cap = agent_core::http::MAX_BUILT_IN_BODY_BYTES;

    let big_head = format!(
        "GET /health HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(agent_core::http::MAX_HEAD_BYTES)
    );
    assert_eq!(exchange(addr, &big_head).await.status, 431);
    let many = (0..120).fold(String::new(), |s, i| s + &format!("x-{i}: {i}\r\n"));
    let many = format!("GET /health HTTP/1.1\r\n{many}\r\n");
    assert_eq!(exchange(addr, &many).await.status, 431);

    // Announced too large: answered before the body is sent (the client waits
    // for `100 Continue`).
    let announced = format!(
        "POST /nothing HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: {}\r\n\r\n",
        cap + 1
    );
    assert_eq!(exchange(addr, &announced).await.status, 413);
    // Announced too large and sent anyway: answered at once, and what the client
    // still sends after the answer is read and dropped for a while (a lingering
    // close), so its writes do not fail on a reset before it reads the 413.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = "POST /health HTTP/1.1\r\nhost: x\r\ncontent-length: 200000\r\n\r\n";
    let half = "a".repeat(100_000);
    let out = exchange_on(&mut stream, format!("{head}{half}").as_bytes()).await;
    assert_eq!(Reply::parse(&out, false).unwrap().0.status, 413);
    for _ in 0..5 {
        stream.write_all(&half.as_bytes()[..10_000]).await.unwrap();
    }
    // Chunked, found too large while reading.
    let chunk = "a".repeat(4096);
    let mut chunked =
        "POST /health HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_owned();
    for _ in 0..(cap / 4096 + 1) {
        chunked += &format!("1000\r\n{chunk}\r\n");
    }
    chunked += "0\r\n\r\n";
    assert_eq!(exchange(addr, &chunked).await.status, 413);
    // At the cap, it is read and dropped.
    assert_eq!(
        exchange(addr, &post("/health", &"a".repeat(cap)))
            .await
            .status,
        405
    );
    assert_eq!(exchange(addr, &get("/health")).await.status, 200);
}

#[tokio::test]
async fn a_mounted_service_gets_the_request_and_its_response_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    // Echoes what it got as JSON, with a status and a header of its own.
    let echo = tower::service_fn(|req: Request<Incoming>| async move {
        let (parts, body) = req.into_parts();
        let body = body.collect().await?.to_bytes();
        let seen = json!({
            "method": parts.method.as_str(),
            "uri": parts.uri.to_string(),
            "header": parts.headers.get("x-test").and_then(|v| v.to_str().ok()),
            "body": String::from_utf8_lossy(&body),
            "remote": parts.extensions.get::<RemoteAddr>().map(|a| a.addr().ip().to_string()),
        });
        let mut r = Response::new(Full::new(Bytes::from(seen.to_string())));
        *r.status_mut() = StatusCode::ACCEPTED;
        r.headers_mut()
            .insert("x-served-by", "echo".parse().unwrap());
        Ok::<_, hyper::Error>(r)
    });
    let h = host_with(HostConfig::new(CHAIN, dir.path().join("a")).mount_http("/echo/", echo));
    let addr = h.local_addr().unwrap();

    // Two requests on one connection: a mounted service's answers keep it open.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    let request =
        "PUT /echo/a/b?c=d HTTP/1.1\r\nhost: x\r\nx-test: yes\r\ncontent-length: 5\r\n\r\nhello";
    for _ in 0..2 {
        stream.write_all(request.as_bytes()).await.unwrap();
        let r = read_reply(&mut stream, &mut buf).await;
        assert_eq!(r.status, 202);
        assert_eq!(r.header("x-served-by"), Some("echo"));
        assert_eq!(
            r.json(),
            json!({"method": "PUT", "uri": "/echo/a/b?c=d", "header": "yes", "body": "hello", "remote": "127.0.0.1"})
        );
    }
    let r = exchange(addr, &closing(&get("/echo"))).await;
    assert_eq!(r.json()["uri"], "/echo");
    // Not below the prefix: not the service's.
    assert_eq!(exchange(addr, &get("/echoes")).await.status, 404);

    // A service that fails is a 500.
    let failing = tower::service_fn(|_: Request<Incoming>| async {
        Err::<Response<Full<Bytes>>, _>(std::io::Error::other("broken"))
    });
    h.mount_http("/failing", failing).unwrap();
    assert_eq!(
        exchange(addr, &closing(&get("/failing/x"))).await.status,
        500
    );

    // Where the host's own routes or the WebSocket endpoint are, nothing mounts.
    for prefix in ["/health", "/card/x", "/ws", "/", "echo", "/echo"] {
        let svc = tower::service_fn(|_: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        });
        let err = h.mount_http(prefix, svc).unwrap_err();
        assert!(matches!(err, Error::Mount { .. }), "{prefix}: {err}");
    }
    let svc = tower::service_fn(|_: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    });
    let bad = HostConfig::new(CHAIN, dir.path().join("b")).mount_http("/metrics", svc);
    let err = agent_core::Host::spawn(bad).unwrap_err();
    assert!(err.to_string().contains("/metrics"), "{err}");
}

/// What a gateway crate does: an `axum::Router`, mounted as it is.
#[tokio::test]
async fn an_axum_router_mounts() {
    use axum::extract::{Extension, Path};
    use axum::routing::{get as axum_get, post as axum_post};

    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path(), "a");
    let addr = h.local_addr().unwrap();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let router = axum::Router::new()
        .route(
            "/x402/:skill",
            axum_post(
                move |Path(skill): Path<String>,
                      Extension(remote): Extension<RemoteAddr>,
                      body: Bytes| async move {
                    counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let text = format!("{skill} {} from {}", body.len(), remote.addr().ip());
                    (axum::http::StatusCode::PAYMENT_REQUIRED, text)
                },
            ),
        )
        .route("/x402", axum_get(|| async { "index" }));
    h.mount_http("/x402", router).unwrap();

    let r = exchange(
        addr,
        &closing(&post("/x402/weather", "{\"city\":\"Lisbon\"}")),
    )
    .await;
    assert_eq!(r.status, 402);
    assert_eq!(r.text(), "weather 17 from 127.0.0.1");
    assert_eq!(
        exchange(addr, &closing(&get("/x402"))).await.text(),
        "index"
    );
    // axum's own 404 and 405 below the prefix.
    assert_eq!(
        exchange(addr, &closing(&get("/x402/a/b"))).await.status,
        404
    );
    assert_eq!(
        exchange(addr, &closing(&get("/x402/weather"))).await.status,
        405
    );
    assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_head_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let edge = EdgeLimits {
        connect_timeout: Duration::from_millis(300),
        ..EdgeLimits::default()
    };
    let h = host_with(HostConfig::new(CHAIN, dir.path().join("a")).edge(edge));
    let addr = h.local_addr().unwrap();
    for sent in ["", "GET /health HTTP/1.1\r\nhost: x\r\n"] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(sent.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        // Synchronised on the close itself; WAIT only bounds a failure.
        let closed = tokio::time::timeout(WAIT, stream.read_to_end(&mut out)).await;
        assert!(closed.is_ok(), "{sent:?}: still open after {WAIT:?}");
    }
}

#[tokio::test]
async fn the_connection_cap_counts_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let edge = EdgeLimits {
        max_connections: 1,
        ..EdgeLimits::default()
    };
    let h = host_with(HostConfig::new(CHAIN, dir.path().join("a")).edge(edge));
    let addr = h.local_addr().unwrap();
    // An HTTP connection held open (a request head under way) takes the one place.
    let mut first = TcpStream::connect(addr).await.unwrap();
    first.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
    // The host accepts in order: the second is closed at once.
    let mut second = TcpStream::connect(addr).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, second.read_to_end(&mut out))
        .await
        .expect("closed at once");
    assert!(out.is_empty());
    assert_eq!(h.edge_stats().connections_refused, 1);
    // The first is still served.
    let mut buf = Vec::new();
    first.write_all(b"host: x\r\n\r\n").await.unwrap();
    assert_eq!(read_reply(&mut first, &mut buf).await.status, 200);
}

#[tokio::test]
async fn websocket_handshakes_are_checked_and_the_upgrade_carries_envelopes() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path(), "a");
    let addr = h.local_addr().unwrap();
    let upgrade = |extra: &str| {
        format!(
            "GET /ws/agents HTTP/1.1\r\nhost: x\r\nconnection: keep-alive, Upgrade\r\n\
             upgrade: WebSocket\r\n{extra}\r\n"
        )
    };
    let r = exchange(addr, &upgrade("sec-websocket-version: 13\r\n")).await;
    assert_eq!(r.status, 400, "no key");
    let r = exchange(
        addr,
        &upgrade("sec-websocket-version: 8\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
    )
    .await;
    assert_eq!(
        (r.status, r.header("sec-websocket-version")),
        (426, Some("13"))
    );
    assert_eq!(h.edge_stats().connections, 0);

    // RFC 6455's own example key and accept value.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let key = "sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    stream.write_all(upgrade(key).as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let r = read_reply(&mut stream, &mut buf).await;
    assert_eq!(r.status, 101);
    assert_eq!(
        r.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    // The connection now carries envelopes: one for an agent that is not here is
    // refused, with a `refused` control frame.
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        stream,
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    let nobody = Wallet::random().address();
    let env = seal(
        &Wallet::random(),
        nobody,
        B256([1; 32]),
        1,
        "test.Note",
        json!({}),
        now_ms() + 60_000,
    );
    ws.send(Message::Binary(env.to_bytes())).await.unwrap();
    let frame = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
    let Some(Ok(Message::Text(text))) = frame else {
        panic!("expected a control frame, got {frame:?}");
    };
    let control: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(control["type"], "refused", "{control}");
    assert_eq!(control["recipient"], nobody.to_string());
    assert_eq!(h.edge_stats().refused, 1);
    assert_eq!(h.edge_stats().connections, 1);
}

#[tokio::test]
async fn a_tls_host_serves_http_too() {
    use tokio_rustls::rustls::{self, Certificate, RootCertStore, ServerName};

    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_pem = cert.serialize_pem().unwrap();
    let key_pem = cert.serialize_private_key_pem();
    let dir = tempfile::tempdir().unwrap();
    let tls = ServerTls::from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap();
    let echo = tower::service_fn(|req: Request<Incoming>| async move {
        let text = format!("{} {}", req.method(), req.uri().path());
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
    });
    let h = host_with(
        HostConfig::new(CHAIN, dir.path().join("a"))
            .tls(tls)
            .mount_http("/gateway", echo),
    );
    let addr = h.local_addr().unwrap();

    let mut roots = RootCertStore::empty();
    roots
        .add(&Certificate(cert.serialize_der().unwrap()))
        .unwrap();
    let config = rustls::ClientConfig::builder()
        .with_safe_defaults()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let connect = || async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await.unwrap()
    };

    let mut tls = connect().await;
    let out = exchange_on(&mut tls, get("/health").as_bytes()).await;
    let (r, _) = Reply::parse(&out, false).unwrap();
    assert_eq!((r.status, r.text()), (200, "ok\n"));
    let mut tls = connect().await;
    let mut buf = Vec::new();
    tls.write_all(post("/gateway/pay", "x").as_bytes())
        .await
        .unwrap();
    let r = read_reply(&mut tls, &mut buf).await;
    assert_eq!((r.status, r.text()), (200, "POST /gateway/pay"));
    let mut tls = connect().await;
    let out = exchange_on(&mut tls, post("/nothing", "x").as_bytes()).await;
    assert_eq!(Reply::parse(&out, false).unwrap().0.status, 404);
}
