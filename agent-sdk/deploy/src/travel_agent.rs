//! The travel agent: plans trips for its principals, hiring and paying a weather
//! agent for each.
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
//!   deal after a restart. The principal's reservation stays until the outcome is
//!   known.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ::travel::TravelPlanner;
use agent_sdk::prelude::*;
use agent_sdk::registry::{Discovery, RegistryDirectory};
use llm::{LlmConfig, LlmEngine};
use negotiation::{token_domain, Buyer, BuyerDeal, PaymentMode};
use registry::chain::Addresses;
use wallets::{Journal, Mandates, SpendingPolicy};

use crate::config::AgentConfig;
use crate::messages::{PlanTrip, PlannedTrip};
use crate::{Error, Result, TOKEN};

/// Hiring attempts per trip.
pub const HIRE_ATTEMPTS: u32 = 3;

/// The travel agent's parts.
#[derive(Clone, Debug)]
pub struct TravelAgent {
    planner: TravelPlanner,
    buyer: Buyer,
    /// The principals who may commission trips, and what they spent.
    mandates: Arc<Mandates>,
}

impl TravelAgent {
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
        let engine = load_model(&agent.name, model).await?;
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
    /// the trip; `internal` when no seller could be hired.
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
        let result = self.plan_for(ctx, &req, commission.max_price()).await;
        // What was paid (nothing when the hire failed before paying); an error with
        // money in flight keeps the whole reservation.
        let spent = match &result {
            Ok((_, price)) => Some(*price),
            Err(_) if money_in_flight(ctx) => None,
            Err(_) => Some(Amount::ZERO),
        };
        if let Some(spent) = spent {
            if let Err(e) = self.mandates.settle(&commission, spent) {
                tracing::warn!(target: "agora::agent", error = %e, "recording the principal's spend failed; its reservation stays");
            }
        }
        result.map(|(trip, _)| trip)
    }

    /// Plans the trip and hires a seller for at most `max_price`; the trip and what
    /// was paid.
    async fn plan_for(
        &self,
        ctx: &Context,
        req: &PlanTrip,
        max_price: Amount,
    ) -> Result<(PlannedTrip, Amount), SkillError> {
        let today =
            today(ctx).ok_or_else(|| SkillError::internal("the agent's clock is out of range"))?;
        let mut last = String::new();
        for attempt in 1..=HIRE_ATTEMPTS {
            match self
                .planner
                .plan_and_hire(
                    ctx,
                    &self.buyer,
                    &req.request,
                    today,
                    max_price,
                    PaymentMode::Authorization,
                )
                .await
            {
                Ok(plan) => {
                    let price = plan.deal.price();
                    let trip = PlannedTrip {
                        itinerary: plan.itinerary.text,
                        seller: plan.deal.seller().to_string(),
                        price: price.to_string(),
                        tx_hash: plan.deal.delivery.settlement.tx_hash.to_string(),
                        attempts: attempt,
                    };
                    return Ok((trip, price));
                }
                Err(e) => {
                    last = e.to_string();
                    if money_in_flight(ctx) {
                        // An agreed deal is being paid: never hire a second seller for
                        // it; `resume` finishes it after a restart.
                        break;
                    }
                    if e.is_final() {
                        break;
                    }
                    tracing::warn!(target: "agora::agent", attempt, error = %e, "hiring failed; trying the other sellers");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        Err(SkillError::internal(last))
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

/// Loads `model` on a blocking thread, with every core and two sequences of 1,024
/// tokens.
async fn load_model(agent: &str, model: PathBuf) -> Result<Arc<LlmEngine>> {
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    tracing::info!(target: "agora::agent", agent, model = %model.display(), "loading the model");
    let engine = tokio::task::spawn_blocking(move || {
        LlmEngine::shared(
            LlmConfig::new(model)
                .with_threads(threads)
                .with_max_sequences(2)
                .with_context_per_sequence(1024),
        )
    })
    .await
    .map_err(|e| Error::Composition {
        agent: agent.to_owned(),
        reason: format!("the model loading task failed: {e}"),
    })??;
    Ok(engine)
}
