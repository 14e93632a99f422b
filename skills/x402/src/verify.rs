//! Verification of exact-EVM payments: an EIP-3009 `TransferWithAuthorization` of the
//! asked amount to the asked payee, signed by the payer in the token's EIP-712 domain.
//!
//! The checks run in the order of the reference facilitator (PyPI `x402` 2.25,
//! `x402.mechanisms.evm.exact.facilitator`), so the first failing one gives the same
//! reason code the real clients know:
//!
//! 1. [`check`], without the chain: the x402 version, scheme and network; the token's
//!    EIP-712 `name` and `version` in `extra`; `to` = `payTo`; `value` = `amount`
//!    exactly; `validBefore` ≥ now + 6 s; `validAfter` ≤ now; the signature recovers
//!    `from` in the domain `{name, version, chainId, verifyingContract: asset}`.
//! 2. [`check_on_chain`]: the asset has code; the authorization is unused
//!    (`authorizationState`); the token's domain is the one signed in (its name, then
//!    its version, as the reference's diagnosis does); the payer's balance covers the
//!    value; and an `eth_call` of `transferWithAuthorization` succeeds.
//!
//! Each refusal is an [`Invalid`]: a typed [`InvalidReason`] whose
//! [`InvalidReason::as_str`] is the x402 `invalidReason` string, and a message for people.

use registry::chain::{ChainError, Eip3009Token};
use wallets::{Address, Eip712, Eip712Domain, Signature, TransferWithAuthorization};

use crate::wire::{
    parse_address, Network, PaymentPayload, PaymentRequirements, SCHEME_EXACT, X402_VERSION,
};

/// How long before `validBefore` a payment is still accepted, in seconds: the
/// reference facilitator's margin for the settling transaction to be mined.
pub const VALID_BEFORE_MARGIN_SECS: u64 = 6;

/// Why a payment does not verify or settle. [`InvalidReason::as_str`] gives the x402
/// reason code (the strings of PyPI `x402` 2.25, `x402.mechanisms.evm.constants`, and
/// the spec's general codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InvalidReason {
    /// The request or payment is not x402 version 2.
    InvalidX402Version,
    /// The body, payload or requirements do not parse.
    InvalidPayload,
    /// The scheme is not `exact`.
    UnsupportedScheme,
    /// The payment's `accepted.network` is not the requirements' network.
    NetworkMismatch,
    /// The network is not `eip155:<id>` of the facilitator's chain.
    UnsupportedNetwork,
    /// The requirements' `extra` lacks the token's EIP-712 `name` or `version`.
    MissingEip712Domain,
    /// The facilitator does not settle this asset.
    UnsupportedAsset,
    /// `to` is not `payTo`.
    RecipientMismatch,
    /// `value` is not exactly `amount`.
    ValueMismatch,
    /// `validBefore` is less than [`VALID_BEFORE_MARGIN_SECS`] away.
    ValidBeforeExpired,
    /// `validAfter` is in the future.
    ValidAfterFuture,
    /// The signature is malformed or does not recover `from`.
    InvalidSignature,
    /// No contract at the asset's address.
    AssetNotDeployed,
    /// The asset has no EIP-3009 (`authorizationState` or `DOMAIN_SEPARATOR` fails).
    Eip3009NotSupported,
    /// `extra.name` is not the token's EIP-712 domain name.
    TokenNameMismatch,
    /// `extra.version` is not the token's EIP-712 domain version.
    TokenVersionMismatch,
    /// The authorization's nonce was used (or canceled).
    NonceAlreadyUsed,
    /// The payer holds less than `value`.
    InsufficientBalance,
    /// The transfer would revert for another reason.
    SimulationFailed,
    /// The settling transaction reverted or could not be sent.
    TransactionFailed,
    /// The settling transaction did not move the authorized transfer.
    TransferEventMismatch,
    /// The node could not be asked (verification).
    UnexpectedVerifyError,
    /// The node could not be asked (settlement).
    UnexpectedSettleError,
}

impl InvalidReason {
    /// The x402 reason code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidX402Version => "invalid_x402_version",
            Self::InvalidPayload => "invalid_payload",
            Self::UnsupportedScheme => "unsupported_scheme",
            Self::NetworkMismatch => "network_mismatch",
            Self::UnsupportedNetwork => "invalid_exact_evm_failed_to_get_network_config",
            Self::MissingEip712Domain => "missing_eip712_domain",
            Self::UnsupportedAsset => "invalid_exact_evm_failed_to_get_asset_info",
            Self::RecipientMismatch => "invalid_exact_evm_payload_recipient_mismatch",
            Self::ValueMismatch => "invalid_exact_evm_payload_authorization_value_mismatch",
            Self::ValidBeforeExpired => "invalid_exact_evm_payload_authorization_valid_before",
            Self::ValidAfterFuture => "invalid_exact_evm_payload_authorization_valid_after",
            Self::InvalidSignature => "invalid_exact_evm_payload_signature",
            Self::AssetNotDeployed => "asset_not_deployed_contract",
            Self::Eip3009NotSupported => "invalid_exact_evm_eip3009_not_supported",
            Self::TokenNameMismatch => "invalid_exact_evm_token_name_mismatch",
            Self::TokenVersionMismatch => "invalid_exact_evm_token_version_mismatch",
            Self::NonceAlreadyUsed => "invalid_exact_evm_nonce_already_used",
            Self::InsufficientBalance => "invalid_exact_evm_insufficient_balance",
            Self::SimulationFailed => "invalid_exact_evm_transaction_simulation_failed",
            Self::TransactionFailed => "transaction_failed",
            Self::TransferEventMismatch => "invalid_exact_evm_transfer_event_mismatch",
            Self::UnexpectedVerifyError => "unexpected_verify_error",
            Self::UnexpectedSettleError => "unexpected_settle_error",
        }
    }
}

impl std::fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused payment: the reason code and what exactly was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct Invalid {
    /// The reason code.
    pub reason: InvalidReason,
    /// What was wrong, for people.
    pub message: String,
}

impl Invalid {
    /// A refusal for `reason`, explained by `message`.
    pub fn new(reason: InvalidReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// An exact-EVM payment that passed [`check`]: the authorization in wallet types, the
/// domain it was signed in, and the signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExactEvmPayment {
    /// The network, as the requirements name it.
    pub network: Network,
    /// The token.
    pub asset: Address,
    /// The EIP-712 domain the payer signed in.
    pub domain: Eip712Domain,
    /// The authorization.
    pub transfer: TransferWithAuthorization,
    /// The payer's signature.
    pub signature: Signature,
}

impl ExactEvmPayment {
    /// Who pays.
    pub fn payer(&self) -> Address {
        self.transfer.from
    }

    /// The key of the payment on chain ([`payment_key`]).
    pub fn key(&self) -> [u8; 72] {
        payment_key(self.asset, self.transfer.from, self.transfer.nonce)
    }
}

/// The key of an EIP-3009 payment on chain: the token, the payer and the nonce, which
/// the token accepts once.
pub fn payment_key(asset: Address, from: Address, nonce: wallets::B256) -> [u8; 72] {
    let mut key = [0u8; 72];
    for (k, b) in key.iter_mut().zip(
        asset
            .as_bytes()
            .iter()
            .chain(from.as_bytes())
            .chain(nonce.as_bytes()),
    ) {
        *k = *b;
    }
    key
}

/// The checks that need no chain, in the reference's order (see the module docs), for
/// a facilitator of chain `chain_id` at Unix time `now`.
///
/// # Errors
/// The first failing check's [`Invalid`].
pub fn check(
    payload: &PaymentPayload,
    requirements: &PaymentRequirements,
    chain_id: u64,
    now: u64,
) -> Result<ExactEvmPayment, Invalid> {
    use InvalidReason as R;
    if payload.x402_version != X402_VERSION {
        return Err(Invalid::new(
            R::InvalidX402Version,
            format!(
                "the payment is of x402 version {}, not {X402_VERSION}",
                payload.x402_version
            ),
        ));
    }
    for (what, scheme) in [
        ("the payment's", &payload.accepted.scheme),
        ("the requirements'", &requirements.scheme),
    ] {
        if scheme != SCHEME_EXACT {
            return Err(Invalid::new(
                R::UnsupportedScheme,
                format!("{what} scheme is {scheme:?}; this facilitator settles \"exact\""),
            ));
        }
    }
    if payload.accepted.network != requirements.network {
        return Err(Invalid::new(
            R::NetworkMismatch,
            format!(
                "the payment is for {}, the requirements for {}",
                payload.accepted.network, requirements.network
            ),
        ));
    }
    match requirements.network.chain_id() {
        Ok(id) if id == chain_id => {}
        _ => {
            return Err(Invalid::new(
                R::UnsupportedNetwork,
                format!(
                    "network {:?}: this facilitator settles {} only",
                    requirements.network.as_str(),
                    Network::eip155(chain_id)
                ),
            ))
        }
    }
    let asset = parse_address("asset", &requirements.asset)
        .map_err(|m| Invalid::new(R::InvalidPayload, m))?;
    let (Some(name), Some(version)) = (
        requirements.extra_str("name"),
        requirements.extra_str("version"),
    ) else {
        return Err(Invalid::new(
            R::MissingEip712Domain,
            "the requirements' extra lacks the token's EIP-712 name and version",
        ));
    };
    let domain = Eip712Domain::new(name, version, chain_id, asset);
    let exact = payload
        .exact_evm()
        .map_err(|m| Invalid::new(R::InvalidPayload, m))?;
    let transfer = exact
        .authorization
        .to_transfer()
        .map_err(|m| Invalid::new(R::InvalidPayload, m))?;
    let pay_to = parse_address("payTo", &requirements.pay_to)
        .map_err(|m| Invalid::new(R::InvalidPayload, m))?;
    if transfer.to != pay_to {
        return Err(Invalid::new(
            R::RecipientMismatch,
            format!("the authorization pays {}, not {pay_to}", transfer.to),
        ));
    }
    let amount = requirements
        .amount_units()
        .map_err(|m| Invalid::new(R::InvalidPayload, m))?;
    if wallets::U256::from(transfer.value.base_units()) != amount {
        return Err(Invalid::new(
            R::ValueMismatch,
            format!(
                "the authorization moves {} base units, the requirements ask {amount}",
                transfer.value.base_units()
            ),
        ));
    }
    if transfer.valid_before < now.saturating_add(VALID_BEFORE_MARGIN_SECS) {
        return Err(Invalid::new(
            R::ValidBeforeExpired,
            format!(
                "validBefore {} is less than {VALID_BEFORE_MARGIN_SECS} s after now ({now})",
                transfer.valid_before
            ),
        ));
    }
    if transfer.valid_after > now {
        return Err(Invalid::new(
            R::ValidAfterFuture,
            format!("validAfter {} is after now ({now})", transfer.valid_after),
        ));
    }
    let signature = Signature::from_hex(&exact.signature).map_err(|e| {
        Invalid::new(
            R::InvalidSignature,
            format!(
                "signature: {e} (only 65-byte ECDSA signatures of externally owned accounts \
                 are supported, not EIP-1271 or ERC-6492 smart wallet signatures)"
            ),
        )
    })?;
    let signer = signature
        .recover(&transfer.signing_hash(&domain))
        .map_err(|e| Invalid::new(R::InvalidSignature, format!("signature: {e}")))?;
    if signer != transfer.from {
        return Err(Invalid::new(
            R::InvalidSignature,
            format!(
                "the signature recovers {signer}, not the payer {} (in the domain {name:?} \
                 version {version:?} of chain {chain_id}, token {asset})",
                transfer.from
            ),
        ));
    }
    Ok(ExactEvmPayment {
        network: requirements.network.clone(),
        asset,
        domain,
        transfer,
        signature,
    })
}

/// The checks on chain (see the module docs), against `token`, the payment's asset.
///
/// # Errors
/// The first failing check's [`Invalid`]; a node that does not answer gives
/// [`InvalidReason::UnexpectedVerifyError`].
pub async fn check_on_chain(
    token: &Eip3009Token,
    payment: &ExactEvmPayment,
) -> Result<(), Invalid> {
    use InvalidReason as R;
    let node = |e: ChainError| Invalid::new(R::UnexpectedVerifyError, e.to_string());
    let t = &payment.transfer;
    if !token.has_code().await.map_err(node)? {
        return Err(Invalid::new(
            R::AssetNotDeployed,
            format!("no contract at the asset's address {}", payment.asset),
        ));
    }
    let used = token
        .authorization_state(t.from, t.nonce)
        .await
        .map_err(|e| Invalid::new(R::Eip3009NotSupported, e.to_string()))?;
    if used {
        return Err(Invalid::new(
            R::NonceAlreadyUsed,
            format!("authorization {} of {} is used", t.nonce, t.from),
        ));
    }
    let separator = token
        .domain_separator()
        .await
        .map_err(|e| Invalid::new(R::Eip3009NotSupported, e.to_string()))?;
    if separator != payment.domain.separator() {
        return Err(domain_mismatch(token, &payment.domain).await);
    }
    let balance = token.balance_of(t.from).await.map_err(node)?;
    if balance < wallets::U256::from(t.value.base_units()) {
        return Err(Invalid::new(
            R::InsufficientBalance,
            format!(
                "{} holds {balance} base units, less than {}",
                t.from,
                t.value.base_units()
            ),
        ));
    }
    token
        .simulate_transfer_with_authorization(t, &payment.signature)
        .await
        .map_err(|e| revert_reason(&e, R::SimulationFailed))
}

/// Why the token's domain separator is not the one signed in: its name, else its
/// version, else something else about it.
async fn domain_mismatch(token: &Eip3009Token, signed: &Eip712Domain) -> Invalid {
    use InvalidReason as R;
    let name = signed.name.as_deref().unwrap_or_default();
    let version = signed.version.as_deref().unwrap_or_default();
    match token.name().await {
        Ok(actual) if actual != name => {
            return Invalid::new(
                R::TokenNameMismatch,
                format!(
                    "the token's EIP-712 name is {actual:?}, the payment was signed for {name:?}"
                ),
            )
        }
        _ => {}
    }
    match token.version().await {
        Ok(actual) if actual != version => Invalid::new(
            R::TokenVersionMismatch,
            format!(
                "the token's EIP-712 version is {actual:?}, the payment was signed for {version:?}"
            ),
        ),
        _ => Invalid::new(
            R::SimulationFailed,
            "the token's EIP-712 domain separator is not that of {name, version, chainId, \
             verifyingContract}",
        ),
    }
}

/// Maps a `transferWithAuthorization` revert of our `Stablecoin` (or a USDC-like
/// token's revert string) to its reason; anything else is `otherwise`.
pub(crate) fn revert_reason(e: &ChainError, otherwise: InvalidReason) -> Invalid {
    use InvalidReason as R;
    let message = e.to_string();
    let lower = message.to_ascii_lowercase();
    let reason = if lower.contains("authorizationexpired")
        || lower.contains("authorization is expired")
    {
        R::ValidBeforeExpired
    } else if lower.contains("authorizationnotyetvalid")
        || lower.contains("authorization is not yet valid")
    {
        R::ValidAfterFuture
    } else if lower.contains("authorizationalreadyused") || lower.contains("authorization is used")
    {
        R::NonceAlreadyUsed
    } else if lower.contains("insufficientbalance") || lower.contains("exceeds balance") {
        R::InsufficientBalance
    } else if lower.contains("invalidsignature")
        || lower.contains("invalid signature")
        || lower.contains("invalidsigner")
    {
        R::InvalidSignature
    } else {
        otherwise
    };
    Invalid::new(reason, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ExactEvmAuthorization, ExactEvmPayload};
    use serde_json::json;
    use wallets::{Amount, Wallet, B256};

    const CHAIN: u64 = 1337;
    const NOW: u64 = 1_800_000_000;

    fn requirements(pay_to: Address, asset: Address) -> PaymentRequirements {
        serde_json::from_value(json!({
            "scheme": "exact",
            "network": "eip155:1337",
            "amount": "950000",
            "asset": asset.to_string(),
            "payTo": pay_to.to_string().to_ascii_lowercase(),
            "maxTimeoutSeconds": 60,
            "extra": {"name": "USD Coin", "version": "2"}
        }))
        .unwrap()
    }

    /// A payer: a wallet behind a spending policy without limits, which pins each
    /// domain it is asked to sign in (tests sign in wrong domains on purpose).
    struct Payer {
        policy: std::sync::Mutex<Option<wallets::SpendingPolicy>>,
        address: Address,
        _dir: tempfile::TempDir,
    }

    impl Payer {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let policy = wallets::SpendingPolicy::open(
                dir.path().join("policy"),
                std::sync::Arc::new(Wallet::random()),
                wallets::Limits::default(),
            )
            .unwrap();
            Self {
                address: policy.address(),
                policy: std::sync::Mutex::new(Some(policy)),
                _dir: dir,
            }
        }

        fn address(&self) -> Address {
            self.address
        }

        fn sign(&self, domain: Eip712Domain, transfer: TransferWithAuthorization) -> Signature {
            let mut slot = self.policy.lock().unwrap();
            let policy = slot.take().unwrap().pin_token(domain.clone());
            let signed = policy
                .authorize(&wallets::Payment::Authorization { domain, transfer })
                .unwrap();
            *slot = Some(policy);
            signed.signature
        }
    }

    /// A payment of `requirements` signed by `payer` in `name`'s domain.
    fn pay(
        payer: &Payer,
        requirements: &PaymentRequirements,
        value: u128,
        valid: (u64, u64),
        name: &str,
    ) -> PaymentPayload {
        let asset = parse_address("asset", &requirements.asset).unwrap();
        let transfer = TransferWithAuthorization {
            from: payer.address(),
            to: parse_address("payTo", &requirements.pay_to).unwrap(),
            value: Amount::from_base_units(value),
            valid_after: valid.0,
            valid_before: valid.1,
            nonce: B256::random(),
        };
        let domain = Eip712Domain::new(name, "2", CHAIN, asset);
        let signature = payer.sign(domain, transfer.clone());
        let exact = ExactEvmPayload {
            authorization: ExactEvmAuthorization {
                from: transfer.from.to_string(),
                to: transfer.to.to_string(),
                value: value.to_string(),
                valid_after: valid.0.to_string(),
                valid_before: valid.1.to_string(),
                nonce: transfer.nonce.to_string(),
            },
            signature: signature.to_string(),
        };
        PaymentPayload {
            x402_version: 2,
            payload: serde_json::to_value(exact).unwrap(),
            accepted: requirements.clone(),
            ..PaymentPayload::default()
        }
    }

    fn reason(r: Result<ExactEvmPayment, Invalid>) -> InvalidReason {
        r.unwrap_err().reason
    }

    #[test]
    fn each_offline_check_gives_the_reference_reason() {
        let payer = Payer::new();
        let seller = Wallet::random().address();
        let asset = Wallet::random().address();
        let req = requirements(seller, asset);
        let window = (0, NOW + 60);
        let good = pay(&payer, &req, 950_000, window, "USD Coin");
        let ok = check(&good, &req, CHAIN, NOW).unwrap();
        assert_eq!(ok.payer(), payer.address());

        let mut other = req.clone();
        other.scheme = "upto".into();
        assert_eq!(
            reason(check(&good, &other, CHAIN, NOW)),
            InvalidReason::UnsupportedScheme
        );
        let mut other = req.clone();
        other.network = Network::eip155(1);
        assert_eq!(
            reason(check(&good, &other, CHAIN, NOW)),
            InvalidReason::NetworkMismatch
        );
        assert_eq!(
            reason(check(&good, &req, 1, NOW)),
            InvalidReason::UnsupportedNetwork
        );
        let mut other = req.clone();
        other.extra = None;
        let p = pay(&payer, &other, 950_000, window, "USD Coin");
        assert_eq!(
            reason(check(&p, &other, CHAIN, NOW)),
            InvalidReason::MissingEip712Domain
        );

        let mut elsewhere = req.clone();
        elsewhere.pay_to = Wallet::random().address().to_string();
        let p = pay(&payer, &elsewhere, 950_000, window, "USD Coin");
        let p = PaymentPayload {
            accepted: req.clone(),
            ..p
        };
        assert_eq!(
            reason(check(&p, &req, CHAIN, NOW)),
            InvalidReason::RecipientMismatch
        );

        let p = pay(&payer, &req, 949_999, window, "USD Coin");
        assert_eq!(
            reason(check(&p, &req, CHAIN, NOW)),
            InvalidReason::ValueMismatch
        );
        let p = pay(&payer, &req, 950_001, window, "USD Coin");
        assert_eq!(
            reason(check(&p, &req, CHAIN, NOW)),
            InvalidReason::ValueMismatch
        );

        let p = pay(&payer, &req, 950_000, (0, NOW + 5), "USD Coin");
        assert_eq!(
            reason(check(&p, &req, CHAIN, NOW)),
            InvalidReason::ValidBeforeExpired
        );
        let p = pay(&payer, &req, 950_000, (0, NOW + 6), "USD Coin");
        assert!(check(&p, &req, CHAIN, NOW).is_ok());
        let p = pay(&payer, &req, 950_000, (NOW + 1, NOW + 60), "USD Coin");
        assert_eq!(
            reason(check(&p, &req, CHAIN, NOW)),
            InvalidReason::ValidAfterFuture
        );

        // Signed in another domain: the signature recovers someone else.
        let p = pay(&payer, &req, 950_000, window, "USDC");
        let err = check(&p, &req, CHAIN, NOW).unwrap_err();
        assert_eq!(err.reason, InvalidReason::InvalidSignature);
        assert!(err.message.contains("not the payer"), "{err}");

        // A smart-wallet-sized signature.
        let mut p = good.clone();
        p.payload["signature"] = json!(format!("0x{}", "11".repeat(96)));
        assert_eq!(
            reason(check(&p, &req, CHAIN, NOW)),
            InvalidReason::InvalidSignature
        );

        let mut p = good.clone();
        p.payload["authorization"]["value"] = json!(950_000);
        assert_eq!(
            reason(check(&p, &req, CHAIN, NOW)),
            InvalidReason::InvalidPayload
        );
        let mut p = good;
        p.x402_version = 1;
        assert_eq!(
            reason(check(&p, &req, CHAIN, NOW)),
            InvalidReason::InvalidX402Version
        );
    }

    #[test]
    fn reverts_map_to_reasons() {
        let revert = |m: &str| ChainError::Contract {
            call: "EIP3009.transferWithAuthorization".into(),
            message: m.into(),
        };
        for (message, want) in [
            (
                "reverted: AuthorizationAlreadyUsed(..)",
                InvalidReason::NonceAlreadyUsed,
            ),
            (
                "reverted: AuthorizationExpired(..)",
                InvalidReason::ValidBeforeExpired,
            ),
            (
                "reverted: InsufficientBalance(..)",
                InvalidReason::InsufficientBalance,
            ),
            (
                "FiatToken: invalid signature",
                InvalidReason::InvalidSignature,
            ),
            (
                "reverted: InvalidSignature(..)",
                InvalidReason::InvalidSignature,
            ),
            ("something else", InvalidReason::SimulationFailed),
        ] {
            assert_eq!(
                revert_reason(&revert(message), InvalidReason::SimulationFailed).reason,
                want,
                "{message}"
            );
        }
    }
}
