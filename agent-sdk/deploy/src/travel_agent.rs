//! The travel agent: plans trips for its principals, hiring and paying a weather
//! agent for each: the cheapest among the Agora weather agents (through the
//! negotiation) and the A2A agents the registry lists (over A2A, paid with x402), see
//! [`a2a::market::Market`]. Both pay through the agent's one spending policy and
//! write to its one journal.
//!
//! The rules of paid work:
//!
//! - **Only for a principal.** The sender of a [`PlanTrip`] must be one of the agent's
//!   `principals` in agents.toml, with a mandate that covers the skill; anyone else is
//!   refused with the reason, and nothing is spent ([`wallets::Mandates`]).
//! - **The mandate sets the price.** The most a trip may spend is the mandate's
//!   `max_per_request`, or what is left of its daily budget, never anything the
//!   request says (it carries no price).
//! - **Never hire twice while money is in flight.** When a hire fails before anything
//!   was agreed (the chosen seller died, timed out or declined), the agent tries again
//!   and the sellers that still answer win; once a deal is agreed and being paid, a
//!   failure does not start another hire, and [`TravelAgent::resume`] finishes that
//!   deal after a restart. An A2A hire that failed after its quote is not retried
//!   either (its payment, if one was made, is kept under the trip's id and is never
//!   made twice). A forecast that does not fit the trip fails the trip, and what was
//!   paid for it counts. The principal's reservation stays until the outcome is
//!   known.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ::travel::TravelPlanner;
use a2a::client::A2aClient;
use a2a::market::{Deal, Market, MarketError, Order};
use agent_sdk::prelude::*;
use agent_sdk::registry::{Discovery, RegistryDirectory};
use negotiation::{token_domain, Buyer, BuyerDeal, PaymentMode};
use registry::chain::Addresses;
use wallets::{Journal, Mandates, SpendingPolicy};
use weather::FORECAST_KIND;
use x402::{BuyerConfig, X402Buyer};

use crate::config::AgentConfig;
use crate::messages::{PlanTrip, PlannedTrip};
use crate::{Result, TOKEN};

/// Hiring attempts per trip.
pub const HIRE_ATTEMPTS: u32 = 3;

/// The travel agent's parts.
#[derive(Clone, Debug)]
pub struct TravelAgent {
    planner: TravelPlanner,
    buyer: Buyer,
    /// Hires the Agora sellers through `buyer`, and the A2A agents the registry lists
    /// through an A2A client paying with the same policy and journal.
    market: Market,
    /// The principals who may commission trips, and what they spent.
    mandates: Arc<Mandates>,
}

impl TravelAgent {
    /// The travel agent's journal (its buyer's), shared.
    pub(crate) fn journal(&self) -> negotiation::SharedJournal {
        self.buyer.journal()
    }

    /// Loads the model, opens the agent's spending policy (pinned to the deployment's
    /// token and contracts), journal and mandates under `dir`, and adds the
    /// `travel.Plan` skill and the registry directory to `builder`.
    ///
    /// # Errors
    /// The errors of loading the model and opening the policy, journal and mandates.
    pub async fn install(
        builder: AgentBuilder,
        agent: &AgentConfig,
        addresses: &Addresses,
        wallet: Arc<Wallet>,
        dir: &Path,
        discovery: Arc<Discovery>,
        model: PathBuf,
    ) -> Result<(AgentBuilder, Self)> {
        let engine = crate::llm_agent::load_model(&agent.name, model, 2, 1024).await?;
        let planner = TravelPlanner::new(engine)?;
        let policy = Arc::new(addresses.pin(
            SpendingPolicy::open(dir.join("policy"), wallet.clone(), agent.policy.clone())?,
            TOKEN,
        ));
        let buyer = Buyer::new(
            wallet.clone(),
            token_domain(addresses, TOKEN),
            Journal::open(dir.join("journal"), wallet)?,
        );
        let x402 = X402Buyer::open(
            policy.clone(),
            buyer.journal(),
            BuyerConfig::new(dir.join("x402-buyer")),
        )
        .map_err(Box::new)?;
        let market = Market::new(buyer.clone(), A2aClient::new().with_buyer(Arc::new(x402)));
        if agent.principals.is_empty() {
            tracing::warn!(target: "agora::agent", agent = %agent.name,
                "no principals are configured: every travel.Plan will be refused");
        }
        let mandates = Arc::new(Mandates::open(
            dir.join("mandates"),
            agent.principals.clone(),
        )?);
        let travel = Self {
            planner,
            buyer,
            market,
            mandates,
        };
        let skill = travel.clone();
        let builder = builder
            .policy(policy)
            .directory(RegistryDirectory::new(discovery))
            .skill(skill_fn(move |ctx: Context, req: PlanTrip| {
                let t = skill.clone();
                async move { t.plan(&ctx, req).await }
            }));
        Ok((builder, travel))
    }

    /// Finishes deals a previous run left agreed but unpaid or undelivered.
    pub async fn resume(&self, handle: &AgentHandle) {
        match self.buyer.resume(&handle.context()).await {
            Ok(outcomes) => {
                for o in outcomes {
                    match o {
                        Ok(deal) => {
                            tracing::info!(target: "agora::agent", seller = %deal.seller(), price = %deal.price(), "resumed deal completed");
                        }
                        Err(e) => {
                            tracing::warn!(target: "agora::agent", error = %e, "resumed deal failed");
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(target: "agora::agent", error = %e, "resuming deals failed")
            }
        }
    }

    /// Serves one [`PlanTrip`]: checks the sender's mandate, plans and hires within
    /// it, and records what was spent against it.
    ///
    /// # Errors
    /// `refused` when the sender is not a principal or its mandate does not cover
    /// the trip; `failed`, with the reason, when it could not be planned or no
    /// seller could be hired.
    pub async fn plan(&self, ctx: &Context, req: PlanTrip) -> Result<PlannedTrip, SkillError> {
        let refused = |e: wallets::Error| SkillError::new("refused", e.to_string());
        let (Some(principal), Some(dialogue)) = (ctx.sender(), ctx.dialogue()) else {
            return Err(SkillError::new(
                "refused",
                "travel.Plan spends money and needs a signed request from a principal",
            ));
        };
        let commission = self
            .mandates
            .commission(
                principal,
                PlanTrip::KIND,
                &format!("{principal}:{dialogue}"),
            )
            .map_err(refused)?;
        // The hire's id, one per commission: an A2A payment retried under it is made
        // once. Each principal's dialogues are its own.
        let id = format!(
            "trip-{}",
            wallets::keccak256(format!("{principal}:{dialogue}"))
                .to_string()
                .trim_start_matches("0x")
        );
        let (result, spent) = self.plan_for(ctx, &req, &id, commission.max_price()).await;
        // What was paid (nothing when the hire failed before paying); `None` while
        // money may be in flight, which keeps the whole reservation.
        if let Some(spent) = spent {
            if let Err(e) = self.mandates.settle(&commission, spent) {
                tracing::warn!(target: "agora::agent", error = %e, "recording the principal's spend failed; its reservation stays");
            }
        }
        result
    }

    /// Plans the trip and hires a seller for at most `max_price` under the hire id
    /// `id`: the trip, and what was paid (`None` when it cannot be known yet).
    async fn plan_for(
        &self,
        ctx: &Context,
        req: &PlanTrip,
        id: &str,
        max_price: Amount,
    ) -> (Result<PlannedTrip, SkillError>, Option<Amount>) {
        // Only a principal gets this far: the reasons are theirs to read in full
        // (`failed`, not `internal`, which would leave the host without its message).
        let nothing = |e: String| (Err(SkillError::failed(e)), Some(Amount::ZERO));
        let Some(today) = today(ctx) else {
            return nothing("the agent's clock is out of range".into());
        };
        let trip = match self.planner.plan_trip(&req.request, today).await {
            Ok(trip) => trip,
            Err(e) => return nothing(e.to_string()),
        };
        let order = match trip.forecast_query().map(serde_json::to_value) {
            Ok(Ok(request)) => Order {
                id: id.to_owned(),
                kind: FORECAST_KIND.to_owned(),
                request,
                max_price,
                mode: PaymentMode::Authorization,
            },
            Ok(Err(e)) => return nothing(format!("the forecast query does not serialize: {e}")),
            Err(e) => return nothing(e.to_string()),
        };
        let mut last = String::new();
        for attempt in 1..=HIRE_ATTEMPTS {
            let hired = self.market.hire(ctx, &order).await;
            let deal = match hired {
                Ok(deal) => deal,
                Err(e) => {
                    last = e.to_string();
                    let retry = match &e {
                        MarketError::Negotiation(n) => !n.is_final(),
                        MarketError::Directory { .. } => true,
                        // After a quote, money may have moved: never another seller.
                        _ => false,
                    };
                    let in_flight = money_in_flight(ctx) || matches!(e, MarketError::A2a { .. });
                    if in_flight {
                        // An agreed or quoted deal is being paid: never hire a second
                        // seller for it; `resume` finishes a negotiated one after a
                        // restart, and the A2A payment is kept under the trip's id.
                        return (Err(SkillError::failed(last)), None);
                    }
                    if !retry {
                        break;
                    }
                    tracing::warn!(target: "agora::agent", attempt, error = %e, "hiring failed; trying the other sellers");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let spent = Some(deal.price());
            let forecast = match trip.read_forecast(deal.result()) {
                Ok(forecast) => forecast,
                Err(reason) => {
                    let e = format!("weather agent {}: {reason}", deal.seller());
                    return (Err(SkillError::failed(e)), spent);
                }
            };
            let itinerary = match self.planner.write_itinerary(&trip, &forecast).await {
                Ok(itinerary) => itinerary,
                Err(e) => return (Err(SkillError::failed(e.to_string())), spent),
            };
            let trip = PlannedTrip {
                itinerary: itinerary.text,
                seller: deal.seller().to_string(),
                price: deal.price().to_string(),
                tx_hash: tx_hash(&deal),
                attempts: attempt,
            };
            return (Ok(trip), spent);
        }
        nothing(last)
    }
}

/// The transaction that paid `deal` (`""` for a free A2A skill).
fn tx_hash(deal: &Deal) -> String {
    match deal {
        Deal::Negotiated(d) => d.delivery.settlement.tx_hash.to_string(),
        Deal::A2a(d) => d
            .hired
            .paid
            .as_ref()
            .and_then(|p| p.receipts.first())
            .map(|r| r.transaction.clone())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// The date (UTC) by the agent's clock; `None` when the clock is out of range.
pub fn today(ctx: &Context) -> Option<chrono::NaiveDate> {
    let now = i64::try_from(ctx.clock().unix_secs()).ok()?;
    chrono::DateTime::from_timestamp(now, 0).map(|t| t.date_naive())
}

/// Whether a deal of the agent's buyer is agreed and not yet over (accepted, being
/// paid, or delivered and not yet receipted).
pub fn money_in_flight(ctx: &Context) -> bool {
    ctx.open_dialogues().is_ok_and(|open| {
        open.into_iter().any(|(_, record)| {
            matches!(
                serde_json::from_value::<BuyerDeal>(record.state),
                Ok(BuyerDeal::Accepted { .. }
                    | BuyerDeal::Paying { .. }
                    | BuyerDeal::Delivered { .. })
            )
        })
    })
}
