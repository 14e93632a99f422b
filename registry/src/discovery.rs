//! Discovery: the registry's events synced into a local sled cache.
//!
//! [`Discovery::sync`] reads `AgentRegistry` and `Reputation` logs from the last
//! synced block to the head, in chunks, and applies each chunk to the cache in one
//! atomic batch together with the new sync height, so a crash mid-sync resumes from
//! the last whole chunk. [`Discovery::find`] answers "agents offering skill X at a
//! price ≤ P, active, ranked by reputation" from the cache alone, through an index
//! keyed by skill and price.
//!
//! Ranking: a Bayesian average of payment-backed feedback scores,
//! `(total + 50·2) / (count + 2)`, so an agent with no feedback starts at 50 rather
//! than never being hired; ties go to the lower price, then the lower address. Like
//! Bittensor's quality-weighted rewards, only work someone paid for earns weight:
//!
//! - a score is 0 to 100 from one settled deal: `Reputation`'s `FeedbackGiven` (per
//!   settled escrow, from its buyer), or an ERC-8004 entry that `SettledFeedback`
//!   wrote to the `ReputationRegistry` (per settled escrow or channel that paid the
//!   agent's wallet) with tag1 "starred", no decimals and a value of 0 to 100; other
//!   ERC-8004 entries, and every entry by any other client, do not count;
//! - each deal counts once: an escrow rated through both contracts counts the first
//!   rating synced; a revoked `SettledFeedback` rating stops counting (the deal stays
//!   used).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ethers::abi::RawLog;
use ethers::contract::EthLogDecode;
use ethers::providers::{Http, Middleware, Provider};
use ethers::types::{Address as EAddress, Filter, U256 as EU256};
use serde::{Deserialize, Serialize};
use wallets::Amount;

use crate::chain::bindings::agent_registry::AgentRegistryEvents;
use crate::chain::bindings::reputation::FeedbackGivenFilter;
use crate::chain::bindings::reputation_registry::NewFeedbackFilter;
use crate::chain::bindings::settled_feedback::SettledFeedbackEvents;
use crate::chain::{skill_name, Addresses, AgentRegistry};

/// Blocks asked for in the first `eth_getLogs` call of a sync.
const CHUNK: u64 = 2_000;
/// The widest range asked for, however sparse the logs.
const MAX_CHUNK: u64 = 100_000;
/// A chunk with fewer logs than this lets the next one be twice as wide.
const SPARSE_LOGS: usize = 1_000;
/// `SettledFeedback.DealKind.Escrow`; `Reputation` rates escrows too.
const ESCROW: u8 = 0;

/// `d/` ‖ deal kind ‖ deal id: the deal's rating counts (set once, kept).
fn deal_key(kind: u8, deal_id: &[u8; 32]) -> Vec<u8> {
    k(b"d/", &[&[kind], deal_id])
}

/// `s/` ‖ agent id (32, BE) ‖ feedback index (8, BE): the seller (20) and score (1) a
/// `SettledFeedback` entry added, until it is revoked.
fn entry_key(agent_id: EU256, feedback_index: u64) -> Vec<u8> {
    let mut id = [0u8; 32];
    agent_id.to_big_endian(&mut id);
    k(b"s/", &[&id, &feedback_index.to_be_bytes()])
}

/// An ERC-8004 entry's score when it is a "starred" rating of 0 to 100 without
/// decimals (the convention Agora's buyers rate with).
fn starred_score(f: &NewFeedbackFilter) -> Option<u64> {
    if f.tag_1 != "starred" || f.value_decimals != 0 || !(0..=100).contains(&f.value) {
        return None;
    }
    u64::try_from(f.value).ok()
}

/// Feedback bookkeeping of one chunk: deal keys newly rated, and `SettledFeedback`
/// entries added (`Some`) or revoked (`None`).
#[derive(Debug, Default)]
struct Ratings {
    deals: std::collections::HashSet<Vec<u8>>,
    entries: HashMap<Vec<u8>, Option<Vec<u8>>>,
}
/// Prior mean and weight of the reputation score.
const PRIOR_SCORE: u64 = 50;
const PRIOR_WEIGHT: u64 = 2;

/// Errors of discovery.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The node failed.
    #[error("node: {0}")]
    Node(String),
    /// The cache could not be read or written.
    #[error("discovery cache {path}: {source}")]
    Storage {
        /// The cache directory.
        path: PathBuf,
        /// The sled error.
        #[source]
        source: sled::Error,
    },
    /// A cached record did not decode, or the cache belongs to other contracts.
    #[error("discovery cache {path}: {reason}")]
    Corrupt {
        /// The cache directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

type Result<T, E = DiscoveryError> = std::result::Result<T, E>;

/// One service an agent sells.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceOffer {
    /// The skill tag.
    pub skill: String,
    /// Price per unit.
    pub price: Amount,
    /// What one unit is ("forecast", "1k tokens", ...).
    pub unit: String,
}

/// Everything the registry's events say about an agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// The agent's wallet.
    pub address: EAddress,
    /// Where it listens.
    pub endpoint: String,
    /// Its agent card.
    pub card_uri: String,
    /// SHA-256 of its model file (zero if none).
    pub model_fingerprint: [u8; 32],
    /// What it sells.
    pub services: Vec<ServiceOffer>,
    /// Stake in base units.
    pub stake: u128,
    /// Stake requested for withdrawal (not bonded while the request is live).
    pub pending_withdrawal: u128,
    /// When the pending withdrawal can be taken (unix seconds).
    pub withdrawal_ready_at: u64,
    /// Suspended by the governor.
    pub suspended: bool,
    /// Number of feedback entries.
    pub feedback_count: u64,
    /// Sum of feedback scores (0–100 each).
    pub feedback_total: u64,
}

impl AgentRecord {
    fn new(address: EAddress) -> Self {
        Self {
            address,
            endpoint: String::new(),
            card_uri: String::new(),
            model_fingerprint: [0; 32],
            services: vec![],
            stake: 0,
            pending_withdrawal: 0,
            withdrawal_ready_at: 0,
            suspended: false,
            feedback_count: 0,
            feedback_total: 0,
        }
    }

    /// The reputation score used for ranking, 0–100 (see the module docs).
    pub fn score(&self) -> f64 {
        (self.feedback_total + PRIOR_SCORE * PRIOR_WEIGHT) as f64
            / (self.feedback_count + PRIOR_WEIGHT) as f64
    }
}

/// An answer to [`Discovery::find`].
#[derive(Clone, Debug, PartialEq)]
pub struct Offer {
    /// The seller.
    pub agent: AgentRecord,
    /// The matching service.
    pub service: ServiceOffer,
    /// The seller's reputation score.
    pub score: f64,
}

/// Registry parameters that affect whether an agent is listed.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Params {
    min_stake: u128,
    withdrawal_window: u64,
}

/// The discovery cache of one deployment.
#[derive(Debug)]
pub struct Discovery {
    provider: Provider<Http>,
    addresses: Addresses,
    path: PathBuf,
    db: sled::Db,
    params: Params,
}

fn k(prefix: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// `i/` ‖ skill (32) ‖ price (16, BE) ‖ agent (20): the lookup index.
fn index_key(skill: &[u8; 32], price: u128, agent: &EAddress) -> Vec<u8> {
    k(b"i/", &[skill, &price.to_be_bytes(), agent.as_bytes()])
}

fn to_u128(v: EU256) -> u128 {
    if v.bits() > 128 {
        u128::MAX
    } else {
        v.as_u128()
    }
}

impl Discovery {
    /// Opens the cache at `path` for the contracts at `addresses`, reading the
    /// registry's listing parameters from the node.
    ///
    /// # Errors
    /// [`DiscoveryError::Node`] if the node cannot be reached, storage errors, or
    /// [`DiscoveryError::Corrupt`] if the cache was made for other contracts.
    pub async fn open(path: impl AsRef<Path>, rpc_url: &str, addresses: Addresses) -> Result<Self> {
        let path = path.as_ref().to_owned();
        let provider = Provider::<Http>::try_from(rpc_url)
            .map_err(|e| DiscoveryError::Node(format!("{rpc_url}: {e}")))?;
        let registry = AgentRegistry::new(addresses.registry, Arc::new(provider.clone()));
        let node = |e: ethers::contract::ContractError<Provider<Http>>| {
            DiscoveryError::Node(e.to_string())
        };
        let params = Params {
            min_stake: to_u128(registry.min_stake().call().await.map_err(node)?),
            withdrawal_window: registry.withdrawal_window().call().await.map_err(node)?,
        };
        let db = wallets::store::open(&path).map_err(|source| DiscoveryError::Storage {
            path: path.clone(),
            source,
        })?;
        let discovery = Self {
            provider,
            addresses,
            path,
            db,
            params,
        };
        let stored = discovery.get(b"x/addresses")?;
        match stored {
            Some(bytes) => {
                let stored: Addresses = discovery.decode(&bytes)?;
                // A cache made before the deployment gained its ERC-8004 or
                // verified-inference contracts (which discovery does not read) stays
                // good: the contracts it lacks are filled in, and the rest must match.
                let fill = |old: EAddress, new: EAddress| if old.is_zero() { new } else { old };
                let upgraded = Addresses {
                    identity_registry: fill(stored.identity_registry, addresses.identity_registry),
                    reputation_registry: fill(
                        stored.reputation_registry,
                        addresses.reputation_registry,
                    ),
                    settled_feedback: fill(stored.settled_feedback, addresses.settled_feedback),
                    model_registry: fill(stored.model_registry, addresses.model_registry),
                    inference_oracle: fill(stored.inference_oracle, addresses.inference_oracle),
                    ..stored
                };
                if upgraded == addresses && stored != addresses {
                    let json = serde_json::to_vec(&addresses).map_err(|e| discovery.corrupt(e))?;
                    discovery
                        .db
                        .insert(b"x/addresses", json)
                        .map_err(|e| discovery.storage(e))?;
                } else if stored != addresses {
                    return Err(DiscoveryError::Corrupt {
                        path: discovery.path.clone(),
                        reason: format!(
                            "cache is for registry {:?} on chain {}, not {:?} on chain {}",
                            stored.registry,
                            stored.chain_id,
                            addresses.registry,
                            addresses.chain_id
                        ),
                    });
                }
            }
            None => {
                let json = serde_json::to_vec(&addresses).map_err(|e| discovery.corrupt(e))?;
                discovery
                    .db
                    .insert(b"x/addresses", json)
                    .map_err(|e| discovery.storage(e))?;
            }
        }
        Ok(discovery)
    }

    fn storage(&self, source: sled::Error) -> DiscoveryError {
        DiscoveryError::Storage {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, reason: impl ToString) -> DiscoveryError {
        DiscoveryError::Corrupt {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>> {
        self.db.get(key).map_err(|e| self.storage(e))
    }

    fn decode<T: for<'de> Deserialize<'de>>(&self, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| self.corrupt(e))
    }

    /// The last block whose events are in the cache.
    ///
    /// # Errors
    /// Storage errors.
    pub fn synced_to(&self) -> Result<Option<u64>> {
        Ok(self
            .get(b"x/synced")?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes)))
    }

    /// Reads new events up to the head and applies them; returns the number of logs.
    ///
    /// Logs are read in ranges of blocks that adapt to the node: a range the node
    /// refuses (hosted nodes cap a `getLogs` answer's size or block range) is halved
    /// and asked again, down to one block, and no later range of this sync is as wide
    /// again; a range that came back sparse lets the next one be twice as wide (up
    /// to 100,000 blocks), so long empty stretches of a fast chain cost few calls.
    ///
    /// # Errors
    /// [`DiscoveryError::Node`] if the node fails, or refuses a single block's logs
    /// (the cache keeps every whole range applied before the failure), storage
    /// errors.
    pub async fn sync(&self) -> Result<usize> {
        self.sync_with_progress(|_, _| {}).await
    }

    /// [`Discovery::sync`], calling `progress(synced_to, head)` before the first
    /// chunk and after each one, so a caller can show how far the sync is.
    ///
    /// # Errors
    /// As [`Discovery::sync`].
    pub async fn sync_with_progress(&self, mut progress: impl FnMut(u64, u64)) -> Result<usize> {
        let head = self
            .provider
            .get_block_number()
            .await
            .map_err(|e| DiscoveryError::Node(format!("eth_blockNumber: {e}")))?
            .as_u64();
        let mut from = self
            .synced_to()?
            .map_or(self.addresses.deployed_at, |n| n + 1);
        let mut applied = 0;
        progress(from.saturating_sub(1), head);
        // Blocks asked for next, and the width of the narrowest range refused (later
        // ranges stay narrower).
        let (mut span, mut refused) = (CHUNK, u64::MAX);
        while from <= head {
            let to = from.saturating_add(span - 1).min(head);
            let mut contracts = vec![self.addresses.registry, self.addresses.reputation];
            if self.addresses.has_erc8004() {
                contracts.extend([
                    self.addresses.reputation_registry,
                    self.addresses.settled_feedback,
                ]);
            }
            let filter = Filter::new()
                .address(contracts)
                .from_block(from)
                .to_block(to);
            let logs = match self.provider.get_logs(&filter).await {
                Ok(logs) => logs,
                Err(e) if to > from => {
                    // Too wide for this node (or a passing failure): narrower.
                    refused = refused.min(to - from + 1);
                    span = (to - from).div_ceil(2).max(1);
                    tracing::debug!(target: "registry::discovery", from, to, error = %e,
                        next_span = span, "eth_getLogs refused; asking for a narrower range");
                    continue;
                }
                Err(e) => {
                    return Err(DiscoveryError::Node(format!(
                        "eth_getLogs {from}..={to}: {e}"
                    )))
                }
            };
            applied += logs.len();
            self.apply(&logs, to)?;
            progress(to, head);
            from = to + 1;
            if logs.len() < SPARSE_LOGS {
                span = span
                    .saturating_mul(2)
                    .min(MAX_CHUNK)
                    .min(refused - 1)
                    .max(1);
            }
        }
        Ok(applied)
    }

    /// Applies one chunk of logs and the new sync height in one batch.
    fn apply(&self, logs: &[ethers::types::Log], synced: u64) -> Result<()> {
        let mut records: HashMap<EAddress, AgentRecord> = HashMap::new();
        let mut batch = sled::Batch::default();
        // Feedback bookkeeping of this chunk, not yet in the cache.
        let mut ratings = Ratings::default();
        // The ERC-8004 entry `SettledFeedback` just wrote, which its own event (next in
        // the same transaction) ties to a deal and the agent's wallet.
        let mut pending: Option<(Option<ethers::types::H256>, NewFeedbackFilter)> = None;
        for log in logs {
            let raw = RawLog {
                topics: log.topics.clone(),
                data: log.data.to_vec(),
            };
            if log.address == self.addresses.reputation {
                if let Ok(f) = FeedbackGivenFilter::decode_log(&raw) {
                    if self.count_deal(&mut ratings, &deal_key(ESCROW, &f.escrow_id))? {
                        let r = self.record(&mut records, f.seller)?;
                        r.feedback_count += 1;
                        r.feedback_total += u64::from(f.score);
                    }
                }
                continue;
            }
            if log.address == self.addresses.reputation_registry {
                pending = NewFeedbackFilter::decode_log(&raw)
                    .ok()
                    .filter(|f| f.client_address == self.addresses.settled_feedback)
                    .map(|f| (log.transaction_hash, f));
                continue;
            }
            if log.address == self.addresses.settled_feedback {
                match SettledFeedbackEvents::decode_log(&raw) {
                    Ok(SettledFeedbackEvents::SettledFeedbackGivenFilter(e)) => {
                        let entry = pending.take().filter(|(tx, f)| {
                            *tx == log.transaction_hash
                                && f.agent_id == e.agent_id
                                && f.feedback_index == e.feedback_index
                        });
                        let Some(score) = entry.and_then(|(_, f)| starred_score(&f)) else {
                            continue;
                        };
                        if self.count_deal(&mut ratings, &deal_key(e.kind, &e.deal_id))? {
                            let r = self.record(&mut records, e.seller)?;
                            r.feedback_count += 1;
                            r.feedback_total += score;
                            let mut value = e.seller.as_bytes().to_vec();
                            value.push(u8::try_from(score).unwrap_or(u8::MAX));
                            ratings
                                .entries
                                .insert(entry_key(e.agent_id, e.feedback_index), Some(value));
                        }
                    }
                    Ok(SettledFeedbackEvents::SettledFeedbackRevokedFilter(e)) => {
                        let key = entry_key(e.agent_id, e.feedback_index);
                        if let Some((seller, score)) = self.counted_entry(&ratings, &key)? {
                            let r = self.record(&mut records, seller)?;
                            r.feedback_count = r.feedback_count.saturating_sub(1);
                            r.feedback_total = r.feedback_total.saturating_sub(score);
                            ratings.entries.insert(key, None);
                        }
                    }
                    _ => {}
                }
                continue;
            }
            let Ok(event) = AgentRegistryEvents::decode_log(&raw) else {
                tracing::warn!(target: "registry::discovery", tx = ?log.transaction_hash, "undecodable registry log skipped");
                continue;
            };
            use AgentRegistryEvents as E;
            match event {
                E::AgentRegisteredFilter(e) => {
                    let r = self.record(&mut records, e.agent)?;
                    r.endpoint = e.endpoint;
                    r.card_uri = e.card_uri;
                    r.model_fingerprint = e.model_fingerprint;
                }
                E::AgentUpdatedFilter(e) => {
                    let r = self.record(&mut records, e.agent)?;
                    r.endpoint = e.endpoint;
                    r.card_uri = e.card_uri;
                    r.model_fingerprint = e.model_fingerprint;
                }
                E::ServicesReplacedFilter(e) => {
                    let r = self.record(&mut records, e.agent)?;
                    r.services = e
                        .services
                        .into_iter()
                        .map(|s| ServiceOffer {
                            skill: skill_name(&s.skill),
                            price: Amount::from_base_units(to_u128(s.price)),
                            unit: s.unit,
                        })
                        .collect();
                }
                E::ServiceSetFilter(e) => {
                    let r = self.record(&mut records, e.agent)?;
                    let offer = ServiceOffer {
                        skill: skill_name(&e.skill),
                        price: Amount::from_base_units(to_u128(e.price)),
                        unit: e.unit,
                    };
                    match r.services.iter_mut().find(|s| s.skill == offer.skill) {
                        Some(s) => *s = offer,
                        None => r.services.push(offer),
                    }
                }
                E::ServiceRemovedFilter(e) => {
                    let r = self.record(&mut records, e.agent)?;
                    let skill = skill_name(&e.skill);
                    r.services.retain(|s| s.skill != skill);
                }
                E::StakeAddedFilter(e) => {
                    self.record(&mut records, e.agent)?.stake = to_u128(e.stake)
                }
                E::StakeWithdrawalRequestedFilter(e) => {
                    let r = self.record(&mut records, e.agent)?;
                    r.pending_withdrawal = to_u128(e.amount);
                    r.withdrawal_ready_at = e.ready_at;
                }
                E::StakeWithdrawalCancelledFilter(e) => {
                    self.record(&mut records, e.agent)?.pending_withdrawal = 0;
                }
                E::StakeWithdrawnFilter(e) => {
                    let r = self.record(&mut records, e.agent)?;
                    r.stake = to_u128(e.stake);
                    r.pending_withdrawal = 0;
                }
                E::StakeSlashedFilter(e) => {
                    let r = self.record(&mut records, e.agent)?;
                    r.stake = to_u128(e.stake);
                    r.pending_withdrawal = to_u128(e.pending_withdrawal);
                }
                E::AgentSuspendedFilter(e) => self.record(&mut records, e.agent)?.suspended = true,
                E::AgentReinstatedFilter(e) => {
                    self.record(&mut records, e.agent)?.suspended = false
                }
                E::ModelSuspendedFilter(e) => {
                    batch.insert(k(b"m/", &[&e.model_fingerprint]), &[1u8]);
                }
                E::ModelReinstatedFilter(e) => batch.remove(k(b"m/", &[&e.model_fingerprint])),
                _ => {}
            }
        }
        for (addr, record) in records {
            // Re-index: drop the old record's entries, add the new ones.
            if let Some(old) = self.agent(addr)? {
                for s in &old.services {
                    if let Ok(tag) = crate::chain::skill_tag(&s.skill) {
                        batch.remove(index_key(&tag, s.price.base_units(), &addr));
                    }
                }
            }
            for s in &record.services {
                if let Ok(tag) = crate::chain::skill_tag(&s.skill) {
                    batch.insert(index_key(&tag, s.price.base_units(), &addr), &[]);
                }
            }
            let json = serde_json::to_vec(&record).map_err(|e| self.corrupt(e))?;
            batch.insert(k(b"a/", &[addr.as_bytes()]), json);
        }
        for key in ratings.deals {
            batch.insert(key, &[1u8]);
        }
        for (key, value) in ratings.entries {
            match value {
                Some(v) => batch.insert(key, v),
                None => batch.remove(key),
            }
        }
        batch.insert(b"x/synced".as_slice(), synced.to_be_bytes().as_slice());
        self.db.apply_batch(batch).map_err(|e| self.storage(e))?;
        self.db.flush().map_err(|e| self.storage(e))?;
        Ok(())
    }

    /// Marks a deal as rated; `false` if it was rated before (in the cache or this
    /// chunk), so that each deal counts once.
    fn count_deal(&self, ratings: &mut Ratings, key: &[u8]) -> Result<bool> {
        if ratings.deals.contains(key) || self.get(key)?.is_some() {
            return Ok(false);
        }
        ratings.deals.insert(key.to_vec());
        Ok(true)
    }

    /// The (seller, score) a counted `SettledFeedback` entry added, if it still counts.
    fn counted_entry(&self, ratings: &Ratings, key: &[u8]) -> Result<Option<(EAddress, u64)>> {
        let value = match ratings.entries.get(key) {
            Some(v) => v.clone(),
            None => self.get(key)?.map(|v| v.to_vec()),
        };
        Ok(value.and_then(|v| {
            let (seller, score) = (v.get(..20)?, v.get(20)?);
            Some((EAddress::from_slice(seller), u64::from(*score)))
        }))
    }

    fn record<'a>(
        &self,
        records: &'a mut HashMap<EAddress, AgentRecord>,
        addr: EAddress,
    ) -> Result<&'a mut AgentRecord> {
        use std::collections::hash_map::Entry;
        Ok(match records.entry(addr) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => {
                v.insert(self.agent(addr)?.unwrap_or_else(|| AgentRecord::new(addr)))
            }
        })
    }

    /// The cached record of `agent`.
    ///
    /// # Errors
    /// Storage or decoding errors.
    pub fn agent(&self, agent: EAddress) -> Result<Option<AgentRecord>> {
        self.get(&k(b"a/", &[agent.as_bytes()]))?
            .map(|v| self.decode(&v))
            .transpose()
    }

    /// The cached record of the agent with wallet `agent`.
    ///
    /// # Errors
    /// Storage or decoding errors.
    pub fn agent_at(&self, agent: wallets::Address) -> Result<Option<AgentRecord>> {
        self.agent(EAddress::from(agent.0))
    }

    /// Whether a model fingerprint is suspended (the kill switch).
    ///
    /// # Errors
    /// Storage errors.
    pub fn model_suspended(&self, fingerprint: &[u8; 32]) -> Result<bool> {
        Ok(self.get(&k(b"m/", &[fingerprint]))?.is_some())
    }

    /// Whether the registry lists `r` now: not suspended, model not suspended, and
    /// bonded stake at least the registry's minimum.
    ///
    /// # Errors
    /// Storage errors.
    pub fn is_active(&self, r: &AgentRecord) -> Result<bool> {
        if r.suspended || self.model_suspended(&r.model_fingerprint)? {
            return Ok(false);
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let request_live = r.pending_withdrawal > 0
            && now
                < r.withdrawal_ready_at
                    .saturating_add(self.params.withdrawal_window);
        let bonded = if request_live {
            r.stake.saturating_sub(r.pending_withdrawal)
        } else {
            r.stake
        };
        Ok(bonded >= self.params.min_stake)
    }

    /// Active agents offering `skill` at a price ≤ `max_price`, best first, from the
    /// cache alone.
    ///
    /// # Errors
    /// Storage or decoding errors; an invalid skill tag gives an empty answer.
    pub fn find(&self, skill: &str, max_price: Amount) -> Result<Vec<Offer>> {
        let Ok(tag) = crate::chain::skill_tag(skill) else {
            return Ok(vec![]);
        };
        let start = k(b"i/", &[&tag]);
        let end = index_key(&tag, max_price.base_units(), &EAddress::repeat_byte(0xff));
        let mut offers = Vec::new();
        for item in self.db.range(start..=end) {
            let (key, _) = item.map_err(|e| self.storage(e))?;
            let addr =
                EAddress::from_slice(key.get(key.len().saturating_sub(20)..).unwrap_or_default());
            let Some(agent) = self.agent(addr)? else {
                continue;
            };
            if !self.is_active(&agent)? {
                continue;
            }
            let Some(service) = agent.services.iter().find(|s| s.skill == skill).cloned() else {
                continue;
            };
            offers.push(Offer {
                score: agent.score(),
                agent,
                service,
            });
        }
        offers.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.service.price.cmp(&b.service.price))
                .then(a.agent.address.cmp(&b.agent.address))
        });
        Ok(offers)
    }

    /// All cached agents, listed or not.
    ///
    /// # Errors
    /// Storage or decoding errors.
    pub fn agents(&self) -> Result<Vec<AgentRecord>> {
        self.db
            .scan_prefix(b"a/")
            .map(|item| {
                let (_, v) = item.map_err(|e| self.storage(e))?;
                self.decode(&v)
            })
            .collect()
    }

    /// Syncs every `interval` until the returned handle is dropped; the handle tells
    /// how far the cache is synced after each pass ([`FollowHandle::synced`]).
    pub fn follow(self: Arc<Self>, interval: Duration) -> FollowHandle {
        let (tx, synced) = tokio::sync::watch::channel(self.synced_to().ok().flatten());
        let task = tokio::spawn(async move {
            loop {
                match self.sync().await.and_then(|_| self.synced_to()) {
                    Ok(to) => {
                        tx.send_replace(to);
                    }
                    Err(e) => {
                        tracing::warn!(target: "registry::discovery", error = %e, "sync failed; retrying");
                    }
                }
                tokio::time::sleep(interval).await;
            }
        });
        FollowHandle { task, synced }
    }
}

/// Stops following when dropped.
#[derive(Debug)]
pub struct FollowHandle {
    task: tokio::task::JoinHandle<()>,
    synced: tokio::sync::watch::Receiver<Option<u64>>,
}

impl FollowHandle {
    /// The last block whose events are in the cache, updated after each pass of the
    /// follower: `synced().wait_for(|s| *s >= Some(n))` waits until the cache has
    /// block `n`.
    pub fn synced(&self) -> tokio::sync::watch::Receiver<Option<u64>> {
        self.synced.clone()
    }
}

impl Drop for FollowHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
