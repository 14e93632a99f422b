//! Fuzz tests (`fuzz_…`) of what an x402 peer sends us: the `PAYMENT-SIGNATURE`
//! header (arbitrary bytes, and mutations of a real Python client's header, as base64
//! and as the JSON inside it) and the facilitator API's request bodies, each decoded
//! and then checked by [`crate::verify::check`]. Nothing may panic, and every refusal
//! must say what was wrong.

use fuzz_support::proptest::prelude::*;
use fuzz_support::{arbitrary_bytes, explained, fuzz, mutate_bytes, mutate_json, Bytes};
use serde_json::{json, Value};

use crate::verify;
use crate::wire::{self, PaymentPayload, VerifyRequest};

/// Keys and values the mutations splice in.
const TOKENS: &[&str] = &[
    "x402Version",
    "payload",
    "authorization",
    "signature",
    "accepted",
    "scheme",
    "exact",
    "network",
    "eip155:1337",
    "eip155:",
    "amount",
    "value",
    "validAfter",
    "validBefore",
    "nonce",
    "payTo",
    "extra",
    "name",
    "version",
    "0x",
    "0",
    "-1",
    "115792089237316195423570985008687907853269984665640564039457584007913129639936",
    "=",
    "==",
    "/",
    "+",
];

fn payload() -> Value {
    crate::wire::tests::python_payload()
}

/// Whatever the header holds, decoding either gives a payload or a stated error, and
/// a decoded payload is then either accepted or refused with a reason and a message.
fn decode_and_check(bytes: &[u8]) -> Result<(), String> {
    let decoded = wire::decode_payment_signature(bytes);
    explained(&decoded)?;
    if let Ok(payment) = decoded {
        check(&payment)?;
    }
    Ok(())
}

fn check(payment: &PaymentPayload) -> Result<(), String> {
    match verify::check(payment, &payment.accepted, 1337, 1_790_000_000) {
        Err(invalid) if invalid.message.trim().is_empty() => {
            Err(format!("{:?} without a message", invalid.reason))
        }
        _ => Ok(()),
    }
}

#[test]
fn fuzz_payment_signature_header() {
    let header = wire::encode_header(&payload()).unwrap().into_bytes();
    // The valid header decodes.
    decode_and_check(&header).unwrap();
    assert!(wire::decode_payment_signature(&header).is_ok());
    let strategy = prop_oneof![
        1 => arbitrary_bytes(4096),
        3 => mutate_bytes(header, TOKENS),
        // Valid base64 of mutated JSON text.
        3 => mutate_bytes(payload().to_string().into_bytes(), TOKENS).prop_map(|b| {
            use base64::Engine as _;
            let text = String::from_utf8_lossy(&b).into_owned();
            Bytes(base64::engine::general_purpose::STANDARD.encode(text).into_bytes())
        }),
        // Valid base64 of raw mutated bytes (not necessarily UTF-8).
        1 => mutate_bytes(payload().to_string().into_bytes(), TOKENS).prop_map(|b| {
            use base64::Engine as _;
            Bytes(base64::engine::general_purpose::STANDARD.encode(&b.0).into_bytes())
        }),
    ];
    fuzz(
        "fuzz_payment_signature_header",
        512,
        strategy,
        |b: &Bytes| decode_and_check(b),
    );
}

#[test]
fn fuzz_payment_payload_json() {
    fuzz(
        "fuzz_payment_payload_json",
        512,
        mutate_json(payload(), TOKENS),
        |doc: &Value| {
            // Through the header codec, as a client would send it.
            let header = wire::encode_header(doc).map_err(|e| e.to_string())?;
            decode_and_check(header.as_bytes())
        },
    );
}

#[test]
fn fuzz_facilitator_request() {
    let doc = json!({
        "x402Version": 2,
        "paymentPayload": payload(),
        "paymentRequirements": payload()["accepted"].clone(),
    });
    fuzz(
        "fuzz_facilitator_request",
        512,
        mutate_json(doc, TOKENS),
        |doc: &Value| {
            let parsed = serde_json::from_value::<VerifyRequest>(doc.clone());
            explained(&parsed)?;
            if let Ok(request) = parsed {
                if let Err(invalid) = verify::check(
                    &request.payment_payload,
                    &request.payment_requirements,
                    1337,
                    1_790_000_000,
                ) {
                    if invalid.message.trim().is_empty() {
                        return Err(format!("{:?} without a message", invalid.reason));
                    }
                }
            }
            Ok(())
        },
    );
}
