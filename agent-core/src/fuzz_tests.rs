//! Fuzz tests (`fuzz_…`) of what a host reads from its port: envelope frames
//! (binary WebSocket frames, through [`Inbox::receive`] and the edge's
//! [`KeyCache`]), control frames (text WebSocket frames, [`Control::parse`]) and
//! plain HTTP request lines ([`request_head`], then the host's answer). See the
//! README's "Fuzzing".

use std::sync::{Arc, OnceLock};

use fuzz_support::proptest::prelude::*;
use fuzz_support::proptest::strategy::Union;
use fuzz_support::{
    arbitrary_bytes, arbitrary_text, explained, fuzz, json_value, mutate_bytes, mutate_json,
    nested_json, token, Bytes, Case,
};
use serde_json::{json, Value};
use wallets::{Wallet, B256};

use crate::envelope::{Draft, Envelope, Inbox, InboxLimits, KeyCache, Refusal};
use crate::transport::{is_http, request_head, Control, RequestHead};
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
    " ",
    "  ",
    "\r\n",
    "\n",
    "\r",
    "\0",
    "/",
    "//",
    "/ws",
    "/health",
    "/metrics",
    "/.well-known/agent-card.json",
    "/card/",
    "/card/0x",
    "?",
    "#",
    "%2F",
    "..",
    "HTTP/1.1",
    "HTTP/1.0",
    "Host: a\r\n",
    "Upgrade: websocket\r\n",
    "\u{e9}",
];

/// Plain HTTP on the host's port: the request line, then the answer for its path.
#[test]
fn fuzz_http_request_lines() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::spawn(HostConfig::new(CHAIN, dir.path()).workers(1)).unwrap();
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
        "/.well-known/agent-card.json".into(),
        card.clone(),
        card_lower,
    ];
    let request = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let valid =
        prop::sample::select(paths.clone()).prop_map(move |p| Bytes(request(&p).into_bytes()));
    let mutated = Union::new(
        paths
            .iter()
            .map(|p| mutate_bytes(request(p).into_bytes(), HTTP_TOKENS)),
    );
    let line = (
        token(HTTP_TOKENS),
        prop_oneof![
            token(HTTP_TOKENS).prop_map(String::from),
            any::<String>(),
            "/card/(0[xX])?[0-9a-fA-F]{0,44}",
            Just(card.clone()),
        ],
        token(HTTP_TOKENS),
    )
        .prop_map(|(method, path, version)| {
            Bytes(format!("{method} {path} {version}\r\n\r\n").into_bytes())
        });
    let cases = prop_oneof![
        1 => valid.prop_map(Case::Valid),
        3 => mutated.prop_map(Case::Fuzzed),
        3 => line.prop_map(Case::Fuzzed),
        1 => arbitrary_bytes(512).prop_map(Case::Fuzzed),
    ];
    fuzz("fuzz_http_request_lines", 1000, cases, |case| {
        let (Case::Valid(bytes) | Case::Fuzzed(bytes)) = case;
        let path = match request_head(bytes) {
            RequestHead::Get(path) if is_http(&path) => path,
            _ if matches!(case, Case::Valid(_)) => {
                return Err("a valid GET was not read as one".into());
            }
            _ => return Ok(()),
        };
        let answer = host.http_get(&path);
        if let Some((ctype, body)) = &answer {
            if ctype == "application/json" {
                serde_json::from_str::<Value>(body)
                    .map_err(|e| format!("{path}: the body is not JSON: {e}"))?;
            }
        } else if matches!(case, Case::Valid(_)) {
            return Err(format!("{path} got no answer"));
        }
        Ok(())
    });
    drop(agent);
    host.shutdown();
}

#[test]
fn request_lines_are_read_as_the_transport_did() {
    assert_eq!(
        request_head(b"GET /health HTTP/1.1\r\n"),
        RequestHead::Get("/health".into())
    );
    assert_eq!(
        request_head(b"GET /health HTTP/1.1"),
        RequestHead::Incomplete
    );
    assert_eq!(request_head(b"POST / HTTP/1.1\r\n"), RequestHead::Other);
    assert_eq!(request_head(b"GET\r\n"), RequestHead::Other);
    assert_eq!(request_head(b"GET \xff HTTP/1.1\r\n"), RequestHead::Other);
    assert!(is_http("/health") && !is_http("/") && !is_http("/ws/x"));
}
