//! A2A agents listed in the registry, as sellers beside the negotiation's.
//!
//! An `AgentRegistry` entry whose endpoint is an `http://` or `https://` URL is an A2A
//! agent ([`agent_sdk::Peer::is_a2a`]): its card is at
//! `<endpoint>/.well-known/agent-card.json`, and it sells the entry's services as A2A
//! skills, paid with A2A's x402 extension. Agora hosts list `ws://` or `wss://`
//! endpoints and are hired through the negotiation.
//!
//! [`Market::hire`] hires one seller of a kind from both:
//!
//! 1. it asks each A2A agent the directory lists for the kind (at most
//!    [`MAX_A2A_SELLERS`]) for a quote ([`A2aClient::quote`]): the agent opens a task
//!    and names its price in the task's `PaymentRequired`. Nothing is signed. A quote
//!    is kept only when it is payable in a token the spending policy is pinned to,
//!    within `max_price`, and pays the very address the registry lists;
//! 2. it negotiates with the Agora sellers for at most the best quote
//!    ([`negotiation::Buyer::hire`]): an Agora seller as cheap wins, for its signed
//!    delivery and receipt;
//! 3. when no Agora seller can be hired at that price, and nothing was paid, it pays
//!    the best quote on its task ([`A2aClient::accept`]).
//!
//! The other quoted tasks are canceled. Every payment goes through the agent's
//! spending policy either way, so a quote can never widen what the agent may spend.

use agent_sdk::{Context, Peer};
use negotiation::{Buyer, PaymentMode};
use serde_json::Value;
use wallets::{Address, Amount};

use crate::client::{A2aClient, Hire, HireError, Hired, Quote};

/// The most A2A agents asked for a quote in one hire.
pub const MAX_A2A_SELLERS: usize = 8;

/// A seller of either kind, hired.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Deal {
    /// An Agora seller, through the negotiation.
    Negotiated(negotiation::Deal),
    /// An A2A agent listed in the registry, paid with x402.
    A2a(A2aDeal),
}

/// A deal with an A2A agent.
#[derive(Clone, Debug)]
pub struct A2aDeal {
    /// The agent's address in the registry (the payee).
    pub seller: Address,
    /// Its A2A base URL.
    pub url: String,
    /// What was paid (zero for a free skill).
    pub price: Amount,
    /// The completed task, its result and payment.
    pub hired: Hired,
}

impl Deal {
    /// Who delivered.
    pub fn seller(&self) -> Address {
        match self {
            Self::Negotiated(d) => d.seller(),
            Self::A2a(d) => d.seller,
        }
    }

    /// What was paid.
    pub fn price(&self) -> Amount {
        match self {
            Self::Negotiated(d) => d.price(),
            Self::A2a(d) => d.price,
        }
    }

    /// The result delivered.
    pub fn result(&self) -> &Value {
        match self {
            Self::Negotiated(d) => d.result(),
            Self::A2a(d) => &d.hired.result,
        }
    }
}

/// Why [`Market::hire`] hired no one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MarketError {
    /// The negotiation failed after it may have moved money, so no A2A agent was paid
    /// instead; or it failed and no A2A agent had a usable quote.
    #[error(transparent)]
    Negotiation(#[from] negotiation::Error),
    /// The A2A agent chosen failed after its quote.
    #[error("A2A seller {seller}: {source}")]
    A2a {
        /// Its address in the registry.
        seller: Address,
        /// What went wrong.
        source: Box<HireError>,
    },
    /// The directory could not be read.
    #[error("finding A2A sellers of {kind}: {reason}")]
    Directory {
        /// The kind asked for.
        kind: String,
        /// Why.
        reason: String,
    },
}

/// One A2A agent's quote.
struct Quoted {
    peer: Peer,
    hire: Hire,
    quote: Quote,
    price: Amount,
}

/// What to hire: a seller of `kind` for `request`, at `max_price` or less, paid in
/// `mode` when an Agora seller is hired.
#[derive(Clone, Debug)]
pub struct Order {
    /// The hire's id (16 to 128 letters, digits, `-`, `_`): an A2A payment retried
    /// under the same id is paid once.
    pub id: String,
    /// The kind of work (`weather.forecast`).
    pub kind: String,
    /// The request: a data part for an A2A agent, its JSON text for an Agora seller.
    pub request: Value,
    /// The most it may cost.
    pub max_price: Amount,
    /// The payment mode of a negotiated deal.
    pub mode: PaymentMode,
}

/// An agent's two ways to hire: the negotiation `buyer` for Agora sellers, and the
/// A2A `client` (whose x402 buyer pays with the same spending policy) for the A2A
/// agents the agent's directory lists; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct Market {
    buyer: Buyer,
    client: A2aClient,
}

impl Market {
    /// Hires through `buyer` and `client`.
    pub fn new(buyer: Buyer, client: A2aClient) -> Self {
        Self { buyer, client }
    }

    /// Hires the cheapest seller for `order`, among the Agora sellers and the A2A
    /// agents that the directory of the agent whose context is `ctx` lists.
    ///
    /// # Errors
    /// [`MarketError::Negotiation`] when no seller was hired through the negotiation
    /// and no A2A quote was usable (or the negotiation failed in a way that may have
    /// paid); [`MarketError::A2a`] when the A2A agent chosen failed after its quote;
    /// [`MarketError::Directory`] when the directory could not be read.
    pub async fn hire(&self, ctx: &Context, order: &Order) -> Result<Deal, MarketError> {
        hire_cheapest(&self.buyer, &self.client, ctx, order).await
    }
}

async fn hire_cheapest(
    buyer: &Buyer,
    client: &A2aClient,
    ctx: &Context,
    order: &Order,
) -> Result<Deal, MarketError> {
    let Order {
        kind,
        request,
        max_price,
        mode,
        ..
    } = order;
    let (kind, max_price, mode) = (kind.as_str(), *max_price, *mode);
    let mut quotes = quote_all(client, ctx, order).await?;
    quotes.sort_by_key(|q| q.price);
    let cap = quotes.first().map_or(max_price, |q| q.price.min(max_price));
    let negotiated = buyer.hire(ctx, &request.to_string(), kind, cap, mode).await;
    let best = match negotiated {
        Ok(deal) => {
            decline_all(client, &quotes).await;
            return Ok(Deal::Negotiated(deal));
        }
        // Nothing was signed: the best quote may be paid instead.
        Err(
            e @ (negotiation::Error::NoSellers { .. }
            | negotiation::Error::NoAcceptableProposal { .. }),
        ) => {
            if quotes.is_empty() {
                return Err(e.into());
            }
            quotes.remove(0)
        }
        Err(e) => {
            decline_all(client, &quotes).await;
            return Err(e.into());
        }
    };
    decline_all(client, &quotes).await;
    let Quoted {
        peer, hire, quote, ..
    } = best;
    let url = hire.url().to_owned();
    let hired = client
        .accept(hire, quote)
        .await
        .map_err(|e| MarketError::A2a {
            seller: peer.address,
            source: Box::new(e),
        })?;
    let price = hired
        .paid
        .as_ref()
        .map_or(Amount::ZERO, |p| p.payment.payment.amount());
    Ok(Deal::A2a(A2aDeal {
        seller: peer.address,
        url,
        price,
        hired,
    }))
}

/// Quotes from the A2A agents the directory lists for `kind`, usable ones only.
async fn quote_all(
    client: &A2aClient,
    ctx: &Context,
    order: &Order,
) -> Result<Vec<Quoted>, MarketError> {
    let Order {
        id,
        kind,
        request,
        max_price,
        ..
    } = order;
    let (kind, max_price) = (kind.as_str(), *max_price);
    let peers =
        ctx.find_peers(kind, Some(max_price))
            .await
            .map_err(|e| MarketError::Directory {
                kind: kind.to_owned(),
                reason: e.to_string(),
            })?;
    let asks = peers
        .into_iter()
        .filter(|p| p.is_a2a() && p.address != ctx.me())
        .take(MAX_A2A_SELLERS)
        .map(|peer| async move {
            let url = peer.endpoint.clone().unwrap_or_default();
            // One id per seller, so that each quote is its own purchase.
            let hire = Hire::new(url, request.clone())
                .skill(kind)
                .id(format!("{id}-{}", hex_tail(peer.address)))
                .max_price(max_price);
            let answer = client.quote(&hire).await;
            (peer, hire, answer)
        });
    let mut quoted = Vec::new();
    for (peer, hire, answer) in futures::future::join_all(asks).await {
        let url = hire.url();
        match answer {
            Ok(quote) => match (quote.price, quote.payee) {
                (Some(price), Some(payee)) if payee == peer.address => quoted.push(Quoted {
                    peer,
                    hire,
                    quote,
                    price,
                }),
                (Some(_), payee) => {
                    tracing::warn!(target: "agora::a2a", seller = %peer.address, %url,
                        payee = ?payee, "A2A quote passed over: it pays another address than the registry lists");
                    client.decline(&hire, &quote).await;
                }
                (None, _) => quoted.push(Quoted {
                    peer,
                    hire,
                    quote,
                    price: Amount::ZERO,
                }),
            },
            Err(e) => {
                tracing::info!(target: "agora::a2a", seller = %peer.address, %url, error = %e,
                    "A2A quote passed over");
            }
        }
    }
    Ok(quoted)
}

async fn decline_all(client: &A2aClient, quotes: &[Quoted]) {
    futures::future::join_all(quotes.iter().map(|q| client.decline(&q.hire, &q.quote))).await;
}

/// The last 8 hex digits of an address, to tell sellers apart in ids.
fn hex_tail(address: Address) -> String {
    let s = address.to_string();
    s.get(s.len().saturating_sub(8)..)
        .unwrap_or_default()
        .to_lowercase()
}
