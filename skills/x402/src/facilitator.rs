//! An x402 facilitator for one chain: verifies exact-EVM payments and settles them
//! with a relayer wallet, which pays the gas.
//!
//! - [`Facilitator::verify`] runs [`crate::verify::check`] and
//!   [`crate::verify::check_on_chain`].
//! - [`Facilitator::settle`] verifies again, then, under a lock that serializes every
//!   settlement of this relayer (so two never race for one transaction nonce), reads
//!   `authorizationState` once more right before it broadcasts: a payment whose
//!   authorization was used is never sent, so no reverting transaction burns gas.
//!   Each settled payment is recorded in a small sled store, keyed by (token, payer,
//!   nonce), with the answer given; a re-settle of it (a resource server retrying after
//!   a lost answer, or after a facilitator restart) gets that same answer and nothing
//!   is sent. A payment settled by someone else answers with the transaction that
//!   used it, if that transaction moved exactly the authorized transfer.
//! - [`router`] serves `POST /verify`, `POST /settle` and `GET /supported`, always with
//!   HTTP 200 and the reason in the body (both real clients raise on any other status),
//!   with a cap on request bodies; [`serve`] binds it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use registry::chain::{self, AuthorizationReceipt, Client, Eip3009Token};
use serde::{Deserialize, Serialize};
use wallets::{Address, Wallet};

use crate::verify::{self, ExactEvmPayment, Invalid, InvalidReason};
use crate::wire::{
    Network, SettleRequest, SettleResponse, SupportedKind, SupportedResponse, VerifyRequest,
    VerifyResponse, SCHEME_EXACT, X402_VERSION,
};
use crate::{Error, Result};

/// The largest request body the router reads: an exact-EVM request is about 2 KB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How a [`Facilitator`] is set up.
#[derive(Clone, Debug)]
pub struct FacilitatorConfig {
    /// The EIP-3009 tokens it settles (e.g. the deployment's stablecoin). Payments in
    /// other assets are refused ([`InvalidReason::UnsupportedAsset`]): the relayer
    /// sends transactions only to these contracts.
    pub assets: Vec<Address>,
    /// The directory of its record of settled payments (a sled database).
    pub store: PathBuf,
    /// The block from which to look for the transaction that used an authorization
    /// (the deployment's first block).
    pub from_block: u64,
}

/// The facilitator of one chain. See the module docs.
#[derive(Debug)]
pub struct Facilitator {
    chain_id: u64,
    network: Network,
    relayer: Address,
    tokens: BTreeMap<Address, Eip3009Token>,
    settling: tokio::sync::Mutex<()>,
    store: SettledStore,
    from_block: u64,
}

impl Facilitator {
    /// Connects the relayer `wallet` to the node at `rpc_url` and opens the store.
    ///
    /// # Errors
    /// [`Error::Chain`] when the node cannot be reached; as [`Facilitator::new`].
    pub async fn connect(
        rpc_url: &str,
        relayer: Arc<Wallet>,
        config: FacilitatorConfig,
    ) -> Result<Self> {
        let client = chain::connect(rpc_url, relayer).await?;
        Self::new(client, config)
    }

    /// A facilitator that settles through `client` (whose account is the relayer).
    ///
    /// # Errors
    /// [`Error::Config`] without assets, [`Error::Store`] when the store cannot be opened
    /// (another process holds it).
    pub fn new(client: Arc<Client>, config: FacilitatorConfig) -> Result<Self> {
        if config.assets.is_empty() {
            return Err(Error::Config("no asset to settle".into()));
        }
        let chain_id = chain::chain_id_of(&client);
        let tokens = config
            .assets
            .iter()
            .map(|a| (*a, Eip3009Token::at(client.clone(), *a)))
            .collect();
        let store = SettledStore::open(config.store)?;
        Ok(Self {
            chain_id,
            network: Network::eip155(chain_id),
            relayer: chain::address_of(&client),
            tokens,
            settling: tokio::sync::Mutex::new(()),
            store,
            from_block: config.from_block,
        })
    }

    /// The network it settles on (`eip155:<chain id>`).
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The relayer's address, which sends the settling transactions.
    pub fn relayer(&self) -> Address {
        self.relayer
    }

    /// What it settles: `exact` on its network, signed for by its relayer.
    pub fn supported(&self) -> SupportedResponse {
        SupportedResponse {
            kinds: vec![SupportedKind {
                x402_version: X402_VERSION,
                scheme: SCHEME_EXACT.into(),
                network: self.network.clone(),
                extra: None,
            }],
            extensions: Vec::new(),
            signers: BTreeMap::from([("eip155:*".to_owned(), vec![self.relayer.to_string()])]),
        }
    }

    /// Whether `request`'s payment would settle now.
    pub async fn verify(&self, request: &VerifyRequest) -> VerifyResponse {
        let payer = request.payment_payload.payer();
        match self.verified(request).await {
            Ok(_) => VerifyResponse {
                is_valid: true,
                payer,
                ..VerifyResponse::default()
            },
            Err(invalid) => {
                tracing::info!(target: "x402::facilitator", payer = payer.as_deref().unwrap_or(""),
                    reason = invalid.reason.as_str(), message = %invalid.message, "payment does not verify");
                VerifyResponse {
                    is_valid: false,
                    invalid_reason: Some(invalid.reason.as_str().into()),
                    invalid_message: Some(invalid.message),
                    payer,
                    ..VerifyResponse::default()
                }
            }
        }
    }

    /// Settles `request`'s payment, or answers how it was settled before.
    pub async fn settle(&self, request: &SettleRequest) -> SettleResponse {
        match self.settled(request).await {
            Ok(answer) => answer,
            Err((invalid, transaction)) => {
                let payer = request.payment_payload.payer();
                tracing::info!(target: "x402::facilitator", payer = payer.as_deref().unwrap_or(""),
                    reason = invalid.reason.as_str(), message = %invalid.message, %transaction,
                    "payment not settled");
                SettleResponse {
                    success: false,
                    error_reason: Some(invalid.reason.as_str().into()),
                    error_message: Some(invalid.message),
                    payer,
                    transaction,
                    network: request.payment_requirements.network.clone(),
                    ..SettleResponse::default()
                }
            }
        }
    }

    async fn verified(
        &self,
        request: &VerifyRequest,
    ) -> Result<(ExactEvmPayment, &Eip3009Token), Invalid> {
        let (payment, token) = self.checked(request)?;
        verify::check_on_chain(token, &payment).await?;
        Ok((payment, token))
    }

    /// The checks without the chain, and the payment's token.
    fn checked(
        &self,
        request: &VerifyRequest,
    ) -> Result<(ExactEvmPayment, &Eip3009Token), Invalid> {
        if request.x402_version != X402_VERSION {
            return Err(Invalid::new(
                InvalidReason::InvalidX402Version,
                format!(
                    "the request is of x402 version {}, not {X402_VERSION}",
                    request.x402_version
                ),
            ));
        }
        let payment = verify::check(
            &request.payment_payload,
            &request.payment_requirements,
            self.chain_id,
            unix_now(),
        )?;
        let token = self.token(payment.asset)?;
        Ok((payment, token))
    }

    fn token(&self, asset: Address) -> Result<&Eip3009Token, Invalid> {
        self.tokens.get(&asset).ok_or_else(|| {
            let ours: Vec<String> = self.tokens.keys().map(Address::to_string).collect();
            Invalid::new(
                InvalidReason::UnsupportedAsset,
                format!(
                    "this facilitator settles {} only, not {asset}",
                    ours.join(", ")
                ),
            )
        })
    }

    /// The settlement, or the refusal with the transaction sent (`""` for none).
    async fn settled(&self, request: &SettleRequest) -> Result<SettleResponse, (Invalid, String)> {
        let none = |invalid: Invalid| (invalid, String::new());
        if let Some(answer) = self.recorded(request).map_err(none)? {
            tracing::info!(target: "x402::facilitator", tx = %answer.transaction, "payment settled before; same answer");
            return Ok(answer);
        }
        let (payment, token) = self.checked(request).map_err(none)?;
        match verify::check_on_chain(token, &payment).await {
            Ok(()) => {}
            // Settled by someone else, or by this facilitator before it could record it.
            Err(invalid) if invalid.reason == InvalidReason::NonceAlreadyUsed => {
                return self.settled_elsewhere(token, &payment).await
            }
            Err(invalid) => return Err(none(invalid)),
        }
        let _one_at_a_time = self.settling.lock().await;
        // A settle of the same payment may have finished while this one waited.
        if let Some(answer) = self.recorded(request).map_err(none)? {
            return Ok(answer);
        }
        let t = &payment.transfer;
        let node = |e: chain::ChainError| {
            none(Invalid::new(
                InvalidReason::UnexpectedSettleError,
                e.to_string(),
            ))
        };
        if token
            .authorization_state(t.from, t.nonce)
            .await
            .map_err(node)?
        {
            return self.settled_elsewhere(token, &payment).await;
        }
        match token
            .transfer_with_authorization(t, &payment.signature)
            .await
        {
            Ok(receipt) => self.check_receipt(&payment, &receipt),
            Err(e) => {
                // Used meanwhile (another facilitator, or a send that did get through)?
                if token
                    .authorization_state(t.from, t.nonce)
                    .await
                    .unwrap_or(false)
                {
                    return self.settled_elsewhere(token, &payment).await;
                }
                Err(none(verify::revert_reason(
                    &e,
                    InvalidReason::TransactionFailed,
                )))
            }
        }
    }

    /// The answer for a payment whose authorization was used by a transaction found
    /// in the token's logs: success when it moved exactly this transfer.
    async fn settled_elsewhere(
        &self,
        token: &Eip3009Token,
        payment: &ExactEvmPayment,
    ) -> Result<SettleResponse, (Invalid, String)> {
        let t = &payment.transfer;
        let used = Invalid::new(
            InvalidReason::NonceAlreadyUsed,
            format!("authorization {} of {} is used", t.nonce, t.from),
        );
        match token
            .authorization_used_tx(t.from, t.nonce, self.from_block)
            .await
        {
            Ok(Some(receipt)) if moved(&payment.transfer, &receipt) => {
                self.check_receipt(payment, &receipt)
            }
            _ => Err((used, String::new())),
        }
    }

    /// Success when `receipt` moved `payment`'s transfer; the answer is recorded.
    fn check_receipt(
        &self,
        payment: &ExactEvmPayment,
        receipt: &AuthorizationReceipt,
    ) -> Result<SettleResponse, (Invalid, String)> {
        let tx = receipt.tx.tx_hash.to_string();
        if !receipt.success {
            return Err((
                Invalid::new(
                    InvalidReason::TransactionFailed,
                    format!("transaction {tx} reverted"),
                ),
                tx,
            ));
        }
        if !moved(&payment.transfer, receipt) {
            return Err((
                Invalid::new(
                    InvalidReason::TransferEventMismatch,
                    format!("transaction {tx} did not transfer the authorized amount"),
                ),
                tx,
            ));
        }
        let answer = SettleResponse {
            success: true,
            payer: Some(payment.payer().to_string()),
            transaction: tx.clone(),
            network: payment.network.clone(),
            amount: Some(payment.transfer.value.base_units().to_string()),
            ..SettleResponse::default()
        };
        let record = SettledRecord {
            settled_at: unix_now(),
            signature: payment.signature.to_string(),
            answer: answer.clone(),
        };
        if let Err(e) = self.store.insert(payment, &record) {
            // Settled all the same; a re-settle finds the transaction in the logs.
            tracing::error!(target: "x402::facilitator", error = %e, %tx, "recording a settlement failed");
        }
        tracing::info!(target: "x402::facilitator", payer = %payment.payer(), to = %payment.transfer.to,
            value = payment.transfer.value.base_units(), %tx, "payment settled");
        Ok(answer)
    }

    /// The recorded answer when this very payment, under these requirements, was
    /// settled here: the same checks pass at the time it was settled, with the same
    /// signature. A different payment with a settled nonce is refused.
    fn recorded(&self, request: &SettleRequest) -> Result<Option<SettleResponse>, Invalid> {
        let payload = &request.payment_payload;
        let Ok(exact) = payload.exact_evm() else {
            return Ok(None);
        };
        let Ok(transfer) = exact.authorization.to_transfer() else {
            return Ok(None);
        };
        let Ok(asset) = crate::wire::parse_address("asset", &request.payment_requirements.asset)
        else {
            return Ok(None);
        };
        let key = verify::payment_key(asset, transfer.from, transfer.nonce);
        let record = match self.store.get(&key) {
            Ok(Some(record)) => record,
            Ok(None) => return Ok(None),
            Err(e) => {
                return Err(Invalid::new(
                    InvalidReason::UnexpectedSettleError,
                    e.to_string(),
                ))
            }
        };
        let same = verify::check(
            payload,
            &request.payment_requirements,
            self.chain_id,
            record.settled_at,
        )
        .is_ok_and(|p| p.signature.to_string() == record.signature);
        if same {
            Ok(Some(record.answer))
        } else {
            Err(Invalid::new(
                InvalidReason::NonceAlreadyUsed,
                format!(
                    "authorization {} of {} settled another payment (transaction {})",
                    transfer.nonce, transfer.from, record.answer.transaction
                ),
            ))
        }
    }
}

/// Whether `receipt` moved `transfer` (a `Transfer` of its value from payer to payee).
fn moved(transfer: &wallets::TransferWithAuthorization, receipt: &AuthorizationReceipt) -> bool {
    let value = wallets::U256::from(transfer.value.base_units());
    receipt
        .transfers
        .iter()
        .any(|(from, to, v)| *from == transfer.from && *to == transfer.to && *v == value)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What is kept of a settled payment.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SettledRecord {
    /// Unix seconds when it was settled.
    settled_at: u64,
    /// The payer's signature, `0x`-hex.
    signature: String,
    /// The answer given.
    answer: SettleResponse,
}

/// Settled payments by (token, payer, nonce), on disk.
#[derive(Debug)]
struct SettledStore {
    db: sled::Db,
    path: PathBuf,
}

impl SettledStore {
    fn open(path: PathBuf) -> Result<Self> {
        let db = wallets::store::open(&path).map_err(|e| Error::Store {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(Self { db, path })
    }

    fn store_error(&self, message: String) -> Error {
        Error::Store {
            path: self.path.clone(),
            message,
        }
    }

    fn get(&self, key: &[u8]) -> Result<Option<SettledRecord>> {
        let Some(bytes) = self
            .db
            .get(key)
            .map_err(|e| self.store_error(e.to_string()))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| self.store_error(format!("a record does not parse: {e}")))
    }

    fn insert(&self, payment: &ExactEvmPayment, record: &SettledRecord) -> Result<()> {
        let bytes = serde_json::to_vec(record).map_err(|e| self.store_error(e.to_string()))?;
        self.db
            .insert(payment.key(), bytes)
            .map_err(|e| self.store_error(e.to_string()))?;
        self.db
            .flush()
            .map(drop)
            .map_err(|e| self.store_error(e.to_string()))
    }
}

/// The facilitator API on `facilitator`: `POST /verify`, `POST /settle`,
/// `GET /supported`. Every answer of the first two is HTTP 200 with the outcome in the
/// body, also for bodies that do not parse or exceed [`MAX_BODY_BYTES`].
pub fn router(facilitator: Arc<Facilitator>) -> Router {
    Router::new()
        .route("/verify", post(verify_handler))
        .route("/settle", post(settle_handler))
        .route("/supported", get(supported_handler))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(facilitator)
}

type Body = std::result::Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>;

/// The request in `body`, or what is wrong with it.
fn parse_request(body: Body) -> Result<VerifyRequest, Invalid> {
    let bytes = body.map_err(|e| {
        Invalid::new(
            InvalidReason::InvalidPayload,
            format!("reading the request body (at most {MAX_BODY_BYTES} bytes): {e}"),
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Invalid::new(
            InvalidReason::InvalidPayload,
            format!("the body is not a JSON facilitator request: {e}"),
        )
    })
}

async fn verify_handler(State(f): State<Arc<Facilitator>>, body: Body) -> Json<VerifyResponse> {
    match parse_request(body) {
        Ok(request) => Json(f.verify(&request).await),
        Err(invalid) => Json(VerifyResponse {
            is_valid: false,
            invalid_reason: Some(invalid.reason.as_str().into()),
            invalid_message: Some(invalid.message),
            ..VerifyResponse::default()
        }),
    }
}

async fn settle_handler(State(f): State<Arc<Facilitator>>, body: Body) -> Json<SettleResponse> {
    match parse_request(body) {
        Ok(request) => Json(f.settle(&request).await),
        Err(invalid) => Json(SettleResponse {
            success: false,
            error_reason: Some(invalid.reason.as_str().into()),
            error_message: Some(invalid.message),
            network: f.network().clone(),
            ..SettleResponse::default()
        }),
    }
}

async fn supported_handler(State(f): State<Arc<Facilitator>>) -> Json<SupportedResponse> {
    Json(f.supported())
}

/// A facilitator serving on a socket; stops when shut down or dropped.
pub type FacilitatorServer = crate::server::HttpServer;

/// Serves [`router`] of `facilitator` on `listen` (port 0 picks a free one).
///
/// # Errors
/// [`Error::Io`] when the address cannot be bound.
pub async fn serve(facilitator: Arc<Facilitator>, listen: SocketAddr) -> Result<FacilitatorServer> {
    let server = crate::server::HttpServer::spawn(router(facilitator.clone()), listen).await?;
    tracing::info!(target: "x402::facilitator", addr = %server.addr(), network = %facilitator.network(),
        relayer = %facilitator.relayer(), "facilitator listening");
    Ok(server)
}
