//! Buying from any x402 v2 server, through the agent's spending policy.
//!
//! [`X402Buyer::buy`] sends a [`Purchase`] (a method, a URL, a body). A server that
//! answers `402` with a `PAYMENT-REQUIRED` header is paid:
//!
//! 1. **An offer the policy accepts.** Of the `accepts` entries, only scheme `exact` in
//!    a token whose EIP-712 domain (chain id from `eip155:<id>`, `asset`, `extra.name`,
//!    `extra.version`) is pinned in the [`SpendingPolicy`] ([`SpendingPolicy::pin_token`])
//!    can be paid: that is the asset and network allow-list. The cheapest is taken.
//! 2. **Signed by the policy.** The EIP-3009 `TransferWithAuthorization` (to `payTo`,
//!    exactly `amount`, valid from 0 until now plus the offer's `maxTimeoutSeconds`,
//!    capped at [`BuyerConfig::max_validity_secs`]) is signed only through
//!    [`SpendingPolicy::authorize`], which applies the per-deal, daily, per-payee,
//!    recurrence and validity limits and records the spend before it signs. Nothing the
//!    server says can widen them: a refusal is [`BuyError::Policy`] and nothing is
//!    signed.
//! 3. **Persisted, then sent.** The payment payload (`accepted` echoed verbatim, the
//!    server's extensions echoed, with the purchase id as `payment-identifier` where
//!    the server declares that extension) is written to the buyer's store and
//!    journaled (`x402_purchase`) before it leaves, and sent as `PAYMENT-SIGNATURE`.
//! 4. **Never paid twice.** The EIP-3009 nonce is derived from the payer and the
//!    purchase id, so one purchase id can only ever be one payment. A lost answer (a
//!    connection reset, a timeout, a `503`) is retried with the *same* payment, up to
//!    [`BuyerConfig::resends`] times; a later [`X402Buyer::buy`] with the same
//!    [`Purchase::id`], after a crash for example, re-sends the stored payment again,
//!    and one whose answer was stored gets that answer back without a request.
//! 5. **Journaled.** The answer (`x402_answer`: status, the settling transaction the
//!    `PAYMENT-RESPONSE` names, the body's hash) goes to the buyer's journal, which
//!    `agora audit --rpc` checks against the chain.
//!
//! A resource that answers without asking for payment is returned as it is, unpaid.
//!
//! ```no_run
//! # async fn demo(
//! #     policy: std::sync::Arc<wallets::SpendingPolicy>,
//! #     journal: negotiation::SharedJournal,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! use serde_json::{json, Value};
//! use x402::{BuyerConfig, Purchase, X402Buyer};
//!
//! // The policy holds the agent's wallet, its limits and the tokens it may pay in.
//! let buyer = X402Buyer::open(policy, journal, BuyerConfig::new("x402-purchases"))?;
//! let purchase = Purchase::post_json(
//!     "http://127.0.0.1:7411/x402/weather.forecast",
//!     &json!({"city": "Lisbon", "date": "2026-12-06"}),
//! )?
//! .id("trip-42-forecast-lisbon");
//! let answer = buyer.buy(purchase).await?;
//! let forecast: Value = answer.json()?;
//! if let Some(paid) = &answer.paid {
//!     println!("paid {} in {:?}", paid.amount(), paid.transaction());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Errors
//!
//! Every [`BuyError`] says whether money may have moved: [`BuyError::paid`] is the
//! signed payment when it was sent. Retrying such a purchase means calling
//! [`X402Buyer::buy`] again with the same [`Purchase::id`]; a new id is a new payment.
//! A server that refuses a sent payment (`402` again) leaves it counted against the
//! limits until it expires: whoever holds a valid authorization can still settle it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use negotiation::journal::{x402_sale_id, X402AnswerBody, X402PurchaseBody};
use negotiation::SharedJournal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use wallets::{
    Address, Amount, Eip712Domain, Payment, SignedPayment, SpendingPolicy,
    TransferWithAuthorization, B256,
};

use crate::locks::KeyLocks;
use crate::wire::{
    self, ExactEvmPayload, PaymentPayload, PaymentRequired, PaymentRequirements, SettleResponse,
    SCHEME_EXACT, X402_VERSION,
};

pub use reqwest::Method;

/// The x402 extension that carries a client's idempotency id.
pub const PAYMENT_IDENTIFIER: &str = "payment-identifier";

/// How an [`X402Buyer`] stores, bounds and retries.
#[derive(Clone, Debug)]
pub struct BuyerConfig {
    /// The directory of the buyer's purchase store (sled).
    pub store: PathBuf,
    /// The longest an authorization is signed valid for, whatever the server's
    /// `maxTimeoutSeconds` (default 600 s).
    pub max_validity_secs: u64,
    /// The largest answer body read, in bytes (default 8 MiB).
    pub max_answer_bytes: usize,
    /// How many more times a paid request is sent, with the same payment, after a lost
    /// answer or a `503`/`504` (default 3).
    pub resends: u32,
    /// How long one HTTP exchange may take (default 60 s).
    pub timeout: Duration,
}

impl BuyerConfig {
    /// The defaults, with the purchase store at `store`.
    pub fn new(store: impl Into<PathBuf>) -> Self {
        Self {
            store: store.into(),
            max_validity_secs: 600,
            max_answer_bytes: 8 * 1024 * 1024,
            resends: 3,
            timeout: Duration::from_secs(60),
        }
    }
}

/// One HTTP request to buy: a method, a URL, a body and the purchase's id.
#[derive(Clone, Debug)]
pub struct Purchase {
    method: Method,
    url: String,
    body: Vec<u8>,
    content_type: Option<String>,
    id: Option<String>,
    max_price: Option<Amount>,
}

impl Purchase {
    /// A request without a body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            body: Vec::new(),
            content_type: None,
            id: None,
            max_price: None,
        }
    }

    /// `GET url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::GET, url)
    }

    /// `POST url` with `body` as JSON.
    ///
    /// # Errors
    /// [`BuyError::Request`] if `body` cannot be written as JSON.
    pub fn post_json(url: impl Into<String>, body: &impl Serialize) -> Result<Self, BuyError> {
        let url = url.into();
        let bytes = serde_json::to_vec(body).map_err(|e| BuyError::Request {
            url: url.clone(),
            reason: format!("the body is not JSON: {e}"),
        })?;
        Ok(Self::new(Method::POST, url).body(bytes, "application/json"))
    }

    /// Sets the body and its content type.
    pub fn body(mut self, body: impl Into<Vec<u8>>, content_type: impl Into<String>) -> Self {
        self.body = body.into();
        self.content_type = Some(content_type.into());
        self
    }

    /// Sets the purchase's id: 16 to 128 ASCII letters, digits, `-` or `_` (the
    /// `payment-identifier` extension's form). Buying again with the same id never
    /// pays again: it re-sends the purchase's one payment, or returns its stored
    /// answer. Without an id, each [`X402Buyer::buy`] is a new purchase with a fresh
    /// one ([`Answer::id`]).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The most this purchase may cost: a dearer offer is passed over, on top of what
    /// the spending policy's limits refuse. Without it, the policy's limits alone.
    pub fn max_price(mut self, max: Amount) -> Self {
        self.max_price = Some(max);
        self
    }

    /// The request line, as journaled: `POST http://…`.
    fn line(&self) -> String {
        format!("{} {}", self.method, self.url)
    }

    fn key(&self) -> RequestKey {
        RequestKey {
            method: self.method.to_string(),
            url: self.url.clone(),
            body_hash: wallets::keccak256(&self.body),
        }
    }
}

/// A successful answer to a [`Purchase`].
#[derive(Clone, Debug)]
pub struct Answer {
    /// The purchase's id.
    pub id: String,
    /// The HTTP status (2xx).
    pub status: u16,
    /// The answer's content type, if it named one.
    pub content_type: Option<String>,
    /// The answer's body.
    pub body: Vec<u8>,
    /// The payment, if the resource asked for one.
    pub paid: Option<Paid>,
    /// Answered from the store: an earlier call with this purchase id got this answer,
    /// and nothing was sent now.
    pub from_store: bool,
}

impl Answer {
    /// The body read as JSON of `T`.
    ///
    /// # Errors
    /// [`BuyError::Answer`] naming what does not parse.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, BuyError> {
        serde_json::from_slice(&self.body).map_err(|e| BuyError::Answer {
            id: self.id.clone(),
            reason: format!("the body is not the JSON expected: {e}"),
            paid: self.paid.as_ref().map(|p| Box::new(p.payment.clone())),
        })
    }
}

/// What a purchase paid.
#[derive(Clone, Debug)]
pub struct Paid {
    /// The signed authorization sent.
    pub payment: SignedPayment,
    /// The server's offer it pays, as the server wrote it.
    pub accepted: PaymentRequirements,
    /// The server's `PAYMENT-RESPONSE`, if it sent one.
    pub settlement: Option<SettleResponse>,
    /// How many times the payment was sent by this call (more than one after a lost
    /// answer).
    pub sends: u32,
}

impl Paid {
    /// The amount paid.
    pub fn amount(&self) -> Amount {
        self.payment.payment.amount()
    }

    /// The settling transaction named by the server, if any.
    pub fn transaction(&self) -> Option<B256> {
        self.settlement
            .as_ref()
            .and_then(|s| s.transaction.parse().ok())
    }
}

/// Why a purchase failed. [`BuyError::paid`] says whether a payment was sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuyError {
    /// The purchase is not one that can be sent (a bad id, a body that is not JSON).
    #[error("purchase {url}: {reason}")]
    Request {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The server could not be reached, or did not answer, before anything was paid.
    #[error("{url}: {reason}; nothing was paid")]
    Unreachable {
        /// The URL.
        url: String,
        /// What the HTTP client said.
        reason: String,
    },
    /// The server asked for payment, but no offer is one the policy can pay.
    #[error("{url} asks for payment, but no offer can be paid; nothing was paid: {}", .offers.join("; "))]
    NoAcceptableOffer {
        /// The URL.
        url: String,
        /// Why each offer was passed over.
        offers: Vec<String>,
    },
    /// The spending policy refused the payment: nothing was signed.
    #[error("{url}: the spending policy refused to pay: {source}")]
    Policy {
        /// The URL.
        url: String,
        /// The policy's refusal.
        #[source]
        source: Box<wallets::Error>,
    },
    /// The id names a purchase of another request.
    #[error("purchase {id} was made for {was}, not {now}: one id, one request")]
    IdReused {
        /// The purchase id.
        id: String,
        /// The request it was made for.
        was: String,
        /// The request now.
        now: String,
    },
    /// The payment was sent and no answer came back, after every resend.
    #[error(
        "purchase {id}: paid request to {url} sent {sends} times without an answer ({reason}); \
         buy again with the same purchase id to re-send the same payment"
    )]
    Unanswered {
        /// The purchase id.
        id: String,
        /// The URL.
        url: String,
        /// How many times it was sent.
        sends: u32,
        /// The last error.
        reason: String,
        /// The payment sent.
        paid: Box<SignedPayment>,
    },
    /// The server refused the payment it was sent (`402` again).
    #[error(
        "purchase {id}: {url} refused the payment: {reason}; the authorization stays valid \
         (and counted by the spending policy) until {valid_before}"
    )]
    Refused {
        /// The purchase id.
        id: String,
        /// The URL.
        url: String,
        /// The server's reason (`invalidReason`/`error` of its `PAYMENT-REQUIRED`).
        reason: String,
        /// Unix seconds at which the authorization expires.
        valid_before: u64,
        /// The payment sent.
        paid: Box<SignedPayment>,
    },
    /// The server answered with an error status.
    #[error("purchase {id}: {url} answered {status}: {message}{}", if .paid.is_some() { "; a payment was sent: buy again with the same purchase id to re-send it" } else { "; nothing was paid" })]
    Status {
        /// The purchase id.
        id: String,
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// The start of the body.
        message: String,
        /// The payment sent, if any.
        paid: Option<Box<SignedPayment>>,
        /// The server's `PAYMENT-RESPONSE`, if it sent one.
        settlement: Option<Box<SettleResponse>>,
    },
    /// The server's answer is not valid x402 (a missing or malformed header, an answer
    /// above the size limit).
    #[error("purchase {id}: {reason}")]
    Answer {
        /// The purchase id.
        id: String,
        /// What is wrong.
        reason: String,
        /// The payment sent, if any.
        paid: Option<Box<SignedPayment>>,
    },
    /// The purchase store or the journal failed.
    #[error("x402 purchase store {path}: {message}")]
    Store {
        /// The store's path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl BuyError {
    /// The payment that was sent, if one was: money may have moved.
    pub fn paid(&self) -> Option<&SignedPayment> {
        match self {
            Self::Unanswered { paid, .. } | Self::Refused { paid, .. } => Some(paid),
            Self::Status { paid, .. } | Self::Answer { paid, .. } => paid.as_deref(),
            _ => None,
        }
    }
}

/// Which request a purchase id was made for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestKey {
    method: String,
    url: String,
    body_hash: B256,
}

/// One purchase in the store: written before its payment is first sent.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    request: RequestKey,
    accepted: PaymentRequirements,
    /// The `PAYMENT-SIGNATURE` header exactly as sent.
    header: String,
    payment: SignedPayment,
    /// The successful answer, once one came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    answer: Option<StoredAnswer>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredAnswer {
    status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    /// Standard base64 of the body.
    body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    settlement: Option<SettleResponse>,
}

/// An HTTP answer, read within the size limit.
struct Reply {
    status: u16,
    content_type: Option<String>,
    payment_required: Option<Vec<u8>>,
    payment_response: Option<Vec<u8>>,
    body: Vec<u8>,
}

/// Pays x402 servers through a [`SpendingPolicy`]; see the [module docs](self).
pub struct X402Buyer {
    policy: Arc<SpendingPolicy>,
    journal: SharedJournal,
    http: reqwest::Client,
    config: BuyerConfig,
    db: sled::Db,
    purchases: sled::Tree,
    locks: KeyLocks<String>,
}

impl std::fmt::Debug for X402Buyer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X402Buyer")
            .field("address", &self.policy.address())
            .field("store", &self.config.store)
            .finish_non_exhaustive()
    }
}

impl X402Buyer {
    /// A buyer paying through `policy`, journaling to `journal` (the agent's), its
    /// purchases stored at [`BuyerConfig::store`].
    ///
    /// # Errors
    /// [`BuyError::Store`] if the store cannot be opened; [`BuyError::Request`] if the
    /// HTTP client cannot be made.
    pub fn open(
        policy: Arc<SpendingPolicy>,
        journal: SharedJournal,
        config: BuyerConfig,
    ) -> Result<Self, BuyError> {
        let store_err = |e: sled::Error| BuyError::Store {
            path: config.store.clone(),
            message: e.to_string(),
        };
        let db = sled::Config::new()
            .path(&config.store)
            .open()
            .map_err(store_err)?;
        let purchases = db.open_tree("purchases").map_err(store_err)?;
        let http = reqwest::Client::builder()
            // A paid request goes where it was sent, never where a redirect points.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .build()
            .map_err(|e| BuyError::Request {
                url: String::new(),
                reason: format!("the HTTP client: {e}"),
            })?;
        Ok(Self {
            policy,
            journal,
            http,
            config,
            db,
            purchases,
            locks: KeyLocks::default(),
        })
    }

    /// The paying address.
    pub fn address(&self) -> Address {
        self.policy.address()
    }

    /// Sends `purchase`, paying for it if the server asks; see the [module docs](self).
    ///
    /// # Errors
    /// A [`BuyError`] that says what failed and whether a payment was sent.
    pub async fn buy(&self, purchase: Purchase) -> Result<Answer, BuyError> {
        let id = match &purchase.id {
            Some(id) => {
                check_id(id).map_err(|reason| BuyError::Request {
                    url: purchase.url.clone(),
                    reason,
                })?;
                id.clone()
            }
            None => format!("pay_{}", hex::encode(B256::random().as_bytes())),
        };
        let _turn = self.locks.lock(id.clone()).await;
        if let Some(record) = self.load(&id)? {
            let now = purchase.key();
            if record.request != now {
                return Err(BuyError::IdReused {
                    id,
                    was: format!("{} {}", record.request.method, record.request.url)
                        + body_note(&record.request, &now),
                    now: purchase.line(),
                });
            }
            if let Some(stored) = &record.answer {
                return stored_answer(id, &record, stored);
            }
            return self.send_paid(&purchase, id, record).await;
        }

        let reply =
            self.exchange(&purchase, None)
                .await
                .map_err(|reason| BuyError::Unreachable {
                    url: purchase.url.clone(),
                    reason,
                })?;
        if reply.status != 402 {
            return unpaid_answer(id, &purchase, reply);
        }
        let header = reply.payment_required.ok_or_else(|| BuyError::Answer {
            id: id.clone(),
            reason: format!(
                "{} answered 402 without a PAYMENT-REQUIRED header (not x402 v2)",
                purchase.url
            ),
            paid: None,
        })?;
        let required = wire::decode_payment_required(&header).map_err(|e| BuyError::Answer {
            id: id.clone(),
            reason: format!("{}: {e}", purchase.url),
            paid: None,
        })?;
        let record = self.pay(&purchase, &id, &required).await?;
        self.send_paid(&purchase, id, record).await
    }

    /// What `purchase` would cost under `required`, and whom it would pay: the
    /// cheapest offer in a token the policy is pinned to and within the purchase's
    /// [`Purchase::max_price`], which [`X402Buyer::authorize`] would pay. Nothing is
    /// signed or stored (the policy's limits are checked only when paying).
    ///
    /// # Errors
    /// [`BuyError::NoAcceptableOffer`] saying why each offer was passed over.
    pub fn price(
        &self,
        purchase: &Purchase,
        required: &PaymentRequired,
    ) -> Result<(Amount, Address), BuyError> {
        let offer = self.offer(purchase, required)?;
        Ok((offer.amount, offer.pay_to))
    }

    fn offer(&self, purchase: &Purchase, required: &PaymentRequired) -> Result<Offer, BuyError> {
        choose(self.policy.tokens(), &required.accepts, purchase.max_price).map_err(|offers| {
            BuyError::NoAcceptableOffer {
                url: purchase.url.clone(),
                offers,
            }
        })
    }

    /// The payment for `purchase` of `required`, when x402 travels in another protocol
    /// (A2A's x402 extension puts the `PaymentRequired` in a task's metadata and takes
    /// the `PaymentPayload` back the same way): the offer picked, signed by the policy,
    /// stored and journaled as [`X402Buyer::buy`] does, or the payment stored for the
    /// purchase's id when it was made before, so that a retry sends the same payment.
    /// Say what came of it with [`X402Buyer::answered`].
    ///
    /// # Errors
    /// [`BuyError::Request`] when the purchase has no id (the caller must be able to
    /// retry it); [`BuyError::IdReused`], [`BuyError::NoAcceptableOffer`],
    /// [`BuyError::Policy`], [`BuyError::Store`] as for [`X402Buyer::buy`].
    pub async fn authorize(
        &self,
        purchase: &Purchase,
        required: &PaymentRequired,
    ) -> Result<(PaymentPayload, SignedPayment), BuyError> {
        let id = purchase.id.clone().ok_or_else(|| BuyError::Request {
            url: purchase.url.clone(),
            reason: "a purchase paid through another protocol needs an id, to be retried".into(),
        })?;
        check_id(&id).map_err(|reason| BuyError::Request {
            url: purchase.url.clone(),
            reason,
        })?;
        let _turn = self.locks.lock(id.clone()).await;
        let record = match self.load(&id)? {
            Some(record) if record.request != purchase.key() => {
                return Err(BuyError::IdReused {
                    id,
                    was: format!("{} {}", record.request.method, record.request.url),
                    now: purchase.line(),
                })
            }
            Some(record) => {
                self.journal_purchase(purchase, &id, &record).await?;
                record
            }
            None => self.pay(purchase, &id, required).await?,
        };
        let payload = wire::decode_payment_signature(record.header.as_bytes())
            .map_err(|e| self.store_error(format!("purchase {id}: the stored payment: {e}")))?;
        Ok((payload, record.payment))
    }

    /// Journals the answer to a payment made with [`X402Buyer::authorize`]: `status` in
    /// HTTP terms (200 when the work was done), the settlement the seller named, and
    /// the result; a success is stored, so the purchase's id is never paid again.
    ///
    /// # Errors
    /// [`BuyError::Store`]; [`BuyError::Request`] for a purchase never authorized.
    pub async fn answered(
        &self,
        purchase: &Purchase,
        status: u16,
        settlement: Option<&SettleResponse>,
        body: &[u8],
    ) -> Result<(), BuyError> {
        let id = purchase.id.clone().unwrap_or_default();
        let _turn = self.locks.lock(id.clone()).await;
        let mut record = self.load(&id)?.ok_or_else(|| BuyError::Request {
            url: purchase.url.clone(),
            reason: format!("purchase {id:?} was never authorized"),
        })?;
        let transaction = settlement
            .filter(|s| s.success)
            .and_then(|s| s.transaction.parse().ok());
        self.journal
            .append(X402AnswerBody {
                sale_id: sale_id(&record.payment),
                status,
                transaction,
                result_hash: wallets::keccak256(body),
            })
            .await
            .map_err(|e| self.store_error(format!("journaling the answer: {e}")))?;
        if (200..300).contains(&status) {
            record.answer = Some(StoredAnswer {
                status,
                content_type: Some("application/json".into()),
                body: base64::engine::general_purpose::STANDARD.encode(body),
                settlement: settlement.cloned(),
            });
            self.save(&id, &record).await?;
        }
        Ok(())
    }

    /// Picks an offer of `required`, has the policy sign it, stores and journals it.
    async fn pay(
        &self,
        purchase: &Purchase,
        id: &str,
        required: &PaymentRequired,
    ) -> Result<Record, BuyError> {
        if required.x402_version != X402_VERSION {
            return Err(BuyError::Answer {
                id: id.to_owned(),
                reason: format!(
                    "{} asks for x402 version {}; this buyer speaks version {X402_VERSION}",
                    purchase.url, required.x402_version
                ),
                paid: None,
            });
        }
        let offer = self.offer(purchase, required)?;
        let payer = self.policy.address();
        let now = unix_now();
        let validity = match offer.requirements.max_timeout_seconds {
            0 => self.config.max_validity_secs,
            secs => secs.min(self.config.max_validity_secs),
        };
        let transfer = TransferWithAuthorization {
            from: payer,
            to: offer.pay_to,
            value: offer.amount,
            valid_after: 0,
            valid_before: now.saturating_add(validity),
            nonce: purchase_nonce(payer, id),
        };
        let payment = Payment::Authorization {
            domain: offer.domain,
            transfer,
        };
        let policy = self.policy.clone();
        let signed = tokio::task::spawn_blocking(move || {
            match policy.authorize(&payment) {
                // The store lost the record, the policy did not: the purchase's one
                // payment, if it pays the same offer.
                Err(wallets::Error::PaymentIdReused(pid)) => match policy.authorized(&pid)? {
                    Some(prior) if same_offer(&prior.payment, &payment) => Ok(prior),
                    _ => Err(wallets::Error::PaymentIdReused(pid)),
                },
                other => other,
            }
        })
        .await
        .map_err(|e| BuyError::Store {
            path: self.config.store.clone(),
            message: format!("the signing task failed: {e}"),
        })?
        .map_err(|source| BuyError::Policy {
            url: purchase.url.clone(),
            source: Box::new(source),
        })?;

        let mut extensions = required.extensions.clone();
        if let Some(declared) = extensions
            .as_mut()
            .and_then(|e| e.get_mut(PAYMENT_IDENTIFIER))
            .and_then(Value::as_object_mut)
        {
            let info = declared
                .entry("info")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(info) = info.as_object_mut() {
                info.insert("id".into(), Value::String(id.to_owned()));
            }
        }
        let payload = PaymentPayload {
            x402_version: X402_VERSION,
            payload: ExactEvmPayload::of(&signed)
                .and_then(|exact| serde_json::to_value(exact).ok())
                .unwrap_or(Value::Null),
            accepted: offer.requirements.clone(),
            resource: required.resource.clone(),
            extensions,
            ..PaymentPayload::default()
        };
        let header = wire::encode_header(&payload).map_err(|e| BuyError::Request {
            url: purchase.url.clone(),
            reason: e.to_string(),
        })?;
        let record = Record {
            request: purchase.key(),
            accepted: offer.requirements,
            header,
            payment: signed,
            answer: None,
        };
        self.save(id, &record).await?;
        self.journal_purchase(purchase, id, &record).await?;
        Ok(record)
    }

    /// Sends the stored payment until an answer comes, at most `1 + resends` times.
    async fn send_paid(
        &self,
        purchase: &Purchase,
        id: String,
        mut record: Record,
    ) -> Result<Answer, BuyError> {
        // Journaled again on a resend after a restart: the journal keeps one copy.
        self.journal_purchase(purchase, &id, &record).await?;
        let mut sends = 0;
        let reply = loop {
            sends += 1;
            let last = sends > self.config.resends;
            match self.exchange(purchase, Some(&record.header)).await {
                Ok(reply) if matches!(reply.status, 503 | 504) && !last => {}
                Ok(reply) => break reply,
                Err(reason) if last => {
                    return Err(BuyError::Unanswered {
                        id,
                        url: purchase.url.clone(),
                        sends,
                        reason,
                        paid: Box::new(record.payment),
                    })
                }
                Err(reason) => {
                    tracing::warn!(purchase = %id, url = %purchase.url, %reason, sends,
                        "x402: no answer to a paid request; re-sending the same payment");
                }
            }
            tokio::time::sleep(Duration::from_millis(250 << sends.min(5))).await;
        };

        let settlement = match &reply.payment_response {
            Some(h) => Some(
                wire::decode_payment_response(h).map_err(|e| BuyError::Answer {
                    id: id.clone(),
                    reason: format!("{}: {e}", purchase.url),
                    paid: Some(Box::new(record.payment.clone())),
                })?,
            ),
            None => None,
        };
        let transaction = settlement
            .as_ref()
            .filter(|s| s.success)
            .and_then(|s| s.transaction.parse().ok());
        self.journal
            .append(X402AnswerBody {
                sale_id: sale_id(&record.payment),
                status: reply.status,
                transaction,
                result_hash: wallets::keccak256(&reply.body),
            })
            .await
            .map_err(|e| self.store_error(format!("journaling the answer: {e}")))?;

        let paid = || Box::new(record.payment.clone());
        match reply.status {
            200..=299 => {}
            402 => {
                let reason = refusal(&reply);
                let valid_before = match &record.payment.payment {
                    Payment::Authorization { transfer, .. } => transfer.valid_before,
                    _ => 0,
                };
                return Err(BuyError::Refused {
                    id,
                    url: purchase.url.clone(),
                    reason,
                    valid_before,
                    paid: paid(),
                });
            }
            status => {
                return Err(BuyError::Status {
                    id,
                    url: purchase.url.clone(),
                    status,
                    message: message(&reply.body),
                    paid: Some(paid()),
                    settlement: settlement.map(Box::new),
                })
            }
        }
        record.answer = Some(StoredAnswer {
            status: reply.status,
            content_type: reply.content_type.clone(),
            body: base64::engine::general_purpose::STANDARD.encode(&reply.body),
            settlement: settlement.clone(),
        });
        self.save(&id, &record).await?;
        Ok(Answer {
            id,
            status: reply.status,
            content_type: reply.content_type,
            body: reply.body,
            paid: Some(Paid {
                payment: record.payment,
                accepted: record.accepted,
                settlement,
                sends,
            }),
            from_store: false,
        })
    }

    /// One HTTP exchange, the body read within [`BuyerConfig::max_answer_bytes`].
    async fn exchange(&self, purchase: &Purchase, payment: Option<&str>) -> Result<Reply, String> {
        let mut request = self
            .http
            .request(purchase.method.clone(), &purchase.url)
            .body(purchase.body.clone());
        if let Some(ct) = &purchase.content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, ct);
        }
        if let Some(p) = payment {
            request = request.header(wire::PAYMENT_SIGNATURE_HEADER, p);
        }
        let mut response = request.send().await.map_err(|e| describe(&e))?;
        let header = |name: &str| response.headers().get(name).map(|v| v.as_bytes().to_vec());
        let payment_required = header(wire::PAYMENT_REQUIRED_HEADER);
        let payment_response = header(wire::PAYMENT_RESPONSE_HEADER);
        let content_type = header(reqwest::header::CONTENT_TYPE.as_str())
            .map(|v| String::from_utf8_lossy(&v).into_owned());
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
            if body.len() + chunk.len() > self.config.max_answer_bytes {
                return Err(format!(
                    "the answer's body is larger than {} bytes",
                    self.config.max_answer_bytes
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Reply {
            status,
            content_type,
            payment_required,
            payment_response,
            body,
        })
    }

    async fn journal_purchase(
        &self,
        purchase: &Purchase,
        id: &str,
        record: &Record,
    ) -> Result<(), BuyError> {
        self.journal
            .append(X402PurchaseBody {
                sale_id: sale_id(&record.payment),
                purchase_id: id.to_owned(),
                request: purchase.line(),
                network: record.accepted.network.to_string(),
                request_hash: record.request.body_hash,
                payment: record.payment.clone(),
            })
            .await
            .map_err(|e| self.store_error(format!("journaling the purchase: {e}")))
    }

    fn load(&self, id: &str) -> Result<Option<Record>, BuyError> {
        let Some(bytes) = self
            .purchases
            .get(id.as_bytes())
            .map_err(|e| self.store_error(e.to_string()))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| self.store_error(format!("purchase {id}: unreadable record: {e}")))
    }

    /// Writes `record` and waits until it is on disk.
    async fn save(&self, id: &str, record: &Record) -> Result<(), BuyError> {
        let bytes = serde_json::to_vec(record)
            .map_err(|e| self.store_error(format!("purchase {id}: {e}")))?;
        self.purchases
            .insert(id.as_bytes(), bytes)
            .map_err(|e| self.store_error(e.to_string()))?;
        self.db
            .flush_async()
            .await
            .map(drop)
            .map_err(|e| self.store_error(e.to_string()))
    }

    fn store_error(&self, message: String) -> BuyError {
        BuyError::Store {
            path: self.config.store.clone(),
            message,
        }
    }
}

/// An offer the policy can pay.
struct Offer {
    requirements: PaymentRequirements,
    domain: Eip712Domain,
    pay_to: Address,
    amount: Amount,
}

/// The cheapest offer in a pinned token domain, or why each offer was passed over.
/// Offers dearer than `max` are passed over.
fn choose(
    tokens: &[Eip712Domain],
    accepts: &[PaymentRequirements],
    max: Option<Amount>,
) -> Result<Offer, Vec<String>> {
    let mut reasons = Vec::new();
    let mut best: Option<Offer> = None;
    for (i, offer) in accepts.iter().enumerate() {
        let within = |o: Offer| match max {
            Some(max) if o.amount > max => Err(format!(
                "it costs {}, more than the purchase's most, {max}",
                o.amount
            )),
            _ => Ok(o),
        };
        match payable(tokens, offer).and_then(within) {
            Ok(o) if best.as_ref().is_some_and(|b| b.amount <= o.amount) => {}
            Ok(o) => best = Some(o),
            Err(why) => reasons.push(format!("accepts[{i}]: {why}")),
        }
    }
    if accepts.is_empty() {
        reasons.push("the 402 lists no offer".into());
    }
    best.ok_or(reasons)
}

fn payable(tokens: &[Eip712Domain], offer: &PaymentRequirements) -> Result<Offer, String> {
    if offer.scheme != SCHEME_EXACT {
        return Err(format!("scheme {:?} is not \"exact\"", offer.scheme));
    }
    let chain_id = offer.network.chain_id().map_err(|e| e.to_string())?;
    let asset = wire::parse_address("asset", &offer.asset)?;
    let pay_to = wire::parse_address("payTo", &offer.pay_to)?;
    let units = offer.amount_units()?;
    let amount = u128::try_from(units)
        .map(Amount::from_base_units)
        .map_err(|_| format!("amount {} is too large", offer.amount))?;
    let (Some(name), Some(version)) = (offer.extra_str("name"), offer.extra_str("version")) else {
        return Err("extra lacks the token's EIP-712 name and version".into());
    };
    let domain = Eip712Domain::new(name, version, chain_id, asset);
    if !tokens.contains(&domain) {
        return Err(format!(
            "{asset} on {} ({name:?} version {version:?}) is not a token the spending policy \
             may pay in",
            offer.network
        ));
    }
    Ok(Offer {
        requirements: offer.clone(),
        domain,
        pay_to,
        amount,
    })
}

/// The purchase's EIP-3009 nonce: one purchase id, one payment.
fn purchase_nonce(payer: Address, id: &str) -> B256 {
    let mut tagged = b"agora.x402.purchase.v1".to_vec();
    tagged.extend_from_slice(id.as_bytes());
    TransferWithAuthorization::derive_nonce(payer, &wallets::keccak256(tagged))
}

/// Two authorizations pay the same offer (domain, payee and amount).
fn same_offer(a: &Payment, b: &Payment) -> bool {
    match (a, b) {
        (
            Payment::Authorization {
                domain: da,
                transfer: ta,
            },
            Payment::Authorization {
                domain: db,
                transfer: tb,
            },
        ) => da == db && ta.to == tb.to && ta.value == tb.value && ta.from == tb.from,
        _ => false,
    }
}

fn sale_id(signed: &SignedPayment) -> B256 {
    match &signed.payment {
        Payment::Authorization { domain, transfer } => x402_sale_id(
            domain.verifying_contract.unwrap_or_default(),
            transfer.from,
            transfer.nonce,
        ),
        other => wallets::keccak256(other.id()),
    }
}

/// The `payment-identifier` extension's id form.
fn check_id(id: &str) -> Result<(), String> {
    let ok = (16..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "purchase id {:?} is not 16 to 128 ASCII letters, digits, '-' or '_'",
            id.chars().take(140).collect::<String>()
        ))
    }
}

fn body_note(was: &RequestKey, now: &RequestKey) -> &'static str {
    if was.method == now.method && was.url == now.url {
        " with another body"
    } else {
        ""
    }
}

fn stored_answer(id: String, record: &Record, stored: &StoredAnswer) -> Result<Answer, BuyError> {
    let body = base64::engine::general_purpose::STANDARD
        .decode(&stored.body)
        .map_err(|e| BuyError::Store {
            path: PathBuf::new(),
            message: format!("purchase {id}: the stored answer is not base64: {e}"),
        })?;
    Ok(Answer {
        id,
        status: stored.status,
        content_type: stored.content_type.clone(),
        body,
        paid: Some(Paid {
            payment: record.payment.clone(),
            accepted: record.accepted.clone(),
            settlement: stored.settlement.clone(),
            sends: 0,
        }),
        from_store: true,
    })
}

fn unpaid_answer(id: String, purchase: &Purchase, reply: Reply) -> Result<Answer, BuyError> {
    if !(200..300).contains(&reply.status) {
        return Err(BuyError::Status {
            id,
            url: purchase.url.clone(),
            status: reply.status,
            message: message(&reply.body),
            paid: None,
            settlement: None,
        });
    }
    Ok(Answer {
        id,
        status: reply.status,
        content_type: reply.content_type,
        body: reply.body,
        paid: None,
        from_store: false,
    })
}

/// Why a `402` refused a payment: its `PAYMENT-REQUIRED` `error`, or the body.
fn refusal(reply: &Reply) -> String {
    let required = reply
        .payment_required
        .as_deref()
        .and_then(|h| wire::decode_payment_required(h).ok());
    let from_body = serde_json::from_slice::<Value>(&reply.body)
        .ok()
        .and_then(|b| {
            b.get("invalidMessage")
                .or_else(|| b.get("error"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    match (required.and_then(|r| r.error), from_body) {
        (Some(code), Some(msg)) if code != msg => format!("{code} ({msg})"),
        (Some(code), _) => code,
        (None, Some(msg)) => msg,
        (None, None) => "402 without a reason".into(),
    }
}

/// The start of an error answer's body, as text.
fn message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.chars().count() > 300 {
        format!("{}…", text.chars().take(300).collect::<String>())
    } else if text.is_empty() {
        "(no body)".into()
    } else {
        text.to_owned()
    }
}

/// A reqwest error with its causes (a refused connection says so).
fn describe(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(asset: Address, amount: &str, name: &str) -> PaymentRequirements {
        serde_json::from_value(serde_json::json!({
            "scheme": "exact", "network": "eip155:1337", "amount": amount,
            "asset": asset.to_string(), "payTo": Address([9; 20]).to_string(),
            "maxTimeoutSeconds": 60, "extra": {"name": name, "version": "2"}
        }))
        .unwrap()
    }

    #[test]
    fn only_pinned_tokens_are_payable_and_the_cheapest_is_taken() {
        let token = Address([7; 20]);
        let pinned = [Eip712Domain::new("USD Coin", "2", 1337, token)];
        let accepts = vec![
            offer(Address([8; 20]), "1", "USD Coin"),
            offer(token, "900", "USD Coin"),
            offer(token, "500", "Fake Coin"),
            offer(token, "700", "USD Coin"),
            PaymentRequirements {
                scheme: "upto".into(),
                ..offer(token, "1", "USD Coin")
            },
        ];
        let chosen = choose(&pinned, &accepts, None)
            .map_err(|r| r.join("; "))
            .unwrap();
        assert_eq!(chosen.amount, Amount::from_base_units(700));
        assert_eq!(chosen.requirements, accepts[3]);

        let reasons = choose(&pinned, &accepts[..1], None).err().unwrap();
        assert!(reasons[0].contains("is not a token the spending policy may pay in"));
        let reasons = choose(&pinned, &accepts[2..3], None).err().unwrap();
        assert!(reasons[0].contains("\"Fake Coin\""), "{reasons:?}");
        let reasons = choose(&pinned, &accepts[4..], None).err().unwrap();
        assert!(reasons[0].contains("scheme \"upto\""), "{reasons:?}");
        assert_eq!(
            choose(&pinned, &[], None).err().unwrap(),
            ["the 402 lists no offer"]
        );
        // A most-price passes dearer offers over, and says so.
        let within = choose(&pinned, &accepts, Some(Amount::from_base_units(800))).unwrap();
        assert_eq!(within.amount, Amount::from_base_units(700));
        let reasons = choose(&pinned, &accepts[1..2], Some(Amount::from_base_units(899)))
            .err()
            .unwrap();
        assert!(
            reasons[0].contains("more than the purchase's most"),
            "{reasons:?}"
        );
    }

    #[test]
    fn purchase_ids_take_the_payment_identifier_form() {
        assert!(check_id("trip-42-forecast-lisbon").is_ok());
        assert!(check_id(&format!("pay_{}", "a".repeat(32))).is_ok());
        assert!(check_id("short").is_err());
        assert!(check_id("has a space in it!!").is_err());
        assert!(check_id(&"x".repeat(129)).is_err());
    }

    #[test]
    fn one_purchase_id_is_one_nonce() {
        let payer = Address([1; 20]);
        assert_eq!(
            purchase_nonce(payer, "trip-42-forecast"),
            purchase_nonce(payer, "trip-42-forecast")
        );
        assert_ne!(
            purchase_nonce(payer, "trip-42-forecast"),
            purchase_nonce(payer, "trip-43-forecast")
        );
        assert_ne!(
            purchase_nonce(payer, "trip-42-forecast"),
            purchase_nonce(Address([2; 20]), "trip-42-forecast")
        );
    }
}
