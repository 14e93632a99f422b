//! The HTTP edge of a host's port: what a request gets when it is not a WebSocket
//! upgrade.
//!
//! Every connection on a host's port, plain or TLS, is served by an HTTP/1.1 server
//! (hyper). A WebSocket upgrade (`GET` with `Upgrade: websocket`) of `/` or of a path
//! that starts with `/ws` becomes a connection of the envelope transport; every other
//! request is routed here, first match wins:
//!
//! 1. the host's own routes, `GET` or `HEAD` only: `/health` (`text/plain`),
//!    `/metrics` (the Prometheus text format, see [`metrics`](crate::metrics)),
//!    `/metrics.json` (the host's counters and its agents' spending against their
//!    policies, as JSON), `/cards` and
//!    `/card/<address>` (JSON; the A2A gateway serves
//!    `/.well-known/agent-card.json`);
//! 2. the HTTP services mounted under a path prefix ([`Host::mount_http`],
//!    [`HostConfig::mount_http`]), the longest matching prefix first: the protocol
//!    gateways (x402, A2A, a dashboard). A prefix matches itself and the paths below
//!    it (`/x402` matches `/x402` and `/x402/weather`, not `/x402v2`); the service
//!    gets the request unchanged, full path included, with the peer's address as a
//!    [`RemoteAddr`] extension;
//! 3. `404 Not Found` for anything else.
//!
//! A known path asked with another method gets `405 Method Not Allowed` and an
//! `allow` header; a WebSocket path asked without an upgrade gets `426 Upgrade
//! Required`; a request that does not parse gets `400 Bad Request`, a request head
//! over [`MAX_HEAD_BYTES`] (or over 100 headers) `431 Request Header Fields Too
//! Large`. The host's own answers, and its errors, close the connection after the
//! response (as they always did); a mounted service's responses keep it alive
//! unless they say otherwise. A request body sent to the host's own routes is read
//! and dropped, up to [`MAX_BUILT_IN_BODY_BYTES`] (`413 Payload Too Large` beyond,
//! `408 Request Timeout` when it takes longer than
//! [`EdgeLimits::timeout`](crate::EdgeLimits::timeout)), so that a client is never
//! answered with a reset while it is still sending.
//!
//! The edge limits apply to every connection: the connection cap
//! ([`EdgeLimits::max_connections`](crate::EdgeLimits::max_connections)), and a
//! request head (the first, or the next on a kept-alive connection) must arrive
//! within [`EdgeLimits::connect_timeout`](crate::EdgeLimits::connect_timeout) or the
//! connection is closed. A mounted service sets its own limits on bodies and
//! handling time, as tower layers on its router (tower-http's
//! `RequestBodyLimitLayer`, axum's `DefaultBodyLimit`, `TimeoutLayer`).
//!
//! Any `tower::Service<http::Request<Incoming>>` whose futures are `Send` mounts,
//! an `axum::Router` among them:
//!
//! ```
//! use std::convert::Infallible;
//! use std::io::{Read, Write};
//!
//! use agent_core::http::{Bytes, Full, Incoming, Request, Response};
//! use agent_core::{Host, HostConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let host = Host::spawn(HostConfig::new(1337, dir.path()).listen("127.0.0.1:0".parse()?))?;
//! let hello = tower::service_fn(|req: Request<Incoming>| async move {
//!     let text = format!("{} {}\n", req.method(), req.uri().path());
//!     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
//! });
//! host.mount_http("/hello", hello)?;
//!
//! let mut socket = std::net::TcpStream::connect(host.local_addr().ok_or("no address")?)?;
//! socket.write_all(b"GET /hello/world HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")?;
//! let mut response = String::new();
//! socket.read_to_string(&mut response)?;
//! assert!(response.starts_with("HTTP/1.1 200 OK"));
//! assert!(response.ends_with("GET /hello/world\n"));
//! # Ok(())
//! # }
//! ```
//!
//! [`Host::mount_http`]: crate::Host::mount_http
//! [`HostConfig::mount_http`]: crate::HostConfig::mount_http

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Body;
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE, UPGRADE};
use hyper::Method;
use tower::util::BoxCloneService;
use tower::{BoxError, Service, ServiceExt};

use crate::error::{Error, Result};
use crate::metrics::{HttpLabels, Metrics};

pub use http_body_util::Full;
pub use hyper::body::{Bytes, Incoming};
pub use hyper::{Request, Response, StatusCode};

/// The largest request head (request line and headers) the port reads; a larger
/// one is answered `431 Request Header Fields Too Large`.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The largest request body the host's own routes read (and drop); a larger one is
/// answered `413 Payload Too Large`. Mounted services set their own limits.
pub const MAX_BUILT_IN_BODY_BYTES: usize = 16 * 1024;

/// The body of a response on the host's port: whatever a mounted service answers
/// with, boxed.
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// The address of the peer a request came from, in the request's extensions for
/// mounted services (`axum::Extension<RemoteAddr>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteAddr(SocketAddr);

impl RemoteAddr {
    /// The peer's address.
    pub fn addr(&self) -> SocketAddr {
        self.0
    }
}

type Boxed = BoxCloneService<Request<Incoming>, Response<ResponseBody>, BoxError>;

/// An HTTP service mounted on a host's port, type-erased: any
/// `tower::Service<http::Request<Incoming>>` with `Send` futures (an `axum::Router`
/// is one). Cloned for each request it serves, so it need not be `Sync`.
#[derive(Clone)]
pub struct HttpService {
    inner: Arc<Mutex<Boxed>>,
}

impl std::fmt::Debug for HttpService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpService { .. }")
    }
}

fn box_body<B>(response: Response<B>) -> Response<ResponseBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    response.map(|body| body.map_err(Into::into).boxed_unsync())
}

impl HttpService {
    /// Erases `service`'s type. Its errors are answered `500 Internal Server
    /// Error` (and logged); an `axum::Router` has none.
    pub fn new<S, B>(service: S) -> Self
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let service = service.map_response(box_body).map_err(Into::into);
        Self {
            inner: Arc::new(Mutex::new(BoxCloneService::new(service))),
        }
    }

    async fn call(&self, request: Request<Incoming>) -> Response<ResponseBody> {
        let service = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match service.oneshot(request).await {
            Ok(response) => response,
            Err(e) => {
                tracing::warn!(target: "agent::http", error = %e, "a mounted service failed");
                status(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}

/// Whether `path` is one of the WebSocket paths: `/` and anything that starts with
/// `/ws`.
pub(crate) fn is_websocket_path(path: &str) -> bool {
    path == "/" || path.starts_with("/ws")
}

/// One of the host's own routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BuiltIn {
    /// `/health`.
    Health,
    /// `/metrics`: the Prometheus text format.
    Metrics,
    /// `/metrics.json`: the host's counters and the agents' policy spending as JSON.
    MetricsJson,
    /// `/cards`: all the host's cards.
    Cards,
    /// `/card/<address>`: the rest of the path, not yet parsed.
    Card(String),
}

/// The paths of the host's own routes, and the prefix of the cards.
const BUILT_IN_PATHS: [&str; 4] = ["/health", "/metrics", "/metrics.json", "/cards"];
const CARD_PREFIX: &str = "/card/";

impl BuiltIn {
    /// The route's name in metrics: its path (`/card` for every card).
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Health => "/health",
            Self::Metrics => "/metrics",
            Self::MetricsJson => "/metrics.json",
            Self::Cards => "/cards",
            Self::Card(_) => "/card",
        }
    }

    /// The host's route for `path`, if it is one.
    pub(crate) fn of(path: &str) -> Option<Self> {
        match path {
            "/health" => Some(Self::Health),
            "/metrics" => Some(Self::Metrics),
            "/metrics.json" => Some(Self::MetricsJson),
            "/cards" => Some(Self::Cards),
            p => p
                .strip_prefix(CARD_PREFIX)
                .map(|a| Self::Card(a.to_owned())),
        }
    }
}

/// The host's answer to a `GET` of one of its routes: content type and body, or
/// `None` for a 404 (a card of no agent here).
pub(crate) type HttpAnswer = Box<dyn Fn(&BuiltIn) -> Option<(&'static str, String)> + Send + Sync>;

/// Whether `path` is `prefix` or below it.
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// A mounted service and its prefix.
#[derive(Clone)]
struct Mount {
    prefix: String,
    service: HttpService,
}

/// The routes of the port's HTTP requests (all but WebSocket upgrades).
pub(crate) struct Routes {
    answer: OnceLock<HttpAnswer>,
    /// Longest prefix first.
    mounts: RwLock<Arc<Vec<Mount>>>,
    /// Longest time to read a body the host's own routes drop.
    body_timeout: Duration,
    /// Where request handling times go.
    metrics: Arc<Metrics>,
}

impl Routes {
    pub(crate) fn new(body_timeout: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            answer: OnceLock::new(),
            mounts: RwLock::new(Arc::new(Vec::new())),
            body_timeout,
            metrics,
        }
    }

    /// Sets the host's answer to its own routes.
    pub(crate) fn set_answer(&self, answer: HttpAnswer) {
        let _ = self.answer.set(answer);
    }

    /// Mounts `service` under `prefix` (a trailing `/` is dropped).
    ///
    /// # Errors
    /// [`Error::Mount`] when `prefix` does not start with `/`, is `/` alone, holds
    /// anything but visible ASCII or a `?` or `#`, is a WebSocket path (`/ws…`), is
    /// one of the host's routes or below one, or is mounted already.
    pub(crate) fn mount(&self, prefix: &str, service: HttpService) -> Result<()> {
        let refuse = |reason: &str| {
            Err(Error::Mount {
                prefix: prefix.to_owned(),
                reason: reason.to_owned(),
            })
        };
        let trimmed = prefix.trim_end_matches('/');
        if !trimmed.starts_with('/') {
            return refuse("a prefix starts with `/` and is not `/` alone");
        }
        if !trimmed
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
        {
            return refuse("a prefix is a path of visible ASCII without `?` or `#`");
        }
        if is_websocket_path(trimmed) {
            return refuse("`/` and paths that start with `/ws` are the WebSocket endpoint");
        }
        let card_root = CARD_PREFIX.trim_end_matches('/');
        if BUILT_IN_PATHS
            .iter()
            .chain([&card_root])
            .any(|built_in| under(trimmed, built_in))
        {
            return refuse("the host serves this path itself");
        }
        let mut mounts = self.mounts.write().unwrap_or_else(PoisonError::into_inner);
        if mounts.iter().any(|m| m.prefix == trimmed) {
            return refuse("a service is mounted there already");
        }
        let mut next: Vec<Mount> = mounts.iter().cloned().collect();
        next.push(Mount {
            prefix: trimmed.to_owned(),
            service,
        });
        next.sort_by_key(|m| std::cmp::Reverse(m.prefix.len()));
        *mounts = Arc::new(next);
        tracing::info!(target: "agent::http", prefix = trimmed, "HTTP service mounted");
        Ok(())
    }

    /// Drops every mounted service: a stopped host lets go of its gateways (which may
    /// hold its agents' handles, and so, through them, the host's routes).
    pub(crate) fn unmount_all(&self) {
        *self.mounts.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(Vec::new());
    }

    /// The service mounted at the longest prefix of `path`, and the prefix.
    fn mounted(&self, path: &str) -> Option<(String, HttpService)> {
        let mounts = self
            .mounts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        mounts
            .iter()
            .find(|m| under(path, &m.prefix))
            .map(|m| (m.prefix.clone(), m.service.clone()))
    }

    /// Answers a request that is not a WebSocket upgrade, and times it by route
    /// (a host route, a mount prefix, or `other`): until the response's head is
    /// ready, not until its body is sent.
    pub(crate) async fn handle(
        &self,
        request: Request<Incoming>,
        remote: SocketAddr,
    ) -> Response<ResponseBody> {
        let start = Instant::now();
        let (route, response) = self.route(request, remote).await;
        self.metrics
            .http_seconds
            .get_or_create(&HttpLabels { route })
            .observe(start.elapsed().as_secs_f64());
        response
    }

    async fn route(
        &self,
        mut request: Request<Incoming>,
        remote: SocketAddr,
    ) -> (String, Response<ResponseBody>) {
        let path = request.uri().path();
        let get = matches!(*request.method(), Method::GET | Method::HEAD);
        if is_websocket_path(path) {
            let response = if request.method() == Method::GET {
                let mut r = status(StatusCode::UPGRADE_REQUIRED);
                r.headers_mut()
                    .insert(UPGRADE, HeaderValue::from_static("websocket"));
                r
            } else {
                not_allowed("GET")
            };
            let response = self.after_body(request.into_body(), response).await;
            return ("websocket".to_owned(), response);
        }
        if let Some(route) = BuiltIn::of(path) {
            let label = route.label().to_owned();
            if !get {
                let response = self
                    .after_body(request.into_body(), not_allowed("GET, HEAD"))
                    .await;
                return (label, response);
            }
            let answer = self.answer.get().and_then(|answer| answer(&route));
            let response = match answer {
                Some((content_type, body)) => {
                    let mut r = full(body);
                    r.headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
                    closing(r)
                }
                None => status(StatusCode::NOT_FOUND),
            };
            return (label, self.after_body(request.into_body(), response).await);
        }
        if let Some((prefix, service)) = self.mounted(path) {
            request.extensions_mut().insert(RemoteAddr(remote));
            return (prefix, service.call(request).await);
        }
        let response = self
            .after_body(request.into_body(), status(StatusCode::NOT_FOUND))
            .await;
        ("other".to_owned(), response)
    }

    /// `response`, once `body` is read and dropped; an error status when the body is
    /// too large, too slow or broken.
    async fn after_body(
        &self,
        body: Incoming,
        response: Response<ResponseBody>,
    ) -> Response<ResponseBody> {
        if body.is_end_stream() {
            return response;
        }
        let cap = MAX_BUILT_IN_BODY_BYTES;
        if body.size_hint().lower() > cap as u64 {
            return status(StatusCode::PAYLOAD_TOO_LARGE);
        }
        let read = tokio::time::timeout(self.body_timeout, Limited::new(body, cap).collect());
        match read.await {
            Ok(Ok(_)) => response,
            Ok(Err(e)) if e.is::<LengthLimitError>() => status(StatusCode::PAYLOAD_TOO_LARGE),
            Ok(Err(_)) => status(StatusCode::BAD_REQUEST),
            Err(_) => status(StatusCode::REQUEST_TIMEOUT),
        }
    }
}

/// A `200 OK` with `body`.
fn full(body: impl Into<Bytes>) -> Response<ResponseBody> {
    Response::new(
        Full::new(body.into())
            .map_err(|never: Infallible| match never {})
            .boxed_unsync(),
    )
}

/// `response` with `connection: close`.
fn closing(mut response: Response<ResponseBody>) -> Response<ResponseBody> {
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A response of `code` with its reason as a plain-text body, closing the
/// connection.
pub(crate) fn status(code: StatusCode) -> Response<ResponseBody> {
    let text = format!(
        "{} {}\n",
        code.as_u16(),
        code.canonical_reason().unwrap_or_default()
    );
    let mut r = full(text);
    *r.status_mut() = code;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    closing(r)
}

/// `405 Method Not Allowed`, naming the methods that are.
pub(crate) fn not_allowed(allow: &'static str) -> Response<ResponseBody> {
    let mut r = status(StatusCode::METHOD_NOT_ALLOWED);
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo() -> HttpService {
        HttpService::new(tower::service_fn(|_: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }))
    }

    #[test]
    fn prefixes_match_themselves_and_below() {
        assert!(under("/x402", "/x402"));
        assert!(under("/x402/weather", "/x402"));
        assert!(!under("/x402v2", "/x402"));
        assert!(!under("/x40", "/x402"));
    }

    #[test]
    fn mounts_are_refused_where_they_would_shadow_or_be_shadowed() {
        let routes = Routes::new(Duration::from_secs(1), Arc::default());
        for bad in [
            "",
            "/",
            "x402",
            "/ws",
            "/wsx/a",
            "/health",
            "/metrics/",
            "/metrics.json",
            "/cards/x",
            "/card",
            "/card/0x12",
            "/a b",
            "/a?b",
            "/a#b",
            "/\u{e9}",
        ] {
            let err = routes.mount(bad, echo()).unwrap_err();
            assert!(matches!(err, Error::Mount { .. }), "{bad}: {err}");
        }
        routes.mount("/x402/", echo()).unwrap();
        routes.mount("/x402/v2", echo()).unwrap();
        routes.mount("/.well-known", echo()).unwrap();
        routes
            .mount("/.well-known/agent-card.json", echo())
            .unwrap();
        assert!(routes.mount("/x402", echo()).is_err(), "mounted twice");
        let prefixes: Vec<String> = routes
            .mounts
            .read()
            .unwrap()
            .iter()
            .map(|m| m.prefix.clone())
            .collect();
        assert_eq!(prefixes[0], "/.well-known/agent-card.json");
        assert_eq!(prefixes[1], "/.well-known");
        assert_eq!(prefixes[2], "/x402/v2");
        assert!(routes.mounted("/x402v2").is_none());
        assert_eq!(routes.mounted("/x402/v2/a").unwrap().0, "/x402/v2");
    }

    #[test]
    fn built_in_routes_and_websocket_paths() {
        assert_eq!(BuiltIn::of("/health"), Some(BuiltIn::Health));
        assert_eq!(
            BuiltIn::of("/card/0xab"),
            Some(BuiltIn::Card("0xab".into()))
        );
        assert_eq!(BuiltIn::of("/card"), None);
        assert_eq!(BuiltIn::of("/health/"), None);
        assert!(is_websocket_path("/") && is_websocket_path("/ws/x") && is_websocket_path("/wsx"));
        assert!(!is_websocket_path("/health") && !is_websocket_path(""));
    }
}
