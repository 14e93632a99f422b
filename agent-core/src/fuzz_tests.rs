//! Fuzz tests (`fuzz_…`) of what a host reads from its port: envelope frames
//! (binary WebSocket frames, through [`Inbox::receive`] and the edge's
//! [`KeyCache`]), control frames (text WebSocket frames, [`Control::parse`]) and
//! HTTP requests (bytes sent to a real host's port: hyper's parser, the WebSocket
//! handshake, the host's routes and a mounted service). See the README's
//! "Fuzzing".

use std::sync::{Arc, OnceLock};

use fuzz_support::proptest::prelude::*;
use fuzz_support::proptest::strategy::Union;
use fuzz_support::{
    arbitrary_bytes, arbitrary_text, explained, fuzz, json_value, mutate_bytes, mutate_json,
    nested_json, token, Bytes, Case,
};
use http_body_util::{BodyExt, Limited};
use serde_json::{json, Value};
use wallets::{Wallet, B256};

use crate::envelope::{Draft, Envelope, Inbox, InboxLimits, KeyCache, Refusal};
use crate::http::{Bytes as Chunk, Full, Incoming, Request, Response};
use crate::transport::Control;
use crate::{AgentLimits, AgentSpec, Host, HostConfig};

const NOW: u64 = 1_800_000_000_000;
const CHAIN: u64 = 1337;

fn alice() -> Wallet {
    Wallet::from_bytes(&[3u8; 32]).unwrap()
}

fn bob() -> Wallet {
    Wallet::from_bytes(&[4u8; 32]).unwrap()
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Field names, kinds and hex forms an envelope or a control frame holds.
fn frame_tokens() -> &'static [&'static str] {
    static TOKENS: OnceLock<Vec<&'static str>> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let mut t = vec![
            "sender",
            "recipient",
            "dialogue",
            "sequence",
            "expiry",
            "chainId",
            "kind",
            "payload",
            "signature",
            "type",
            "refused",
            "reason",
            "negotiation.CallForProposal",
            "",
            "0x",
            "0x00",
        ];
        for s in [
            alice().address().to_string(),
            bob().address().to_string(),
            format!("{:?}", bob().address()).to_lowercase(),
            format!("0x{}", "00".repeat(20)),
            format!("0x{}", "07".repeat(32)),
            format!("0x{}", "ff".repeat(32)),
            format!("0x{}", "00".repeat(65)),
            format!("0x{}1b", "11".repeat(64)),
            format!("0x{}1c", "ff".repeat(64)),
            format!("0x{}", "11".repeat(66)),
            (NOW + 60_000).to_string(),
            u64::MAX.to_string(),
        ] {
            t.push(leak(s));
        }
        t
    })
}

fn draft(sequence: u64, kind: String, payload: Value) -> Draft {
    Draft {
        recipient: bob().address(),
        dialogue: B256([7; 32]),
        sequence,
        expiry: NOW + 60_000,
        chain_id: CHAIN,
        kind,
        payload,
    }
}

fn sealed(sequence: u64, kind: String, payload: Value) -> Envelope {
    Envelope::seal(&alice(), draft(sequence, kind, payload)).unwrap()
}

/// Binary frames: `Inbox::receive` (parse and every check) and the edge's
/// signature check, on arbitrary bytes and on mutated sealed envelopes.
#[test]
fn fuzz_envelope_frames() {
    let tokens = frame_tokens();
    let base = sealed(
        5,
        "negotiation.CallForProposal".into(),
        json!({"task": "forecast Lisbon", "maxPrice": "1500000", "days": [1, 2]}),
    );
    let base_json = serde_json::to_value(&base).unwrap();
    let valid = (
        1u64..u64::MAX,
        prop_oneof![token(tokens).prop_map(String::from), any::<String>()],
        json_value(tokens),
    )
        .prop_map(|(seq, kind, payload)| Bytes(sealed(seq, kind, payload).to_bytes()));
    let cases = prop_oneof![
        1 => valid.prop_map(Case::Valid),
        4 => mutate_json(base_json, tokens)
            .prop_map(|v| Case::Fuzzed(Bytes(serde_json::to_vec(&v).unwrap()))),
        2 => mutate_bytes(base.to_bytes(), tokens).prop_map(Case::Fuzzed),
        1 => arbitrary_bytes(2048).prop_map(Case::Fuzzed),
        1 => nested_json().prop_map(|s| Case::Fuzzed(Bytes(s.into_bytes()))),
    ];
    fuzz("fuzz_envelope_frames", 1000, cases, |case| {
        let (Case::Valid(bytes) | Case::Fuzzed(bytes)) = case;
        let mut inbox = Inbox::new(bob().address(), CHAIN, InboxLimits::default());
        let received = inbox.receive(bytes, NOW);
        explained(&received)?;
        if let Case::Valid(_) = case {
            received.map_err(|r| {
                let text = String::from_utf8_lossy(bytes);
                format!("a sealed envelope was refused: {r}: {text}")
            })?;
        }
        let parsed = Envelope::from_bytes(bytes);
        explained(&parsed)?;
        if let Ok(env) = parsed {
            let _ = (env.header(), env.signing_hash());
            // The wire form parses back to the same envelope.
            match Envelope::from_bytes(&env.to_bytes()) {
                Ok(again) if again == env => {}
                other => return Err(format!("{env:?} came back as {other:?}")),
            }
            explained(&KeyCache::new(4).verify(env))?;
        }
        Ok(())
    });
}

/// Text frames: `Control::parse`, then the refusal's signature check.
#[test]
fn fuzz_control_frames() {
    let tokens = frame_tokens();
    let env = sealed(9, "weather.Forecast".into(), json!({}));
    let refusal = Refusal::of(&env.header(), "expired");
    let signature = refusal.sign(&bob()).unwrap();
    let frame = |signature| Control::Refused {
        sender: refusal.sender,
        recipient: refusal.recipient,
        dialogue: refusal.dialogue,
        sequence: refusal.sequence,
        reason: refusal.reason.clone(),
        signature,
    };
    let signed = serde_json::to_value(frame(Some(signature))).unwrap();
    let unsigned = serde_json::to_value(frame(None)).unwrap();
    let valid = vec![signed.to_string(), unsigned.to_string()];
    let mutated = Union::new([
        mutate_json(signed.clone(), tokens),
        mutate_json(unsigned, tokens),
    ]);
    let cases = prop_oneof![
        1 => prop::sample::select(valid).prop_map(Case::Valid),
        6 => mutated.prop_map(|v| Case::Fuzzed(v.to_string())),
        1 => fuzz_support::mutate_text(signed.to_string(), tokens).prop_map(Case::Fuzzed),
        1 => arbitrary_text().prop_map(Case::Fuzzed),
        1 => nested_json().prop_map(Case::Fuzzed),
    ];
    fuzz("fuzz_control_frames", 1000, cases, |case| {
        let (Case::Valid(text) | Case::Fuzzed(text)) = case;
        let parsed = Control::parse(text);
        explained(&parsed)?;
        match parsed {
            Ok(Control::Refused {
                sender,
                recipient,
                dialogue,
                sequence,
                reason,
                signature,
            }) => {
                let refusal = Refusal {
                    sender,
                    recipient,
                    dialogue,
                    sequence,
                    chain_id: CHAIN,
                    reason,
                };
                if let Some(sig) = signature {
                    let verified = refusal.verify(&sig);
                    explained(&verified)?;
                    if let Case::Valid(_) = case {
                        verified.map_err(|e| format!("the recipient's signature failed: {e}"))?;
                    }
                }
                Ok(())
            }
            Err(e) if matches!(case, Case::Valid(_)) => Err(format!("refused: {e}")),
            Err(_) => Ok(()),
        }
    });
}

const HTTP_TOKENS: &[&str] = &[
    "GET",
    "get",
    "POST",
    "HEAD",
    "PUT",
    "OPTIONS",
    "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    " ",
    "  ",
    "\r\n",
    "\r\n\r\n",
    "\n",
    "\r",
    "\0",
    "/",
    "//",
    "/ws",
    "/health",
    "/metrics",
    "/metrics.json",
    "/cards",
    "/card/",
    "/card/0x",
    "/echo",
    "/echo/a",
    "?",
    "#",
    "%2F",
    "..",
    "HTTP/1.1",
    "HTTP/1.0",
    "HTTP/2",
    "Host: a\r\n",
    "Content-Length: 5\r\n",
    "Content-Length: 18446744073709551616\r\n",
    "Content-Length: -1\r\n",
    "Transfer-Encoding: chunked\r\n",
    "5\r\nhello\r\n0\r\n\r\n",
    "ffffffffffffffffff\r\n",
    "Expect: 100-continue\r\n",
    "Connection: close\r\n",
    "Connection: keep-alive, Upgrade\r\n",
    "Upgrade: websocket\r\n",
    "Sec-WebSocket-Version: 13\r\n",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    "\u{e9}",
];

/// Sends `bytes` to `addr`, half-closes, and reads until the host closes. A reset
/// counts as a close.
fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::{ErrorKind, Read, Write};
    let mut socket =
        std::net::TcpStream::connect(addr).map_err(|e| format!("cannot connect: {e}"))?;
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    // The host may answer (and close) before it read everything.
    let _ = socket.write_all(bytes);
    let _ = socket.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    match socket.read_to_end(&mut out) {
        Ok(_) => Ok(out),
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => Ok(out),
        Err(e) => Err(format!(
            "the host neither answered nor closed: {e}; got {:?}",
            String::from_utf8_lossy(&out)
        )),
    }
}

/// A response's status, headers (names in lowercase) and body.
type Answer<'a> = (u16, Vec<(String, String)>, &'a [u8]);

/// The first response in `bytes`.
fn first_response(bytes: &[u8]) -> Result<Answer<'_>, String> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no whole response head: {:?}", text(bytes)))?;
    let head = text(&bytes[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| {
            l.strip_prefix("HTTP/1.1 ")
                .or_else(|| l.strip_prefix("HTTP/1.0 "))
        })
        .and_then(|l| l.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP/1 status line: {head:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok((status, headers, &bytes[end + 4..]))
}

/// Arbitrary and near-valid requests on a real host's port: each gets HTTP
/// responses or a close, never a crash; valid ones get their answer.
#[test]
fn fuzz_http_requests() {
    let dir = tempfile::tempdir().unwrap();
    // Echoes the method, the path and the body's length (at most 64 KiB).
    let echo = tower::service_fn(|req: Request<Incoming>| async move {
        let head = format!("{} {}", req.method(), req.uri().path());
        let body = Limited::new(req.into_body(), 64 * 1024).collect().await;
        let text = match body {
            Ok(b) => format!("{head} {}", b.to_bytes().len()),
            Err(e) => format!("{head}: {e}"),
        };
        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Chunk::from(text))))
    });
    let host = Host::spawn(
        HostConfig::new(CHAIN, dir.path())
            .workers(1)
            .listen("127.0.0.1:0".parse().unwrap())
            .mount_http("/echo", echo),
    )
    .unwrap();
    let addr = host.local_addr().unwrap();
    let agent = host
        .spawn_agent(AgentSpec {
            name: "fuzzed".into(),
            wallet: Arc::new(alice()),
            handlers: vec![],
            policy: None,
            directory: None,
            limits: AgentLimits::default(),
        })
        .unwrap();
    let card = format!("/card/{}", agent.address());
    let card_lower = card.to_lowercase();
    let paths: Vec<String> = vec![
        "/health".into(),
        "/metrics".into(),
        "/metrics.json".into(),
        "/cards".into(),
        card.clone(),
        card_lower,
    ];
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let post = "POST /echo/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello".to_owned();
    let upgrade = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                   Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        .to_owned();
    let valid = prop::sample::select(paths.clone()).prop_map(move |p| Bytes(get(&p).into_bytes()));
    let mutated = Union::new(
        paths
            .iter()
            .map(|p| get(p))
            .chain([post, upgrade])
            .map(|r| mutate_bytes(r.into_bytes(), HTTP_TOKENS)),
    );
    let request = (
        token(HTTP_TOKENS),
        prop_oneof![
            token(HTTP_TOKENS).prop_map(String::from),
            any::<String>(),
            "/card/(0[xX])?[0-9a-fA-F]{0,44}",
            Just(card.clone()),
        ],
        token(HTTP_TOKENS),
        prop::collection::vec(token(HTTP_TOKENS), 0..6),
    )
        .prop_map(|(method, path, version, rest)| {
            Bytes(format!("{method} {path} {version}\r\n{}", rest.concat()).into_bytes())
        });
    let cases = prop_oneof![
        1 => valid.prop_map(Case::Valid),
        3 => mutated.prop_map(Case::Fuzzed),
        3 => request.prop_map(Case::Fuzzed),
        1 => arbitrary_bytes(512).prop_map(Case::Fuzzed),
    ];
    fuzz("fuzz_http_requests", 1000, cases, |case| {
        let (Case::Valid(bytes) | Case::Fuzzed(bytes)) = case;
        let answer = exchange(addr, bytes)?;
        if answer.is_empty() {
            if matches!(case, Case::Valid(_)) {
                return Err("a valid GET got no answer".into());
            }
            // Closed without a word: the host must still be there.
            let health = exchange(addr, get("/health").as_bytes())?;
            return match first_response(&health)? {
                (200, _, b"ok\n") => Ok(()),
                other => Err(format!("/health answered {other:?} after a close")),
            };
        }
        let (code, headers, body) = first_response(&answer)?;
        if let Case::Valid(_) = case {
            if code != 200 {
                return Err(format!("a valid GET got {code}"));
            }
            let json = headers
                .iter()
                .any(|(n, v)| n == "content-type" && v == "application/json");
            if json {
                serde_json::from_slice::<Value>(body)
                    .map_err(|e| format!("the body is not JSON: {e}"))?;
            }
        }
        Ok(())
    });
    drop(agent);
    host.shutdown();
}
