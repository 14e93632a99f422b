//! Selling an agent's priced services over x402: `POST /x402/<skill>`.
//!
//! An [`X402Seller`] answers a request without payment with `402` and the
//! `PAYMENT-REQUIRED` header (x402 version 2, scheme `exact`, the agent's chain, its
//! stablecoin, the skill's price in base units, `payTo` the agent's wallet, the token's
//! EIP-712 `name` and `version` in `extra`, and the skill's request and response JSON
//! Schemas in the [`bazaar`] extension). A request with `PAYMENT-SIGNATURE` is
//! verified ([`crate::verify::check`], then [`crate::verify::check_on_chain`]:
//! recipient, exact amount, validity window, signature, unused authorization, balance
//! by `eth_call`), **settled on chain by the agent's wallet before the skill runs**,
//! and answered with `200`, the skill's result as JSON and `PAYMENT-RESPONSE`.
//!
//! An agent selling forecasts over x402 beside its negotiation seller, sharing its
//! journal and chain client:
//!
//! ```no_run
//! # async fn demo(
//! #     agent: &agent_sdk::AgentHandle,
//! #     client: std::sync::Arc<registry::chain::Client>,
//! #     stablecoin: wallets::Address,
//! #     negotiation_seller: &negotiation::Seller,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//!
//! use weather::{ClimatologyProvider, Forecast, ForecastQuery, WeatherService};
//! use x402::{PricedService, SellerConfig, X402Seller};
//!
//! let forecasts = WeatherService::new(Arc::new(ClimatologyProvider::new()?));
//! let seller = X402Seller::new(
//!     agent.context(),
//!     client,
//!     stablecoin,
//!     negotiation_seller.journal(),
//!     SellerConfig::new("x402-sales", "USD Coin"),
//! )?
//! .sell(PricedService::typed::<ForecastQuery, Forecast>(
//!     "weather.forecast",
//!     "0.95 USDC".parse()?,
//!     forecasts,
//! ))?;
//! let server = x402::seller::serve(Arc::new(seller), "127.0.0.1:0".parse()?).await?;
//! println!("POST {}/x402/weather.forecast", server.url());
//! # Ok(())
//! # }
//! ```
//!
//! # Once and only once
//!
//! Each sale is a [`SaleRecord`] in a sled store, keyed by (token, payer, nonce) like
//! the token's own record of used authorizations, and written before each
//! irreversible step (see [`SaleState`]): `Settling` before the broadcast, `Settled`
//! once mined, `Delivered` with the body served. Requests with one payment take turns
//! (a lock per key), and a request whose payment has a record resumes it:
//!
//! - `Delivered`: the same `200`, body and `PAYMENT-RESPONSE` again; nothing is sent.
//! - `Settled` (the skill failed, or the process died while it ran): the skill runs
//!   again; nothing is charged.
//! - `Settling` (the process died around the broadcast): the chain says what
//!   happened. A used authorization is looked up (`AuthorizationUsed`) and the sale
//!   goes on with that transaction; an unused one is verified and broadcast again,
//!   unless it expired, in which case nothing was or can be paid and the payment is
//!   refused like a new one. A node that cannot say answers `503`: never `402` for a
//!   payment whose settlement may have happened.
//!
//! A buyer who never comes back does not leave a `Settling` sale unknown for ever:
//! [`X402Seller::reconcile`], run at start, asks the chain about each one.
//!
//! A *different* payment with a used (token, payer, nonce) is refused with `402`
//! `invalid_exact_evm_nonce_already_used`. The same authorization counts as the same
//! payment whatever the bytes of its signature, as long as it recovers the payer.
//!
//! # The request is part of what is paid for
//!
//! A payment buys one result for one request body. The body's Keccak-256 is bound
//! into the sale when it is first settled. Once a result is delivered, the same
//! payment with another body is refused with `409` (`request_mismatch`): a paid
//! request is never answered twice with different work. Until then (the skill
//! failed) a retry may bring a corrected body, which is re-bound: one payment still
//! gets at most one delivered result. A service made with [`PricedService::typed`]
//! checks the body against its request type before anything is paid, so a malformed
//! request costs nothing (`400`).
//!
//! # Journal and audit
//!
//! Each sale is journaled in the agent's journal (shared with its negotiation seller,
//! [`negotiation::Seller::journal`]): an `x402_payment` entry
//! ([`negotiation::journal::X402PaymentBody`]: the buyer's signed authorization, the
//! request hash, the transaction) once settled, and an `x402_delivery` entry (the
//! result hash) once served. `agora audit --rpc` ([`negotiation::audit`]) checks that
//! the signature recovers the payer in the token's domain and that the transaction
//! moved exactly that amount from the payer to the seller.
//!
//! # Errors on the wire
//!
//! | status | when | body |
//! |---|---|---|
//! | 200 | paid and served | the result |
//! | 400 | a `PAYMENT-SIGNATURE` that is not base64 JSON of a payment or too long; a body that is not the skill's request | `{"error", "message"}` |
//! | 402 | no payment; a payment that does not verify (the reason code also in the header's `error`) | the `PaymentRequired`, with `invalidMessage` |
//! | 404 | no such skill | `{"error", "message"}` |
//! | 405 | a method other than `POST` | |
//! | 409 | a settled payment sent for another skill or, once delivered, another body | `{"error", "message"}` and `PAYMENT-RESPONSE` |
//! | 413 | a body above the limit | `{"error", "message"}` |
//! | 422 / 502 | paid, but the skill refused the request / failed: retry with the same payment | `{"error", "message"}` and `PAYMENT-RESPONSE` |
//! | 503 | the node could not be asked or the settlement is not known yet: retry with the same payment | `{"error", "message"}` |
//!
//! None of these stops the seller: every input is answered, none panics.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use agent_sdk::{Context, SkillError};
use negotiation::journal::{x402_sale_id, X402DeliveryBody, X402PaymentBody};
use negotiation::{Service, Settled, SharedJournal};
use registry::chain::{self, Client, Eip3009Token, Mined};
use serde_json::{json, Map, Value};
use wallets::{Address, Amount, Eip712, B256};

use crate::locks::KeyLocks;
use crate::verify::{self, Invalid, InvalidReason};
use crate::wire::{
    self, Network, PaymentPayload, PaymentRequired, PaymentRequirements, ResourceInfo,
    SettleResponse, SCHEME_EXACT, X402_VERSION,
};
use crate::{Error, Result};

pub mod bazaar;
mod http;
pub mod store;

pub use http::{router, serve, SellerServer};
pub use store::{SaleRecord, SaleState, SaleStore};

/// The largest request body a seller reads by default.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// A check of a request body before payment: `Err` says what is wrong with it.
type Validate = dyn Fn(&str) -> std::result::Result<(), String> + Send + Sync;

/// The form of a delivery's attestation that travels in the `AGORA-ATTESTATION`
/// header (`None`: no header).
type AttestationHeader = dyn Fn(&Value) -> Option<Value> + Send + Sync;

/// One skill for sale: its name (the URL's last segment), its price, the
/// [`Service`] that does the work, and its request and response JSON Schemas.
#[derive(Clone)]
pub struct PricedService {
    skill: String,
    price: Amount,
    description: String,
    service: Arc<dyn Service>,
    input_schema: Value,
    output_schema: Value,
    input_example: Option<Value>,
    output_example: Option<Value>,
    validate: Option<Arc<Validate>>,
    attestation_header: Option<Arc<AttestationHeader>>,
}

impl std::fmt::Debug for PricedService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PricedService")
            .field("skill", &self.skill)
            .field("price", &self.price)
            .finish_non_exhaustive()
    }
}

impl PricedService {
    /// `skill` at `price`, done by `service`, whose request body and result are
    /// described by the JSON Schemas `input_schema` and `output_schema`. The body is
    /// only checked to be UTF-8 before payment; see [`PricedService::typed`].
    pub fn new(
        skill: impl Into<String>,
        price: Amount,
        service: impl Service,
        input_schema: Value,
        output_schema: Value,
    ) -> Self {
        let skill = skill.into();
        Self {
            description: format!("the {skill} skill"),
            skill,
            price,
            service: Arc::new(service),
            input_schema,
            output_schema,
            input_example: None,
            output_example: None,
            validate: None,
            attestation_header: None,
        }
    }

    /// `skill` at `price`, done by `service`, whose request body is JSON of `I` and
    /// result JSON of `O`: the schemas come from schemars, and a body that is not an
    /// `I` is refused with `400` before anything is paid.
    pub fn typed<I, O>(skill: impl Into<String>, price: Amount, service: impl Service) -> Self
    where
        I: schemars::JsonSchema + serde::de::DeserializeOwned,
        O: schemars::JsonSchema,
    {
        let input = schemars::schema_for!(I);
        let output = schemars::schema_for!(O);
        let mut priced = Self::new(skill, price, service, input.to_value(), output.to_value());
        priced.validate = Some(Arc::new(|body: &str| {
            serde_json::from_str::<I>(body)
                .map(drop)
                .map_err(|e| e.to_string())
        }));
        priced
    }

    /// Describes the resource (the 402's `resource.description`).
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// An example request body and result, for the bazaar extension.
    pub fn example(mut self, request: Value, result: Option<Value>) -> Self {
        self.input_example = Some(request);
        self.output_example = result;
        self
    }

    /// Sends what the service attests about each result to the client too, in the
    /// `AGORA-ATTESTATION` response header (base64 of JSON, like x402's own headers),
    /// in the form `header` gives of the attestation; `header` returns `None` to send
    /// nothing. Keep the form small: clients limit response headers (Node and httpx
    /// to 16 KiB in all). The whole attestation is journaled either way.
    #[must_use]
    pub fn attestation_header(
        mut self,
        header: impl Fn(&Value) -> Option<Value> + Send + Sync + 'static,
    ) -> Self {
        self.attestation_header = Some(Arc::new(header));
        self
    }

    /// The header form of `attestation` (see [`PricedService::attestation_header`]).
    fn header_of(&self, attestation: Option<&Value>) -> Option<Value> {
        let header = self.attestation_header.as_ref()?;
        header(attestation?)
    }

    /// The skill's name.
    pub fn skill(&self) -> &str {
        &self.skill
    }

    /// Its price.
    pub fn price(&self) -> Amount {
        self.price
    }

    fn check_body(&self, body: &[u8]) -> std::result::Result<(), String> {
        let text =
            std::str::from_utf8(body).map_err(|e| format!("the request body is not UTF-8: {e}"))?;
        match &self.validate {
            Some(validate) => validate(text).map_err(|e| {
                format!(
                    "the request body is not a request of the {} skill: {e}",
                    self.skill
                )
            }),
            None => Ok(()),
        }
    }
}

/// How an [`X402Seller`] is set up.
#[derive(Clone, Debug)]
pub struct SellerConfig {
    /// The directory of the sale store (a sled database).
    pub store: PathBuf,
    /// The token's EIP-712 domain name (the stablecoin's, "USD Coin" as USDC's).
    pub token_name: String,
    /// The token's EIP-712 domain version ("2" as USDC's).
    pub token_version: String,
    /// How long a payment authorization may stay valid (`maxTimeoutSeconds`).
    pub max_timeout_seconds: u64,
    /// The base URL buyers reach the seller at (`http://host:port`), for the
    /// resources it names; by default the request's `Host`.
    pub public_url: Option<String>,
    /// The largest request body read.
    pub max_body_bytes: usize,
}

impl SellerConfig {
    /// A store in `store`, the token named `token_name` version "2", 60 s
    /// authorizations, [`DEFAULT_MAX_BODY_BYTES`].
    pub fn new(store: impl Into<PathBuf>, token_name: impl Into<String>) -> Self {
        Self {
            store: store.into(),
            token_name: token_name.into(),
            token_version: "2".into(),
            max_timeout_seconds: 60,
            public_url: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// An agent's x402 seller. See the module docs.
pub struct X402Seller {
    ctx: Context,
    token: Eip3009Token,
    chain_id: u64,
    network: Network,
    pay_to: Address,
    journal: SharedJournal,
    store: SaleStore,
    services: BTreeMap<String, Offer>,
    locks: KeyLocks<[u8; 72]>,
    config: SellerConfig,
}

impl std::fmt::Debug for X402Seller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X402Seller")
            .field("pay_to", &self.pay_to)
            .field("network", &self.network)
            .field("asset", &self.token.address())
            .field("skills", &self.services.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A priced service and what its 402 offers.
#[derive(Debug)]
struct Offer {
    priced: PricedService,
    requirements: PaymentRequirements,
    bazaar: Value,
}

/// What a request comes to: [`router`] writes it as an HTTP response, a gateway of
/// another protocol (A2A's x402 extension) as its own messages
/// ([`X402Seller::answer`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// Paid and served.
    Served {
        /// The skill's result, JSON.
        body: String,
        /// The settlement.
        settled: SettleResponse,
        /// What the skill attested about the result, in the form its
        /// [`PricedService::attestation_header`] gives (the `AGORA-ATTESTATION`
        /// header, base64 of this JSON); `None` when it attests nothing.
        attestation: Option<Value>,
    },
    /// Payment required: none was sent (`invalid` is `None`), or it does not verify.
    PaymentRequired {
        /// What to pay.
        required: PaymentRequired,
        /// Why the payment sent was refused.
        invalid: Option<Invalid>,
    },
    /// A refusal that is not about payment, with its HTTP status: `503` and `502`
    /// (paid, the skill failed) ask for a retry with the same payment.
    Refused {
        /// The HTTP status.
        status: u16,
        /// A short code.
        error: &'static str,
        /// What was wrong.
        message: String,
        /// The settlement, when the payment was settled.
        settled: Option<SettleResponse>,
    },
}

impl Outcome {
    fn refused(status: u16, error: &'static str, message: impl Into<String>) -> Self {
        Self::Refused {
            status,
            error,
            message: message.into(),
            settled: None,
        }
    }

    fn pending(message: impl Into<String>) -> Self {
        Self::refused(503, "settlement_pending", message)
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        Self::refused(500, "internal_error", e.to_string())
    }
}

/// What [`X402Seller::reconcile`] did with the sales left `Settling`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Paid on chain: found, journaled and recorded `Settled`.
    pub settled: usize,
    /// Never paid and expired: forgotten.
    pub forgotten: usize,
    /// Not known yet (unused but still valid, or the node could not say): left for
    /// the buyer's retry or the next pass.
    pub pending: usize,
}

impl X402Seller {
    /// The x402 seller of the agent whose context is `ctx`, settling through `client`
    /// (whose account must be the agent's wallet: it is `payTo`, and pays the gas),
    /// in the EIP-3009 token at `asset`, journaling to `journal`.
    ///
    /// # Errors
    /// [`Error::SellerConfig`] when the client's account is not the agent;
    /// [`Error::Store`] when the store cannot be opened.
    pub fn new(
        ctx: Context,
        client: Arc<Client>,
        asset: Address,
        journal: SharedJournal,
        config: SellerConfig,
    ) -> Result<Self> {
        let pay_to = chain::address_of(&client);
        if pay_to != ctx.me() {
            return Err(Error::SellerConfig(format!(
                "the chain client sends from {pay_to}, not from the agent {}",
                ctx.me()
            )));
        }
        let chain_id = chain::chain_id_of(&client);
        let store = SaleStore::open(&config.store)?;
        Ok(Self {
            ctx,
            token: Eip3009Token::at(client, asset),
            chain_id,
            network: Network::eip155(chain_id),
            pay_to,
            journal,
            store,
            services: BTreeMap::new(),
            locks: KeyLocks::default(),
            config,
        })
    }

    /// Sells `priced` at `/x402/<skill>` (replacing a service of the same skill).
    ///
    /// # Errors
    /// [`Error::SellerConfig`] when the skill's name cannot be a URL segment, or its
    /// request and response schemas define one name differently.
    pub fn sell(mut self, priced: PricedService) -> Result<Self> {
        let skill = priced.skill.clone();
        let plain = !skill.is_empty()
            && skill
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-~".contains(&b));
        if !plain {
            return Err(Error::SellerConfig(format!(
                "skill {skill:?}: a URL segment of letters, digits and . _ - ~"
            )));
        }
        let bazaar = bazaar::extension(
            &priced.input_schema,
            &priced.output_schema,
            priced.input_example.as_ref(),
            priced.output_example.as_ref(),
        )
        .map_err(|e| Error::SellerConfig(format!("skill {skill}: {e}")))?;
        let mut extra = Map::new();
        extra.insert("name".into(), json!(self.config.token_name));
        extra.insert("version".into(), json!(self.config.token_version));
        let requirements = PaymentRequirements {
            scheme: SCHEME_EXACT.into(),
            network: self.network.clone(),
            amount: priced.price.base_units().to_string(),
            asset: self.token.address().to_string(),
            pay_to: self.pay_to.to_string(),
            max_timeout_seconds: self.config.max_timeout_seconds,
            extra: Some(extra),
            other: Map::new(),
        };
        self.services.insert(
            skill,
            Offer {
                priced,
                requirements,
                bazaar,
            },
        );
        Ok(self)
    }

    /// The agent's address: where payments go.
    pub fn pay_to(&self) -> Address {
        self.pay_to
    }

    /// The network it sells on (`eip155:<chain id>`).
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The skills it sells.
    pub fn skills(&self) -> impl Iterator<Item = &str> {
        self.services.keys().map(String::as_str)
    }

    /// The sale of the payment by `payer` with `nonce`, if there is one.
    ///
    /// # Errors
    /// [`Error::Store`] when the store cannot be read.
    pub fn sale(&self, payer: Address, nonce: B256) -> Result<Option<SaleRecord>> {
        self.store
            .get(&verify::payment_key(self.token.address(), payer, nonce))
    }

    /// The limit on request bodies.
    pub fn max_body_bytes(&self) -> usize {
        self.config.max_body_bytes
    }

    /// Answers one request for `skill` with `payment` (none: the requirements), as
    /// `POST /x402/<skill>` does: for gateways that carry x402 payments in another
    /// protocol (A2A's x402 extension). `host` names the host the request came to, for
    /// the resource URL.
    pub async fn answer(
        &self,
        skill: &str,
        host: Option<&str>,
        payment: Option<&PaymentPayload>,
        body: &[u8],
    ) -> Outcome {
        let header = match payment.map(wire::encode_header).transpose() {
            Ok(h) => h,
            Err(e) => return Outcome::refused(400, "invalid_payment", e.to_string()),
        };
        self.handle(skill, host, header.as_deref().map(str::as_bytes), body)
            .await
    }

    /// Whether `body` is a request of `skill` (checked before anything is paid).
    ///
    /// # Errors
    /// What is wrong with it, or that no such skill is sold.
    pub fn check_request(&self, skill: &str, body: &[u8]) -> std::result::Result<(), String> {
        self.services
            .get(skill)
            .ok_or_else(|| format!("no skill {skill:?} is sold here"))?
            .priced
            .check_body(body)
    }

    /// The price, description and request and response schemas of `skill`.
    pub fn describe(&self, skill: &str) -> Option<(Amount, &str, &Value, &Value)> {
        self.services.get(skill).map(|o| {
            let p = &o.priced;
            (
                p.price,
                p.description.as_str(),
                &p.input_schema,
                &p.output_schema,
            )
        })
    }

    /// The resource URL of `skill`, seen from a request to `host`.
    fn resource(&self, skill: &str, host: Option<&str>) -> String {
        let base = match &self.config.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let plain = |h: &&str| {
                    !h.is_empty()
                        && h.len() <= 255
                        && h.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
                };
                format!("http://{}", host.filter(plain).unwrap_or("localhost"))
            }
        };
        format!("{base}/x402/{skill}")
    }

    /// The 402 of `offer`, with `error`.
    fn payment_required(&self, offer: &Offer, resource: &str, error: &str) -> PaymentRequired {
        let mut extensions = Map::new();
        extensions.insert(bazaar::BAZAAR.into(), offer.bazaar.clone());
        PaymentRequired {
            x402_version: X402_VERSION,
            error: Some(error.into()),
            resource: Some(ResourceInfo {
                url: resource.into(),
                description: Some(offer.priced.description.clone()),
                mime_type: Some("application/json".into()),
                other: Map::new(),
            }),
            accepts: vec![offer.requirements.clone()],
            extensions: Some(extensions),
            other: Map::new(),
        }
    }

    fn refuse(&self, offer: &Offer, resource: &str, invalid: Invalid) -> Outcome {
        tracing::info!(target: "x402::seller", skill = %offer.priced.skill,
            reason = invalid.reason.as_str(), message = %invalid.message, "payment refused");
        Outcome::PaymentRequired {
            required: self.payment_required(offer, resource, invalid.reason.as_str()),
            invalid: Some(invalid),
        }
    }

    /// Answers a request for `skill` with the `PAYMENT-SIGNATURE` header `payment`
    /// (if sent) and `body`, from a client that reached the seller as `host`.
    pub(crate) async fn handle(
        &self,
        skill: &str,
        host: Option<&str>,
        payment: Option<&[u8]>,
        body: &[u8],
    ) -> Outcome {
        let Some(offer) = self.services.get(skill) else {
            return Outcome::refused(
                404,
                "unknown_skill",
                format!(
                    "no skill {skill:?} is sold here (sold: {})",
                    self.services
                        .keys()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        };
        let resource = self.resource(skill, host);
        let Some(header) = payment else {
            return Outcome::PaymentRequired {
                required: self.payment_required(
                    offer,
                    &resource,
                    "PAYMENT-SIGNATURE header is required",
                ),
                invalid: None,
            };
        };
        let payload = match wire::decode_payment_signature(header) {
            Ok(p) => p,
            Err(e) => return Outcome::refused(400, "invalid_payment_header", e.to_string()),
        };
        let transfer = match payload
            .exact_evm()
            .and_then(|exact| exact.authorization.to_transfer())
        {
            Ok(t) => t,
            Err(m) => {
                return self.refuse(
                    offer,
                    &resource,
                    Invalid::new(InvalidReason::InvalidPayload, m),
                )
            }
        };
        let key = verify::payment_key(self.token.address(), transfer.from, transfer.nonce);
        let _turn = self.locks.lock(key).await;
        let sale = Sale {
            offer,
            key,
            resource,
            payload: &payload,
            body,
            request_hash: wallets::keccak256(body),
        };
        match self.store.get(&key) {
            Ok(Some(record)) => self.resume(&sale, record).await,
            Ok(None) => self.begin(&sale).await,
            Err(e) => Outcome::internal(e),
        }
    }

    fn now(&self) -> u64 {
        self.ctx.clock().unix_secs()
    }

    /// A payment not seen before: verify, record `Settling`, settle, serve.
    async fn begin(&self, sale: &Sale<'_>) -> Outcome {
        let offer = sale.offer;
        let payment =
            match verify::check(sale.payload, &offer.requirements, self.chain_id, self.now()) {
                Ok(p) => p,
                Err(invalid) => return self.refuse(offer, &sale.resource, invalid),
            };
        if let Err(invalid) = matches_offer(&sale.payload.accepted, &offer.requirements) {
            return self.refuse(offer, &sale.resource, invalid);
        }
        if let Err(message) = offer.priced.check_body(sale.body) {
            return Outcome::refused(400, "invalid_request", message);
        }
        match verify::check_on_chain(&self.token, &payment).await {
            Ok(()) => {}
            Err(invalid) if invalid.reason == InvalidReason::UnexpectedVerifyError => {
                return Outcome::pending(format!(
                    "the node could not verify the payment; nothing was paid: {}",
                    invalid.message
                ))
            }
            Err(invalid) => return self.refuse(offer, &sale.resource, invalid),
        }
        let from_block = match self.token.block_number().await {
            Ok(n) => n,
            Err(e) => return Outcome::pending(format!("nothing was paid: {e}")),
        };
        let mut record = SaleRecord {
            skill: offer.priced.skill.clone(),
            resource: sale.resource.clone(),
            price: offer.priced.price,
            domain: payment.domain,
            transfer: payment.transfer,
            signature: payment.signature,
            request_hash: sale.request_hash,
            from_block,
            state: SaleState::Settling,
        };
        if let Err(e) = self.store.put(&sale.key, &record) {
            return Outcome::internal(e);
        }
        match self.broadcast(sale, &record).await {
            Ok(mined) => self.settled(sale, &mut record, mined).await,
            Err(outcome) => outcome,
        }
    }

    /// A payment with a record: the same payment resumes where its sale stands; a
    /// different one with the same nonce is refused.
    async fn resume(&self, sale: &Sale<'_>, mut record: SaleRecord) -> Outcome {
        let offer = sale.offer;
        if !same_payment(sale.payload, &record) {
            let tx = record.state.settlement().map_or_else(
                || "being settled".to_owned(),
                |m| format!("settled in {}", m.tx_hash),
            );
            return self.refuse(
                offer,
                &sale.resource,
                Invalid::new(
                    InvalidReason::NonceAlreadyUsed,
                    format!(
                        "authorization {} of {} paid for another request ({tx})",
                        record.transfer.nonce, record.transfer.from
                    ),
                ),
            );
        }
        if record.skill != offer.priced.skill {
            return Outcome::Refused {
                status: 409,
                error: "skill_mismatch",
                message: format!(
                    "this payment paid for /x402/{}, not /x402/{}",
                    record.skill, offer.priced.skill
                ),
                settled: record
                    .state
                    .settlement()
                    .map(|m| self.settle_response(&record, m)),
            };
        }
        match record.state.clone() {
            SaleState::Delivered {
                settlement,
                body,
                result_hash,
                attestation,
            } => {
                if record.request_hash != sale.request_hash {
                    return Outcome::Refused {
                        status: 409,
                        error: "request_mismatch",
                        message: format!(
                            "this payment paid for another request (Keccak-256 {}), already served",
                            record.request_hash
                        ),
                        settled: Some(self.settle_response(&record, &settlement)),
                    };
                }
                // A crash may have come between the record and the journal.
                if let Err(e) = self
                    .journal_delivery(&record, &settlement, result_hash, attestation.clone())
                    .await
                {
                    tracing::error!(target: "x402::seller", error = %e, "journaling a delivery failed");
                }
                tracing::info!(target: "x402::seller", skill = %record.skill, tx = %settlement.tx_hash,
                    "a delivered sale asked again; same answer");
                Outcome::Served {
                    settled: self.settle_response(&record, &settlement),
                    body,
                    attestation: offer.priced.header_of(attestation.as_ref()),
                }
            }
            SaleState::Settled { settlement } => self.run(sale, &mut record, settlement).await,
            SaleState::Settling => match self.recover(sale, &record).await {
                Ok(mined) => self.settled(sale, &mut record, mined).await,
                Err(outcome) => outcome,
            },
        }
    }

    /// A `Settling` sale found again: what the chain says happened, or the
    /// settlement done now.
    async fn recover(&self, sale: &Sale<'_>, record: &SaleRecord) -> Result<Mined, Outcome> {
        let t = &record.transfer;
        let used = self
            .token
            .authorization_state(t.from, t.nonce)
            .await
            .map_err(|e| Outcome::pending(format!("the settlement may have happened: {e}")))?;
        if used {
            return self.find_settlement(record).await;
        }
        // Not used: nothing moved. Expired, it never can.
        let payment = verify::ExactEvmPayment {
            network: self.network.clone(),
            asset: self.token.address(),
            domain: record.domain.clone(),
            transfer: t.clone(),
            signature: record.signature,
        };
        let expired = t.valid_before < self.now().saturating_add(verify::VALID_BEFORE_MARGIN_SECS);
        let verified = if expired {
            Err(Invalid::new(
                InvalidReason::ValidBeforeExpired,
                format!(
                    "the authorization expired at {} before it could be settled; nothing was paid",
                    t.valid_before
                ),
            ))
        } else {
            verify::check_on_chain(&self.token, &payment).await
        };
        match verified {
            Ok(()) => self.broadcast(sale, record).await,
            Err(invalid) if invalid.reason == InvalidReason::UnexpectedVerifyError => {
                Err(Outcome::pending(invalid.message))
            }
            Err(invalid) if invalid.reason == InvalidReason::NonceAlreadyUsed => {
                self.find_settlement(record).await
            }
            Err(invalid) => Err(self.forget(sale, invalid)),
        }
    }

    /// A settlement that provably did not happen: the record goes, the payment is
    /// refused.
    fn forget(&self, sale: &Sale<'_>, invalid: Invalid) -> Outcome {
        if let Err(e) = self.store.remove(&sale.key) {
            return Outcome::internal(e);
        }
        self.refuse(sale.offer, &sale.resource, invalid)
    }

    /// Sends `transferWithAuthorization` and waits for it to be mined.
    async fn broadcast(&self, sale: &Sale<'_>, record: &SaleRecord) -> Result<Mined, Outcome> {
        let t = &record.transfer;
        match self
            .token
            .transfer_with_authorization(t, &record.signature)
            .await
        {
            Ok(receipt) if receipt.success && moved(t, &receipt.transfers) => Ok(receipt.tx),
            Ok(receipt) if receipt.success => Err(Outcome::refused(
                502,
                "transfer_event_mismatch",
                format!(
                    "transaction {} did not move the authorized transfer",
                    receipt.tx.tx_hash
                ),
            )),
            // Mined and reverted: nothing moved, unless someone used it first.
            Ok(receipt) => {
                let failed = Invalid::new(
                    InvalidReason::TransactionFailed,
                    format!(
                        "transaction {} reverted; nothing was paid",
                        receipt.tx.tx_hash
                    ),
                );
                self.after_failure(sale, record, failed, true).await
            }
            Err(e) => {
                let invalid = verify::revert_reason(&e, InvalidReason::TransactionFailed);
                // A decoded revert of the estimate: the transaction was never sent.
                let definite = invalid.reason != InvalidReason::TransactionFailed;
                self.after_failure(sale, record, invalid, definite).await
            }
        }
    }

    async fn after_failure(
        &self,
        sale: &Sale<'_>,
        record: &SaleRecord,
        invalid: Invalid,
        definite: bool,
    ) -> Result<Mined, Outcome> {
        let t = &record.transfer;
        match self.token.authorization_state(t.from, t.nonce).await {
            Ok(true) => self.find_settlement(record).await,
            Ok(false) if definite => Err(self.forget(sale, invalid)),
            _ => Err(Outcome::pending(format!(
                "the settlement may still be mined; retry with the same payment: {}",
                invalid.message
            ))),
        }
    }

    /// The transaction that used the record's authorization.
    async fn find_settlement(&self, record: &SaleRecord) -> Result<Mined, Outcome> {
        let t = &record.transfer;
        match self
            .token
            .authorization_used_tx(t.from, t.nonce, record.from_block)
            .await
        {
            Ok(Some(receipt)) if receipt.success && moved(t, &receipt.transfers) => Ok(receipt.tx),
            Ok(_) => Err(Outcome::pending(format!(
                "authorization {} of {} is used, but its transaction is not found yet",
                t.nonce, t.from
            ))),
            Err(e) => Err(Outcome::pending(format!(
                "the settlement happened; looking it up failed: {e}"
            ))),
        }
    }

    /// Mined: journal the payment, record `Settled`, run the skill.
    async fn settled(&self, sale: &Sale<'_>, record: &mut SaleRecord, mined: Mined) -> Outcome {
        tracing::info!(target: "x402::seller", skill = %record.skill, payer = %record.transfer.from,
            value = record.transfer.value.base_units(), tx = %mined.tx_hash, "x402 payment settled");
        if let Err(e) = self.journal_payment(record, mined).await {
            // Still `Settling`: a retry finds the transaction and journals it.
            return Outcome::Refused {
                status: 500,
                error: "internal_error",
                message: format!("paid, but journaling the payment failed; retry: {e}"),
                settled: Some(self.settle_response(record, &mined)),
            };
        }
        record.state = SaleState::Settled { settlement: mined };
        if let Err(e) = self.store.put(&sale.key, record) {
            return Outcome::internal(e);
        }
        self.run(sale, record, mined).await
    }

    /// Journals a sale's payment, mined in `mined`.
    async fn journal_payment(&self, record: &SaleRecord, mined: Mined) -> negotiation::Result<()> {
        self.journal
            .append(X402PaymentBody {
                sale_id: self.sale_id(record),
                skill: record.skill.clone(),
                resource: record.resource.clone(),
                network: self.network.to_string(),
                price: record.price,
                request_hash: record.request_hash,
                payment_id: record.signed_payment().payment.id(),
                payment: record.signed_payment(),
                settlement: settled_of(mined),
            })
            .await
    }

    /// Settles the account of sales a stopped process left `Settling`, without waiting
    /// for their buyers to come back; run it at start. For each, the chain decides:
    ///
    /// - the authorization is used: the transaction that used it is found, journaled
    ///   (`x402_payment`) and the sale recorded `Settled`, so the journal holds every
    ///   payment that moved money; the buyer's retry gets the result;
    /// - unused and expired: nothing moved and nothing can, and the record goes;
    /// - unused and still valid: left as is, for the buyer's retry (its transaction
    ///   may still be pending).
    ///
    /// # Errors
    /// [`Error::Store`] if the store cannot be read or written. A sale the node cannot
    /// answer about is counted [`Reconciled::pending`], never dropped.
    pub async fn reconcile(&self) -> Result<Reconciled> {
        let mut done = Reconciled::default();
        for (key, mut record) in self.store.all()? {
            if record.state != SaleState::Settling {
                continue;
            }
            let Ok(key) = <[u8; 72]>::try_from(key.as_slice()) else {
                continue;
            };
            let _turn = self.locks.lock(key).await;
            // A request may have moved it on since the scan.
            match self.store.get(&key)? {
                Some(r) if r.state == SaleState::Settling => record = r,
                _ => continue,
            }
            let t = &record.transfer;
            match self.token.authorization_state(t.from, t.nonce).await {
                Ok(true) => match self.find_settlement(&record).await {
                    Ok(mined) if self.journal_payment(&record, mined).await.is_ok() => {
                        record.state = SaleState::Settled { settlement: mined };
                        self.store.put(&key, &record)?;
                        tracing::info!(target: "x402::seller", skill = %record.skill,
                            tx = %mined.tx_hash, "reconciled: a sale left settling was paid");
                        done.settled += 1;
                    }
                    _ => done.pending += 1,
                },
                Ok(false) if t.valid_before <= self.now() => {
                    self.store.remove(&key)?;
                    done.forgotten += 1;
                }
                Ok(false) | Err(_) => done.pending += 1,
            }
        }
        Ok(done)
    }

    /// Paid: run the skill on this request's body, record and journal the delivery.
    async fn run(&self, sale: &Sale<'_>, record: &mut SaleRecord, mined: Mined) -> Outcome {
        let offer = sale.offer;
        let settled = self.settle_response(record, &mined);
        if record.request_hash != sale.request_hash {
            // Nothing delivered yet: the payment may go to a corrected request.
            if let Err(message) = offer.priced.check_body(sale.body) {
                return Outcome::Refused {
                    status: 400,
                    error: "invalid_request",
                    message,
                    settled: Some(settled),
                };
            }
            record.request_hash = sale.request_hash;
        }
        let task = String::from_utf8_lossy(sale.body);
        let output = match offer.priced.service.perform(&self.ctx, &task).await {
            Ok(output) => output,
            Err(e) => return skill_failed(&record.skill, e, settled),
        };
        let body = match serde_json::to_string(&output.result) {
            Ok(b) => b,
            Err(e) => return Outcome::internal(e),
        };
        let result_hash = negotiation::result_hash(&output.result);
        record.state = SaleState::Delivered {
            settlement: mined,
            body: body.clone(),
            result_hash,
            attestation: output.attestation.clone(),
        };
        if let Err(e) = self.store.put(&sale.key, record) {
            return Outcome::internal(e);
        }
        if let Err(e) = self
            .journal_delivery(record, &mined, result_hash, output.attestation.clone())
            .await
        {
            // Recorded: a retry of the payment journals it again.
            tracing::error!(target: "x402::seller", error = %e, "journaling a delivery failed");
        }
        tracing::info!(target: "x402::seller", skill = %record.skill, tx = %mined.tx_hash, "x402 sale delivered");
        Outcome::Served {
            body,
            settled,
            attestation: offer.priced.header_of(output.attestation.as_ref()),
        }
    }

    async fn journal_delivery(
        &self,
        record: &SaleRecord,
        mined: &Mined,
        result_hash: B256,
        attestation: Option<Value>,
    ) -> negotiation::Result<()> {
        self.journal
            .append(X402DeliveryBody {
                sale_id: self.sale_id(record),
                request_hash: record.request_hash,
                result_hash,
                tx_hash: mined.tx_hash,
                attestation,
            })
            .await
    }

    fn sale_id(&self, record: &SaleRecord) -> B256 {
        x402_sale_id(
            self.token.address(),
            record.transfer.from,
            record.transfer.nonce,
        )
    }

    fn settle_response(&self, record: &SaleRecord, mined: &Mined) -> SettleResponse {
        SettleResponse {
            success: true,
            payer: Some(record.transfer.from.to_string()),
            transaction: mined.tx_hash.to_string(),
            network: self.network.clone(),
            amount: Some(record.transfer.value.base_units().to_string()),
            ..SettleResponse::default()
        }
    }
}

/// One request with a payment, under its key's lock.
struct Sale<'a> {
    offer: &'a Offer,
    key: [u8; 72],
    resource: String,
    payload: &'a PaymentPayload,
    body: &'a [u8],
    request_hash: B256,
}

/// Whether `payload` carries the authorization of `record`, signed by its payer
/// (the signature's bytes may differ).
fn same_payment(payload: &PaymentPayload, record: &SaleRecord) -> bool {
    let Ok(exact) = payload.exact_evm() else {
        return false;
    };
    let Ok(transfer) = exact.authorization.to_transfer() else {
        return false;
    };
    let Ok(signature) = wallets::Signature::from_hex(&exact.signature) else {
        return false;
    };
    transfer == record.transfer
        && signature
            .recover(&transfer.signing_hash(&record.domain))
            .is_ok_and(|signer| signer == transfer.from)
}

/// Whether the client's `accepted` is our offer (addresses in any case).
fn matches_offer(
    accepted: &PaymentRequirements,
    ours: &PaymentRequirements,
) -> std::result::Result<(), Invalid> {
    use InvalidReason as R;
    let same_address = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let mismatch = |reason, field: &str, theirs: &str, ours: &str| {
        Err(Invalid::new(
            reason,
            format!("the payment accepted {field} {theirs:?}, the offer is {ours:?}"),
        ))
    };
    if accepted.scheme != ours.scheme {
        return mismatch(
            R::UnsupportedScheme,
            "scheme",
            &accepted.scheme,
            &ours.scheme,
        );
    }
    if accepted.network != ours.network {
        return mismatch(
            R::NetworkMismatch,
            "network",
            accepted.network.as_str(),
            ours.network.as_str(),
        );
    }
    if accepted.amount != ours.amount {
        return mismatch(R::ValueMismatch, "amount", &accepted.amount, &ours.amount);
    }
    if !same_address(&accepted.asset, &ours.asset) {
        return mismatch(R::UnsupportedAsset, "asset", &accepted.asset, &ours.asset);
    }
    if !same_address(&accepted.pay_to, &ours.pay_to) {
        return mismatch(
            R::RecipientMismatch,
            "payTo",
            &accepted.pay_to,
            &ours.pay_to,
        );
    }
    for key in ["name", "version"] {
        let (theirs, mine) = (accepted.extra_str(key), ours.extra_str(key));
        if theirs != mine {
            return mismatch(
                R::MissingEip712Domain,
                &format!("extra.{key}"),
                theirs.unwrap_or(""),
                mine.unwrap_or(""),
            );
        }
    }
    Ok(())
}

/// Whether `transfers` include exactly the authorized transfer.
fn moved(
    t: &wallets::TransferWithAuthorization,
    transfers: &[(Address, Address, wallets::U256)],
) -> bool {
    let value = wallets::U256::from(t.value.base_units());
    transfers
        .iter()
        .any(|(from, to, v)| *from == t.from && *to == t.to && *v == value)
}

fn settled_of(m: Mined) -> Settled {
    Settled {
        tx_hash: m.tx_hash,
        block: m.block,
        gas_used: m.gas_used,
    }
}

fn skill_failed(skill: &str, e: SkillError, settled: SettleResponse) -> Outcome {
    tracing::warn!(target: "x402::seller", skill, code = %e.code, message = %e.message,
        "the skill failed after payment; a retry with the same payment runs it again");
    let e = e.for_asker(format_args!("payment transaction {}", settled.transaction));
    let (status, error) = if e.code == "bad_request" {
        (422, "skill_refused")
    } else {
        (502, "skill_failed")
    };
    Outcome::Refused {
        status,
        error,
        message: format!(
            "paid (transaction {}), but the {skill} skill answered {}: {}; retry with the same \
             payment",
            settled.transaction, e.code, e.message
        ),
        settled: Some(settled),
    }
}
