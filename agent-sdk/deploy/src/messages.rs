//! The requests a deployment's agents serve to their principals.

use agent_sdk::Request;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The travel agent's skill: plan a trip from a request in words, for a principal of
/// the agent. The most it spends comes from the principal's mandate, never from the
/// request, which carries no price.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlanTrip {
    /// The request, e.g. "3 days in Lisbon in July, food and museums".
    pub request: String,
}

/// A planned trip.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedTrip {
    /// The itinerary.
    pub itinerary: String,
    /// The weather agent that was hired and paid.
    pub seller: String,
    /// What it was paid.
    pub price: String,
    /// The settling transaction.
    pub tx_hash: String,
    /// Hiring attempts it took (more than one when a seller failed).
    pub attempts: u32,
}

impl Request for PlanTrip {
    const KIND: &'static str = "travel.Plan";
    type Response = PlannedTrip;
}
