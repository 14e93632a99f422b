//! The x402 v2 wire format: the JSON objects of the headers and of the facilitator
//! API, and the header codec (standard base64, with padding, of UTF-8 JSON).
//!
//! The types are plain serde structs with camelCase keys, as the real clients (PyPI
//! `x402`, npm `@x402/*`) write them. Amounts and addresses stay the strings they were
//! sent as, so an `accepted` echo or a facilitator request round-trips verbatim; the
//! accessors ([`PaymentRequirements::amount_units`], [`parse_address`], …) turn them into
//! our types. Fields the real clients add that we do not use (`serviceName`, `tags` and
//! `iconUrl` of a resource, extensions, a settlement's `extensions`) are kept in the
//! `other` maps and written back.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Error, Result};

/// The protocol version these types speak.
pub const X402_VERSION: u32 = 2;

/// The header of a 402 answer that carries the [`PaymentRequired`].
pub const PAYMENT_REQUIRED_HEADER: &str = "PAYMENT-REQUIRED";
/// The header of a paid request that carries the [`PaymentPayload`].
pub const PAYMENT_SIGNATURE_HEADER: &str = "PAYMENT-SIGNATURE";
/// The header of a paid answer that carries the [`SettleResponse`].
pub const PAYMENT_RESPONSE_HEADER: &str = "PAYMENT-RESPONSE";

/// Agora's response header with what a seller attests about a paid result (such as
/// the signed record of an LLM inference): base64 of JSON, like the x402 headers.
/// x402 clients pass it through as any other header.
pub const ATTESTATION_HEADER: &str = "AGORA-ATTESTATION";

/// The longest x402 header [`decode_header`] accepts, in bytes of base64. An exact-EVM
/// payment payload is about 1.5 KB of base64; a 402 with a few offers and bazaar schemas
/// stays well below this.
pub const MAX_HEADER_LEN: usize = 16 * 1024;

/// The scheme of a payment of exactly the asked amount (EIP-3009 on EVM chains).
pub const SCHEME_EXACT: &str = "exact";

/// A CAIP-2 network identifier as sent (`eip155:1337`); [`Network::chain_id`] parses it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Network(String);

impl Network {
    /// The EVM chain `chain_id`: `eip155:<chain_id>`.
    pub fn eip155(chain_id: u64) -> Self {
        Self(format!("eip155:{chain_id}"))
    }

    /// The identifier as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The EVM chain id of `eip155:<decimal chain id>`.
    ///
    /// # Errors
    /// [`Error::Network`] for another namespace, a missing, signed, zero-padded or
    /// oversized number, or trailing text.
    pub fn chain_id(&self) -> Result<u64> {
        let digits = self
            .0
            .strip_prefix("eip155:")
            .ok_or_else(|| Error::Network(self.0.clone()))?;
        let canonical = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !(digits.len() > 1 && digits.starts_with('0'));
        if !canonical {
            return Err(Error::Network(self.0.clone()));
        }
        digits.parse().map_err(|_| Error::Network(self.0.clone()))
    }
}

impl From<&str> for Network {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The resource a payment is for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceInfo {
    /// Its URL.
    pub url: String,
    /// What it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The MIME type of what it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Other fields (`serviceName`, `tags`, `iconUrl`, …), kept as sent.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One way to pay for a resource: an entry of [`PaymentRequired::accepts`], echoed
/// as [`PaymentPayload::accepted`] and sent to the facilitator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirements {
    /// The scheme ([`SCHEME_EXACT`]).
    pub scheme: String,
    /// Where to pay.
    pub network: Network,
    /// How much, in the asset's base units, as a decimal string.
    pub amount: String,
    /// The token contract.
    pub asset: String,
    /// Who is paid.
    pub pay_to: String,
    /// How long a payment authorization may stay valid.
    pub max_timeout_seconds: u64,
    /// Scheme data: for exact EVM, the token's EIP-712 domain `name` and `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Map<String, Value>>,
    /// Other fields, kept as sent.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl PaymentRequirements {
    /// The amount as an integer.
    ///
    /// # Errors
    /// A message naming the field when it is not a decimal number of base units below
    /// 2^256.
    pub fn amount_units(&self) -> Result<wallets::U256, String> {
        parse_units("amount", &self.amount)
    }

    /// A string of `extra`, such as the EIP-712 domain's `name` or `version`.
    pub fn extra_str(&self, key: &str) -> Option<&str> {
        self.extra.as_ref()?.get(key)?.as_str()
    }
}

/// The body (and `PAYMENT-REQUIRED` header) of a 402 answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    /// [`X402_VERSION`].
    pub x402_version: u32,
    /// Why payment is asked for (or why the last one failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceInfo>,
    /// The ways to pay.
    pub accepts: Vec<PaymentRequirements>,
    /// Extensions (bazaar, payment-identifier, …), kept as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Map<String, Value>>,
    /// Other fields, kept as sent.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A payment (the `PAYMENT-SIGNATURE` header).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayload {
    /// [`X402_VERSION`].
    pub x402_version: u32,
    /// The scheme's payload; for exact EVM an [`ExactEvmPayload`]
    /// ([`PaymentPayload::exact_evm`]).
    pub payload: Value,
    /// A verbatim copy of the [`PaymentRequirements`] the client chose.
    pub accepted: PaymentRequirements,
    /// The resource paid for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceInfo>,
    /// Extensions, kept as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Map<String, Value>>,
    /// Other fields, kept as sent.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl PaymentPayload {
    /// The payload as an exact-EVM (EIP-3009) payment.
    ///
    /// # Errors
    /// A message saying what is missing or of the wrong type.
    pub fn exact_evm(&self) -> Result<ExactEvmPayload, String> {
        ExactEvmPayload::deserialize(&self.payload)
            .map_err(|e| format!("payload is not an exact EVM payload: {e}"))
    }

    /// The payer as the payload names it (`payload.authorization.from`), if it does.
    pub fn payer(&self) -> Option<String> {
        self.payload
            .get("authorization")?
            .get("from")?
            .as_str()
            .map(str::to_owned)
    }
}

/// The exact-EVM payload: an EIP-3009 `TransferWithAuthorization` and its signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExactEvmPayload {
    /// The signed authorization.
    pub authorization: ExactEvmAuthorization,
    /// The payer's 65-byte signature, `0x`-hex.
    pub signature: String,
}

impl ExactEvmPayload {
    /// The payload of a signed EIP-3009 authorization, as the real clients write it
    /// (checksummed addresses, decimal numbers); `None` for another kind of payment.
    pub fn of(signed: &wallets::SignedPayment) -> Option<Self> {
        let wallets::Payment::Authorization { transfer: t, .. } = &signed.payment else {
            return None;
        };
        Some(Self {
            authorization: ExactEvmAuthorization {
                from: t.from.to_string(),
                to: t.to.to_string(),
                value: t.value.base_units().to_string(),
                valid_after: t.valid_after.to_string(),
                valid_before: t.valid_before.to_string(),
                nonce: t.nonce.to_string(),
            },
            signature: signed.signature.to_string(),
        })
    }
}

/// The fields of an EIP-3009 `TransferWithAuthorization`, as strings: addresses in any
/// case, numbers in decimal, the nonce as 32 bytes of `0x`-hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExactEvmAuthorization {
    /// The payer.
    pub from: String,
    /// The payee.
    pub to: String,
    /// The amount in base units.
    pub value: String,
    /// Unix seconds after which it is valid.
    pub valid_after: String,
    /// Unix seconds before which it is valid.
    pub valid_before: String,
    /// The 32-byte nonce.
    pub nonce: String,
}

impl ExactEvmAuthorization {
    /// The authorization in wallet types.
    ///
    /// # Errors
    /// A message naming the field that does not parse, or a value or time that does
    /// not fit our types (values above 2^128, times above 2^64).
    pub fn to_transfer(&self) -> Result<wallets::TransferWithAuthorization, String> {
        let value = parse_units("authorization.value", &self.value)?;
        if value.bits() > 128 {
            return Err(format!(
                "authorization.value {} is above 2^128 base units",
                self.value
            ));
        }
        let time = |field: &str, s: &str| -> Result<u64, String> {
            let v = parse_units(field, s)?;
            if v.bits() > 64 {
                Err(format!("{field} {s} is above 2^64"))
            } else {
                Ok(v.low_u64())
            }
        };
        let nonce = wallets::B256::from_hex(&self.nonce)
            .map_err(|e| format!("authorization.nonce {:?}: {e}", self.nonce))?;
        Ok(wallets::TransferWithAuthorization {
            from: parse_address("authorization.from", &self.from)?,
            to: parse_address("authorization.to", &self.to)?,
            value: wallets::Amount::from_base_units(value.low_u128()),
            valid_after: time("authorization.validAfter", &self.valid_after)?,
            valid_before: time("authorization.validBefore", &self.valid_before)?,
            nonce,
        })
    }
}

/// Parses an address in any letter case (x402 clients differ: Python copies `payTo`
/// as given, TypeScript checksums it), so two spellings of one address compare equal.
///
/// # Errors
/// A message naming `field` when it is not 20 bytes of `0x`-hex.
pub fn parse_address(field: &str, s: &str) -> Result<wallets::Address, String> {
    wallets::Address::parse(&s.to_ascii_lowercase()).map_err(|e| format!("{field} {s:?}: {e}"))
}

/// Parses a decimal string of base units (digits only, below 2^256).
///
/// # Errors
/// A message naming `field` otherwise.
pub fn parse_units(field: &str, s: &str) -> Result<wallets::U256, String> {
    if s.is_empty() || s.len() > 78 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{field} {s:?} is not a decimal number of base units"
        ));
    }
    wallets::U256::from_dec_str(s).map_err(|_| format!("{field} {s} is above 2^256"))
}

/// The body of `POST /verify` and `POST /settle`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyRequest {
    /// [`X402_VERSION`].
    pub x402_version: u32,
    /// The payment.
    pub payment_payload: PaymentPayload,
    /// What the resource server asks for.
    pub payment_requirements: PaymentRequirements,
}

/// The body of `POST /settle`: the same as [`VerifyRequest`].
pub type SettleRequest = VerifyRequest;

/// The answer of `POST /verify`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResponse {
    /// Whether the payment would settle.
    pub is_valid: bool,
    /// Why not: an x402 reason code ([`crate::verify::InvalidReason::as_str`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_reason: Option<String>,
    /// Why not, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_message: Option<String>,
    /// The payer, as the payment names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// Other fields, kept as sent.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The answer of `POST /settle`, and the `PAYMENT-RESPONSE` header. `transaction` and
/// `network` are present even on failure (`""` when nothing was sent).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettleResponse {
    /// Whether the payment is settled.
    pub success: bool,
    /// Why not: an x402 reason code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<String>,
    /// Why not, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The payer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// The settling transaction's hash, `""` for none.
    pub transaction: String,
    /// The network it was settled on.
    pub network: Network,
    /// The settled amount in base units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    /// Other fields, kept as sent.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One kind of payment a facilitator settles.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportedKind {
    /// [`X402_VERSION`].
    pub x402_version: u32,
    /// The scheme.
    pub scheme: String,
    /// The network.
    pub network: Network,
    /// Scheme data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Map<String, Value>>,
}

/// The answer of `GET /supported`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportedResponse {
    /// What it settles.
    pub kinds: Vec<SupportedKind>,
    /// The extensions it supports.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// Its signer addresses by CAIP family (`eip155:*`).
    #[serde(default)]
    pub signers: BTreeMap<String, Vec<String>>,
}

/// Encodes `value` as an x402 header: standard base64, with padding, of its JSON.
///
/// # Errors
/// [`Error::Encode`] when `value` cannot be written as JSON (a map with non-string keys).
pub fn encode_header<T: Serialize>(value: &T) -> Result<String> {
    let json = serde_json::to_vec(value).map_err(|e| Error::Encode {
        what: std::any::type_name::<T>(),
        reason: e.to_string(),
    })?;
    Ok(base64::engine::general_purpose::STANDARD.encode(json))
}

/// Decodes the x402 header `header` (its name, for errors) holding a `T` (whose name
/// `expected` errors give).
///
/// # Errors
/// [`Error::HeaderTooLarge`] above [`MAX_HEADER_LEN`] bytes, [`Error::HeaderBase64`]
/// when it is not standard padded base64, [`Error::HeaderJson`] when the bytes are
/// not UTF-8 JSON of a `T`.
pub fn decode_header<T: DeserializeOwned>(
    header: &'static str,
    expected: &'static str,
    value: &[u8],
) -> Result<T> {
    if value.len() > MAX_HEADER_LEN {
        return Err(Error::HeaderTooLarge {
            header,
            len: value.len(),
            max: MAX_HEADER_LEN,
        });
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim_ascii())
        .map_err(|e| Error::HeaderBase64 {
            header,
            reason: e.to_string(),
        })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::HeaderJson {
        header,
        expected,
        reason: e.to_string(),
    })
}

/// Decodes a `PAYMENT-SIGNATURE` header.
///
/// # Errors
/// As [`decode_header`].
pub fn decode_payment_signature(value: &[u8]) -> Result<PaymentPayload> {
    decode_header(PAYMENT_SIGNATURE_HEADER, "PaymentPayload", value)
}

/// Decodes a `PAYMENT-REQUIRED` header.
///
/// # Errors
/// As [`decode_header`].
pub fn decode_payment_required(value: &[u8]) -> Result<PaymentRequired> {
    decode_header(PAYMENT_REQUIRED_HEADER, "PaymentRequired", value)
}

/// Decodes a `PAYMENT-RESPONSE` header.
///
/// # Errors
/// As [`decode_header`].
pub fn decode_payment_response(value: &[u8]) -> Result<SettleResponse> {
    decode_header(PAYMENT_RESPONSE_HEADER, "SettleResponse", value)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A payment payload as the Python client 2.25 writes it (`model_dump(by_alias=True,
    /// exclude_none=True)`), with a resource carrying fields we do not model.
    pub(crate) fn python_payload() -> Value {
        json!({
            "x402Version": 2,
            "payload": {
                "authorization": {
                    "from": "0x857b06519E91e3A54538791bDbb0E22373e36b66",
                    "to": "0x209693bc6afc0c5328ba36faf03c514ef312287c",
                    "value": "950000",
                    "validAfter": "0",
                    "validBefore": "1796473074",
                    "nonce": "0x4f2c0c8a9b0d3e7e5e1f3a2b6c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f809"
                },
                "signature": "0x2d6a7588d6acca505cbf0d9a4a227e0c52c6c34008c8e8986a1283259764173608a2ce6496642e377d6da8dbbf5836e9bd15092f9ecab05ded3d6293af148b571c"
            },
            "accepted": {
                "scheme": "exact",
                "network": "eip155:1337",
                "asset": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
                "amount": "950000",
                "payTo": "0x209693bc6afc0c5328ba36faf03c514ef312287c",
                "maxTimeoutSeconds": 60,
                "extra": {"name": "USD Coin", "version": "2", "assetTransferMethod": "eip3009"}
            },
            "resource": {
                "url": "http://127.0.0.1:7411/x402/weather.forecast",
                "description": "a forecast",
                "mimeType": "application/json",
                "serviceName": "weather",
                "tags": ["weather"]
            },
            "extensions": {"payment-identifier": {"id": "abc"}},
            "somethingNew": [1, 2, 3]
        })
    }

    #[test]
    fn a_python_payload_round_trips_verbatim() {
        let doc = python_payload();
        let payload: PaymentPayload = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(serde_json::to_value(&payload).unwrap(), doc);
        let header = encode_header(&payload).unwrap();
        let back = decode_payment_signature(header.as_bytes()).unwrap();
        assert_eq!(back, payload);
        // The accepted echo alone, too.
        assert_eq!(
            serde_json::to_value(&payload.accepted).unwrap(),
            doc["accepted"]
        );
        assert_eq!(payload.accepted.extra_str("name"), Some("USD Coin"));
        let exact = payload.exact_evm().unwrap();
        let transfer = exact.authorization.to_transfer().unwrap();
        assert_eq!(transfer.value.base_units(), 950_000);
        assert_eq!(
            transfer.to,
            parse_address("payTo", &payload.accepted.pay_to).unwrap()
        );
    }

    #[test]
    fn addresses_compare_in_any_case() {
        let checksummed = parse_address("a", "0x209693Bc6afc0C5328bA36FaF03C514EF312287C").unwrap();
        let lower = parse_address("a", "0x209693bc6afc0c5328ba36faf03c514ef312287c").unwrap();
        let upper = parse_address("a", "0x209693BC6AFC0C5328BA36FAF03C514EF312287C").unwrap();
        assert_eq!(checksummed, lower);
        assert_eq!(upper, lower);
        assert!(parse_address("payTo", "0x1234")
            .unwrap_err()
            .contains("payTo"));
    }

    #[test]
    fn networks_parse_only_canonical_eip155() {
        assert_eq!(Network::from("eip155:1337").chain_id().unwrap(), 1337);
        assert_eq!(Network::eip155(8453).as_str(), "eip155:8453");
        for bad in [
            "eip155:",
            "eip155:01",
            "eip155:+1",
            "eip155:1:2",
            "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
            "eip155:99999999999999999999",
            "EIP155:1",
        ] {
            let err = Network::from(bad).chain_id().unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn amounts_are_plain_decimal_base_units() {
        assert_eq!(parse_units("amount", "950000").unwrap(), 950_000.into());
        for bad in ["", "-1", "+1", "1.5", "1e6", " 1", "0x10", "١"] {
            let err = parse_units("amount", bad).unwrap_err();
            assert!(err.starts_with("amount"), "{err}");
        }
        let big = "1".repeat(79);
        assert!(parse_units("amount", &big).is_err());
    }

    #[test]
    fn bad_headers_say_what_is_wrong() {
        let too_big = vec![b'A'; MAX_HEADER_LEN + 4];
        let err = decode_payment_signature(&too_big).unwrap_err();
        assert!(matches!(err, Error::HeaderTooLarge { .. }), "{err}");
        assert!(err.to_string().contains("PAYMENT-SIGNATURE"), "{err}");

        let err = decode_payment_signature(b"not base64!").unwrap_err();
        assert!(matches!(err, Error::HeaderBase64 { .. }), "{err}");

        // Unpadded base64 is not the standard form.
        let err = decode_payment_signature(b"e30").unwrap_err();
        assert!(matches!(err, Error::HeaderBase64 { .. }), "{err}");

        // `{}`: valid base64 and JSON, but no payment.
        let err = decode_payment_signature(b"e30=").unwrap_err();
        assert!(matches!(err, Error::HeaderJson { .. }), "{err}");
        assert!(err.to_string().contains("PaymentPayload"), "{err}");
    }

    #[test]
    fn a_settle_failure_still_has_transaction_and_network() {
        let failed = SettleResponse {
            success: false,
            error_reason: Some("invalid_exact_evm_nonce_already_used".into()),
            network: Network::eip155(1337),
            ..SettleResponse::default()
        };
        let v = serde_json::to_value(&failed).unwrap();
        assert_eq!(v["transaction"], "");
        assert_eq!(v["network"], "eip155:1337");
        assert!(v.get("errorMessage").is_none());
    }
}
