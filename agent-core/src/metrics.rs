//! A host's metrics in the Prometheus text exposition format (version 0.0.4), as
//! its port serves them at `/metrics` (the JSON counters stay at `/metrics.json`).
//!
//! Encoded by [`prometheus_client`], the official Rust client, with the standard
//! names and units: counters end in `_total`, durations are `_seconds` histograms,
//! money is in the token's integer base units (`_base_units`). What the host
//! knows:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `agora_agents` | gauge | |
//! | `agora_messages_handled_total` | counter | `agent` |
//! | `agora_messages_sent_total` | counter | `agent` |
//! | `agora_messages_rejected_total` | counter | `agent`, `reason` ([`Rejection::label`]) |
//! | `agora_agent_restarts_total`, `agora_skill_panics_total` | counter | `agent` |
//! | `agora_skill_duration_seconds` | histogram | `agent`, `skill` |
//! | `agora_http_request_duration_seconds` | histogram | `route` (a host route or a mount prefix) |
//! | `agora_payments_total` | counter | `agent`, `outcome` (`signed`, `refused` by the policy, `failed`) |
//! | `agora_policy_spent_daily_base_units` | gauge | `agent` |
//! | `agora_policy_daily_limit_base_units`, `agora_policy_daily_headroom_base_units`, `agora_policy_per_deal_limit_base_units` | gauge | `agent` (only where the policy sets a limit) |
//! | `agora_edge_frames_total`, `agora_edge_frames_malformed_total`, `agora_edge_envelopes_refused_total`, `agora_edge_connections_total`, `agora_edge_connections_refused_total`, `agora_edge_reconnects_total`, `agora_edge_refusals_ignored_total`, `agora_edge_write_timeouts_total`, `agora_edge_routes_evicted_total` | counter | |
//! | `agora_edge_routes_learned` | gauge | |
//!
//! Rates (messages per second) are the scraper's: `rate(agora_messages_sent_total[1m])`.
//! Deals are the skills' business, not the host's: an upper layer adds its own
//! metrics (deals by outcome, say) to the host's registry through
//! [`Host::register_metrics`](crate::Host::register_metrics), and they are served
//! with the rest.
//!
//! [`Rejection::label`]: crate::envelope::Rejection::label

use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::agent::AgentStats;
use crate::transport::EdgeStats;

/// The content type of `/metrics`: the Prometheus text format, version 0.0.4.
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The labels of a rejected message.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RejectionLabels {
    pub(crate) agent: String,
    pub(crate) reason: &'static str,
}

/// The labels of a payment authorization.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PaymentLabels {
    pub(crate) agent: String,
    pub(crate) outcome: &'static str,
}

/// The labels of a skill's handling time.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SkillLabels {
    pub(crate) agent: String,
    pub(crate) skill: &'static str,
}

/// The labels of an HTTP request's handling time.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HttpLabels {
    pub(crate) route: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Buckets from 100 µs to about 52 s, doubling: skill calls run from a table
/// look-up to a model's inference.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 20))
}

/// The metrics of one host: the series its agents and its port update as they
/// go, and whatever upper layers registered. Counters the host already keeps
/// (edge and agent counters, spending) are read when scraped.
pub(crate) struct Metrics {
    registry: Mutex<Registry>,
    pub(crate) rejections: Family<RejectionLabels, Counter>,
    pub(crate) payments: Family<PaymentLabels, Counter>,
    pub(crate) skill_seconds: Histograms<SkillLabels>,
    pub(crate) http_seconds: Histograms<HttpLabels>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let rejections = Family::<RejectionLabels, Counter>::default();
        let payments = Family::<PaymentLabels, Counter>::default();
        let skill_seconds: Histograms<SkillLabels> =
            Family::new_with_constructor(duration_histogram);
        let http_seconds: Histograms<HttpLabels> = Family::new_with_constructor(duration_histogram);
        let mut registry = Registry::default();
        registry.register(
            "agora_messages_rejected",
            "Messages an agent dropped, by reason",
            rejections.clone(),
        );
        registry.register(
            "agora_payments",
            "Payments asked of an agent's spending policy, by outcome",
            payments.clone(),
        );
        registry.register_with_unit(
            "agora_skill_duration",
            "Time a skill took to handle a message or a gateway's call",
            Unit::Seconds,
            skill_seconds.clone(),
        );
        registry.register_with_unit(
            "agora_http_request_duration",
            "Time the host's port took to answer an HTTP request, by route",
            Unit::Seconds,
            http_seconds.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            rejections,
            payments,
            skill_seconds,
            http_seconds,
        }
    }
}

impl Metrics {
    /// Lets `register` add metrics to the registry (see
    /// [`Host::register_metrics`](crate::Host::register_metrics)).
    pub(crate) fn register(&self, register: impl FnOnce(&mut Registry)) {
        register(&mut self.registry.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Counts a rejected message of `agent`.
    pub(crate) fn rejected(&self, agent: &str, reason: &'static str) {
        self.rejections
            .get_or_create(&RejectionLabels {
                agent: agent.to_owned(),
                reason,
            })
            .inc();
    }

    /// The exposition: the registry's series, then those read from `snapshot`.
    pub(crate) fn encode(&self, snapshot: Snapshot) -> String {
        use prometheus_client::encoding::prometheus_text::encode;
        let mut out = String::new();
        let encoded = {
            let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
            encode(&mut out, &registry)
        };
        let mut scrape = Registry::default();
        scrape.register_collector(Box::new(snapshot));
        let encoded = encoded.and_then(|()| encode(&mut out, &scrape));
        if let Err(e) = encoded {
            // Only a label value's encoding can fail, and ours are plain strings.
            tracing::error!(target: "agent::http", error = %e, "metrics not encoded");
            let _ = writeln!(out, "# metrics not encoded: {e}");
        }
        out
    }
}

/// What one agent's counters and spending policy said when scraped.
#[derive(Debug)]
pub(crate) struct AgentSnapshot {
    pub(crate) address: String,
    pub(crate) stats: AgentStats,
    pub(crate) sent: u64,
    pub(crate) policy: Option<PolicySnapshot>,
}

/// An agent's spending in the rolling day, and its limits, in base units.
#[derive(Debug)]
pub(crate) struct PolicySnapshot {
    pub(crate) spent_daily: u128,
    pub(crate) daily: Option<u128>,
    pub(crate) per_deal: Option<u128>,
}

/// The counters the host keeps itself, read at a scrape.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) edge: EdgeStats,
    pub(crate) agents: Vec<AgentSnapshot>,
}

/// Reads one counter of an agent's snapshot.
type Read = fn(&AgentSnapshot) -> u64;

fn policy(a: &AgentSnapshot) -> Option<&PolicySnapshot> {
    a.policy.as_ref()
}

fn gauge_value(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    let c = ConstCounter::new(value);
    c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
}

impl Snapshot {
    /// One series per agent of `value` (agents where it is `None` are left out;
    /// a family with no series at all is not written).
    fn per_agent<M: EncodeMetric>(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        value: impl Fn(&AgentSnapshot) -> Option<M>,
    ) -> std::fmt::Result {
        let values: Vec<(&str, M)> = self
            .agents
            .iter()
            .filter_map(|a| value(a).map(|v| (a.address.as_str(), v)))
            .collect();
        let Some((_, first)) = values.first() else {
            return Ok(());
        };
        let mut family = encoder.encode_descriptor(name, help, None, first.metric_type())?;
        for (agent, v) in &values {
            v.encode(family.encode_family(&[("agent", *agent)])?)?;
        }
        Ok(())
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let e = &mut encoder;
        let agents = ConstGauge::new(i64::try_from(self.agents.len()).unwrap_or(i64::MAX));
        agents.encode(e.encode_descriptor(
            "agora_agents",
            "Agents running on the host.",
            None,
            agents.metric_type(),
        )?)?;
        let count = |v: u64| Some(ConstCounter::new(v));
        let gauge = |v: u128| ConstGauge::new(gauge_value(v));
        let agent_counters: [(&str, &str, Read); 4] = [
            (
                "agora_messages_handled",
                "Messages an agent admitted and handed to a skill or a pending ask.",
                |a| a.stats.handled,
            ),
            (
                "agora_messages_sent",
                "Messages an agent sent (requests, one-way messages and replies).",
                |a| a.sent,
            ),
            (
                "agora_agent_restarts",
                "Times an agent's supervisor restarted it.",
                |a| a.stats.restarts,
            ),
            ("agora_skill_panics", "Skill panics caught.", |a| {
                a.stats.panics
            }),
        ];
        for (name, help, read) in agent_counters {
            self.per_agent(e, name, help, |a| count(read(a)))?;
        }
        self.per_agent(
            e,
            "agora_policy_spent_daily_base_units",
            "Paid in the spending policy's rolling day, in the token's base units.",
            |a| policy(a).map(|p| gauge(p.spent_daily)),
        )?;
        self.per_agent(
            e,
            "agora_policy_daily_limit_base_units",
            "The spending policy's daily limit, in the token's base units.",
            |a| policy(a).and_then(|p| p.daily).map(gauge),
        )?;
        self.per_agent(
            e,
            "agora_policy_daily_headroom_base_units",
            "What the spending policy may still sign in its rolling day, in base units.",
            |a| policy(a).and_then(|p| p.daily.map(|d| gauge(d.saturating_sub(p.spent_daily)))),
        )?;
        self.per_agent(
            e,
            "agora_policy_per_deal_limit_base_units",
            "The spending policy's limit per payment, in the token's base units.",
            |a| policy(a).and_then(|p| p.per_deal).map(gauge),
        )?;
        let edge = &self.edge;
        let edge_counters = [
            (
                "agora_edge_frames",
                "Envelope frames received.",
                edge.frames,
            ),
            (
                "agora_edge_frames_malformed",
                "Frames that were not envelopes.",
                edge.malformed,
            ),
            (
                "agora_edge_envelopes_refused",
                "Envelopes the edge refused (checks failed, timeout, no such agent).",
                edge.refused,
            ),
            (
                "agora_edge_connections",
                "Connections accepted or established.",
                edge.connections,
            ),
            (
                "agora_edge_connections_refused",
                "Connections closed at once for the connection cap.",
                edge.connections_refused,
            ),
            (
                "agora_edge_reconnects",
                "Reconnections of outgoing links.",
                edge.reconnects,
            ),
            (
                "agora_edge_refusals_ignored",
                "Refusal frames ignored (unsigned, misdirected or late).",
                edge.refusals_ignored,
            ),
            (
                "agora_edge_write_timeouts",
                "Connections closed because their peer read nothing within the write timeout.",
                edge.write_timeouts,
            ),
            (
                "agora_edge_routes_evicted",
                "Learned routes forgotten to stay within the host's bound.",
                edge.routes_evicted,
            ),
        ];
        for (name, help, value) in edge_counters {
            counter(e, name, help, value)?;
        }
        let learned = ConstGauge::new(edge.learned_routes);
        learned.encode(e.encode_descriptor(
            "agora_edge_routes_learned",
            "Routes learned from admitted traffic.",
            None,
            learned.metric_type(),
        )?)
    }
}
