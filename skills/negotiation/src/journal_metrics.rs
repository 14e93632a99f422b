//! Payment journal entries by kind, for a host's `/metrics`: [`JournalMetrics`].

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// The labels of a journaled entry.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EntryLabels {
    agent: String,
    kind: &'static str,
}

/// `agora_journal_entries_total{agent, kind}`: the entries agents wrote to their
/// payment journals, by kind (`agreement`, `payment`, `delivery`, `receipt`,
/// `dispute`, `x402_payment`, `x402_delivery`, … see
/// [`journal::KINDS`](crate::journal::KINDS)). Deals paid are the `payment` (and
/// `order`, `x402_payment`) entries, deliveries the `delivery` (`x402_delivery`)
/// ones, disputes the `dispute` ones. An entry already in the journal (a step redone
/// after a crash) is not written again, and not counted again.
///
/// Register it once on a host ([`JournalMetrics::register`], through
/// `Host::register_metrics`) and have each agent's journal count into it
/// ([`SharedJournal::count_entries`](crate::SharedJournal::count_entries)).
#[derive(Clone, Debug, Default)]
pub struct JournalMetrics(Family<EntryLabels, Counter>);

impl JournalMetrics {
    /// No entries counted yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the counter to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "agora_journal_entries",
            "Entries written to agents' payment journals, by kind",
            self.0.clone(),
        );
    }

    /// Counts one entry of `kind` written by `agent`.
    pub(crate) fn written(&self, agent: &str, kind: &'static str) {
        self.0
            .get_or_create(&EntryLabels {
                agent: agent.to_owned(),
                kind,
            })
            .inc();
    }
}
