//! ERC-8004 identities and payment-backed feedback, in wallet types.
//!
//! An Agora agent's ERC-8004 identity is an `IdentityRegistry` token owned by the agent's
//! wallet, the same account that keys its `AgentRegistry` entry. The identity carries
//! the metadata entry [`AGORA_REGISTRY_KEY`] = `abi.encode(agentRegistry, agent)`, which
//! names that entry; [`Deployment::find_identity`] goes the other way, from a wallet to
//! its linked identity, through the registry's `Registered` logs. Only standard ERC-8004
//! functions and events are used, so the same code works against any deployment of the
//! registry.
//!
//! Feedback goes through `SettledFeedback` only ([`Deployment::give_escrow_feedback`],
//! [`Deployment::give_channel_feedback`]), which writes to the ERC-8004 reputation
//! registry after checking that the deal was settled and paid the agent's wallet;
//! [`Deployment::payment_backed_summary`] reads back just those entries.

use ethers::contract::EthLogDecode;
use ethers::providers::Middleware;
use ethers::types::{Address as EAddress, Bytes, H256, U256 as EU256};

use super::bindings::identity_registry::{IdentityRegistryEvents, MetadataEntry, RegisteredFilter};
use super::bindings::settled_feedback::Feedback as FeedbackTuple;
use super::{contract_error, ea, mined, ChainError, Deployment, Mined};

/// The identity metadata key that links an ERC-8004 identity to its `AgentRegistry`
/// entry; its value is `abi.encode(address agentRegistry, address agent)`.
pub const AGORA_REGISTRY_KEY: &str = "agoraRegistry";

/// Blocks read per `eth_getLogs` call when looking an identity up.
const LOG_CHUNK: u64 = 2_000;

/// An ERC-8004 agent id: the `IdentityRegistry`'s ERC-721 token id.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct IdentityId(pub u64);

impl std::fmt::Display for IdentityId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// An ERC-8004 identity as the `IdentityRegistry` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The agent id.
    pub id: IdentityId,
    /// Who owns it.
    pub owner: wallets::Address,
    /// Its `agentURI` (`tokenURI`): where its registration file is.
    pub agent_uri: String,
    /// Its payment wallet (`getAgentWallet`); `None` when cleared (after a transfer).
    pub wallet: Option<wallets::Address>,
    /// The `AgentRegistry` entry it names under [`AGORA_REGISTRY_KEY`], as
    /// (agent registry, agent); `None` when the entry is missing or malformed.
    pub link: Option<(wallets::Address, wallets::Address)>,
}

impl Identity {
    /// Whether the identity is linked to `agent`'s entry in `agent_registry` and still
    /// owned by `agent`.
    pub fn is_linked_to(&self, agent_registry: wallets::Address, agent: wallets::Address) -> bool {
        self.owner == agent && self.link == Some((agent_registry, agent))
    }
}

/// What [`Deployment::ensure_identity`] had to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityChange {
    /// A new identity was registered.
    Registered(Mined),
    /// The linked identity existed; its agent URI was replaced.
    UriUpdated(Mined),
    /// The linked identity existed with the wanted agent URI.
    Unchanged,
}

/// Feedback as `SettledFeedback` passes it to the ERC-8004 `giveFeedback`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedbackInput {
    /// Signed fixed-point value.
    pub value: i128,
    /// Its decimals (0 to 18).
    pub value_decimals: u8,
    /// First tag (Agora rates with "starred").
    pub tag1: String,
    /// Second tag (Agora puts the skill here).
    pub tag2: String,
    /// The endpoint rated (may be empty).
    pub endpoint: String,
    /// Where a feedback file is (may be empty).
    pub feedback_uri: String,
    /// keccak256 of that file (zero if none).
    pub feedback_hash: wallets::B256,
}

impl FeedbackInput {
    /// A quality rating as ERC-8004's examples give it: tag1 "starred", `score` out of
    /// 100, no decimals; tag2 names the skill.
    pub fn stars(score: u8, skill: &str) -> Self {
        Self {
            value: i128::from(score),
            value_decimals: 0,
            tag1: "starred".into(),
            tag2: skill.into(),
            endpoint: String::new(),
            feedback_uri: String::new(),
            feedback_hash: wallets::B256::default(),
        }
    }

    /// The same with the endpoint rated.
    #[must_use]
    pub fn with_endpoint(mut self, endpoint: &str) -> Self {
        self.endpoint = endpoint.into();
        self
    }

    /// The same with a feedback file and its keccak256.
    #[must_use]
    pub fn with_file(mut self, uri: &str, hash: wallets::B256) -> Self {
        self.feedback_uri = uri.into();
        self.feedback_hash = hash;
        self
    }

    fn to_tuple(&self) -> FeedbackTuple {
        FeedbackTuple {
            value: self.value,
            value_decimals: self.value_decimals,
            tag_1: self.tag1.clone(),
            tag_2: self.tag2.clone(),
            endpoint: self.endpoint.clone(),
            feedback_uri: self.feedback_uri.clone(),
            feedback_hash: self.feedback_hash.0,
        }
    }
}

/// An ERC-8004 `getSummary`: the mean of the counted entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedbackSummary {
    /// Entries counted.
    pub count: u64,
    /// Their mean, fixed-point.
    pub value: i128,
    /// Its decimals.
    pub decimals: u8,
}

/// `abi.encode(agentRegistry, agent)`: two left-padded 32-byte words.
fn link_bytes(agent_registry: wallets::Address, agent: wallets::Address) -> Vec<u8> {
    let mut out = vec![0u8; 64];
    if let Some(w) = out.get_mut(12..32) {
        w.copy_from_slice(agent_registry.as_bytes());
    }
    if let Some(w) = out.get_mut(44..64) {
        w.copy_from_slice(agent.as_bytes());
    }
    out
}

/// The inverse of [`link_bytes`]; `None` unless exactly two clean address words.
fn parse_link(bytes: &[u8]) -> Option<(wallets::Address, wallets::Address)> {
    if bytes.len() != 64 {
        return None;
    }
    let word = |i: usize| -> Option<wallets::Address> {
        let w = bytes.get(i * 32..(i + 1) * 32)?;
        if w.get(..12)?.iter().any(|&b| b != 0) {
            return None;
        }
        let mut a = [0u8; 20];
        a.copy_from_slice(w.get(12..)?);
        Some(wallets::Address(a))
    };
    Some((word(0)?, word(1)?))
}

fn to_id(value: EU256, call: &str) -> Result<IdentityId, ChainError> {
    if value.bits() > 64 {
        return Err(ChainError::Contract {
            call: call.into(),
            message: format!("agent id {value} does not fit 64 bits"),
        });
    }
    Ok(IdentityId(value.as_u64()))
}

/// ERC-8004 identities.
impl Deployment {
    /// The value of [`AGORA_REGISTRY_KEY`] that links an identity to `agent`'s entry in
    /// this deployment's `AgentRegistry`.
    pub fn identity_link(&self, agent: wallets::Address) -> Vec<u8> {
        link_bytes(wallets::Address(self.registry.address().0), agent)
    }

    /// Reads identity `id` back: owner, agent URI, wallet and link.
    ///
    /// # Errors
    /// [`ChainError::Contract`] when the identity does not exist or a call fails.
    pub async fn identity(&self, id: IdentityId) -> Result<Identity, ChainError> {
        let r = &self.identity_registry;
        let token = EU256::from(id.0);
        let owner = r
            .owner_of(token)
            .call()
            .await
            .map_err(|e| contract_error("IdentityRegistry.ownerOf", e))?;
        let agent_uri = r
            .token_uri(token)
            .call()
            .await
            .map_err(|e| contract_error("IdentityRegistry.tokenURI", e))?;
        let wallet = r
            .get_agent_wallet(token)
            .call()
            .await
            .map_err(|e| contract_error("IdentityRegistry.getAgentWallet", e))?;
        let link = r
            .get_metadata(token, AGORA_REGISTRY_KEY.into())
            .call()
            .await
            .map_err(|e| contract_error("IdentityRegistry.getMetadata", e))?;
        Ok(Identity {
            id,
            owner: wallets::Address(owner.0),
            agent_uri,
            wallet: (!wallet.is_zero()).then_some(wallets::Address(wallet.0)),
            link: parse_link(&link),
        })
    }

    /// The newest identity that `agent` owns and that is linked to its entry in this
    /// deployment's `AgentRegistry`, found through the `Registered` logs from
    /// `from_block` (the deployment's first block) on; `None` if there is none.
    ///
    /// # Errors
    /// [`ChainError::Node`] or [`ChainError::Contract`] when the node fails.
    pub async fn find_identity(
        &self,
        agent: wallets::Address,
        from_block: u64,
    ) -> Result<Option<Identity>, ChainError> {
        let r = &self.identity_registry;
        let owned = r
            .balance_of(ea(agent))
            .call()
            .await
            .map_err(|e| contract_error("IdentityRegistry.balanceOf", e))?;
        if owned.is_zero() {
            return Ok(None);
        }
        let head = r
            .client()
            .get_block_number()
            .await
            .map_err(|e| ChainError::Node {
                url: r.client().provider().url().to_string(),
                message: format!("eth_blockNumber: {e}"),
            })?
            .as_u64();
        let mut ids = Vec::new();
        let mut from = from_block;
        while from <= head {
            let to = (from + LOG_CHUNK - 1).min(head);
            let logs = r
                .registered_filter()
                .topic2(H256::from(ea(agent)))
                .from_block(from)
                .to_block(to)
                .query()
                .await
                .map_err(|e| contract_error("IdentityRegistry Registered logs", e))?;
            for log in logs {
                ids.push(to_id(log.agent_id, "IdentityRegistry Registered logs")?);
            }
            from = to + 1;
        }
        let registry = wallets::Address(self.registry.address().0);
        for id in ids.into_iter().rev() {
            let identity = self.identity(id).await?;
            if identity.is_linked_to(registry, agent) {
                return Ok(Some(identity));
            }
        }
        Ok(None)
    }

    /// Registers a new identity for the client's account, linked to its `AgentRegistry`
    /// entry, with the agent URI `agent_uri(id)` for the id it gets (a registration
    /// file names its own id). One transaction, unless another registration took the
    /// expected id first; then a second one sets the URI.
    ///
    /// # Errors
    /// [`ChainError::Contract`] when a transaction fails.
    pub async fn register_identity(
        &self,
        agent_uri: impl Fn(IdentityId) -> String,
    ) -> Result<(Identity, Mined), ChainError> {
        const CALL: &str = "IdentityRegistry.register";
        let me = wallets::Address(self.identity_registry.client().inner().address().0);
        let metadata = vec![MetadataEntry {
            metadata_key: AGORA_REGISTRY_KEY.into(),
            metadata_value: Bytes::from(self.identity_link(me)),
        }];
        // The id a registration gets now, by simulating it.
        let expected = self
            .identity_registry
            .register_with_agent_uri_and_metadata(String::new(), metadata.clone())
            .call()
            .await
            .map_err(|e| contract_error(CALL, e))?;
        let expected = to_id(expected, CALL)?;
        let call = self
            .identity_registry
            .register_with_agent_uri_and_metadata(agent_uri(expected), metadata);
        let receipt = super::receipt(CALL, call.send().await).await?;
        let mut tx = super::mined_of(CALL, &receipt)?;
        let registered = receipt
            .logs
            .iter()
            .filter(|log| log.address == self.identity_registry.address())
            .find_map(|log| {
                match IdentityRegistryEvents::decode_log(&ethers::abi::RawLog::from(log.clone())) {
                    Ok(IdentityRegistryEvents::RegisteredFilter(RegisteredFilter {
                        agent_id,
                        ..
                    })) => Some(agent_id),
                    _ => None,
                }
            })
            .ok_or_else(|| ChainError::Contract {
                call: CALL.into(),
                message: format!("no Registered event in {:?}", receipt.transaction_hash),
            })?;
        let id = to_id(registered, CALL)?;
        if id != expected {
            tx = self.set_agent_uri(id, &agent_uri(id)).await?;
        }
        Ok((self.identity(id).await?, tx))
    }

    /// Replaces identity `id`'s agent URI (as its owner or operator).
    ///
    /// # Errors
    /// [`ChainError::Contract`] with the decoded revert reason.
    pub async fn set_agent_uri(&self, id: IdentityId, uri: &str) -> Result<Mined, ChainError> {
        let call = self
            .identity_registry
            .set_agent_uri(EU256::from(id.0), uri.to_owned());
        mined("IdentityRegistry.setAgentURI", call.send().await).await
    }

    /// The client's linked identity with agent URI `agent_uri(id)`, registering it or
    /// replacing its URI only when needed, so running it again changes nothing.
    /// `from_block` is where the deployment starts ([`super::Addresses::deployed_at`]).
    ///
    /// # Errors
    /// As [`Deployment::find_identity`] and [`Deployment::register_identity`].
    pub async fn ensure_identity(
        &self,
        from_block: u64,
        agent_uri: impl Fn(IdentityId) -> String,
    ) -> Result<(Identity, IdentityChange), ChainError> {
        let me = wallets::Address(self.identity_registry.client().inner().address().0);
        match self.find_identity(me, from_block).await? {
            None => {
                let (identity, tx) = self.register_identity(agent_uri).await?;
                Ok((identity, IdentityChange::Registered(tx)))
            }
            Some(identity) => {
                let wanted = agent_uri(identity.id);
                if identity.agent_uri == wanted {
                    return Ok((identity, IdentityChange::Unchanged));
                }
                let tx = self.set_agent_uri(identity.id, &wanted).await?;
                let identity = Identity {
                    agent_uri: wanted,
                    ..identity
                };
                Ok((identity, IdentityChange::UriUpdated(tx)))
            }
        }
    }

    /// The client's linked identity whose agent URI is `agent`'s registration file,
    /// naming that identity, as a base64 `data:` URI (fully on chain, so an indexer
    /// reads it without reaching the agent): [`Deployment::ensure_identity`] with
    /// [`crate::erc8004::registration_file`]. Returns the identity, what had to be done,
    /// and the file, which the agent also serves at
    /// `/.well-known/agent-registration.json`. `agent.agent_id` is ignored: the file
    /// names the identity's own id.
    ///
    /// # Errors
    /// As [`Deployment::ensure_identity`].
    pub async fn ensure_registration(
        &self,
        from_block: u64,
        agent: &crate::erc8004::AgentRegistration,
    ) -> Result<(Identity, IdentityChange, crate::erc8004::RegistrationFile), ChainError> {
        let file_of = |id: IdentityId| {
            crate::erc8004::registration_file(&crate::erc8004::AgentRegistration {
                agent_id: Some(id.0),
                ..agent.clone()
            })
        };
        let (identity, change) = self
            .ensure_identity(from_block, |id| {
                // A file built from plain fields, with no extension fields, always
                // serializes.
                file_of(id).to_data_uri().unwrap_or_default()
            })
            .await?;
        let file = file_of(identity.id);
        Ok((identity, change, file))
    }
}

/// Payment-backed ERC-8004 feedback, through `SettledFeedback`.
impl Deployment {
    /// Rates identity `agent` for settled escrow `escrow_id`, bought by the client's
    /// account from the agent's wallet, and waits for the receipt.
    ///
    /// # Errors
    /// [`ChainError::Contract`] naming the refusal (`NotPayer`, `EscrowNotSettled`,
    /// `NotAgentWallet`, `SelfFeedback`, `AlreadyReviewed`, ...).
    pub async fn give_escrow_feedback(
        &self,
        escrow_id: wallets::B256,
        agent: IdentityId,
        feedback: &FeedbackInput,
    ) -> Result<Mined, ChainError> {
        let call = self.settled_feedback.give_escrow_feedback(
            escrow_id.0,
            EU256::from(agent.0),
            feedback.to_tuple(),
        );
        mined("SettledFeedback.giveEscrowFeedback", call.send().await).await
    }

    /// Rates identity `agent` for channel `channel_id`, paid by the client's account to
    /// the agent's wallet and settled at least once, and waits for the receipt.
    ///
    /// # Errors
    /// [`ChainError::Contract`] naming the refusal (`NotPayer`, `ChannelNotSettled`,
    /// `NotAgentWallet`, `SelfFeedback`, `AlreadyReviewed`, ...).
    pub async fn give_channel_feedback(
        &self,
        channel_id: wallets::B256,
        agent: IdentityId,
        feedback: &FeedbackInput,
    ) -> Result<Mined, ChainError> {
        let call = self.settled_feedback.give_channel_feedback(
            channel_id.0,
            EU256::from(agent.0),
            feedback.to_tuple(),
        );
        mined("SettledFeedback.giveChannelFeedback", call.send().await).await
    }

    /// The ERC-8004 summary of `agent`'s payment-backed feedback: the reputation
    /// registry's `getSummary` with `SettledFeedback` as the only client, over entries
    /// with first tag `tag1` (empty: any).
    ///
    /// # Errors
    /// [`ChainError::Contract`] when the call fails.
    pub async fn payment_backed_summary(
        &self,
        agent: IdentityId,
        tag1: &str,
    ) -> Result<FeedbackSummary, ChainError> {
        let clients: Vec<EAddress> = vec![self.settled_feedback.address()];
        let (count, value, decimals) = self
            .reputation_registry
            .get_summary(EU256::from(agent.0), clients, tag1.into(), String::new())
            .call()
            .await
            .map_err(|e| contract_error("ReputationRegistry.getSummary", e))?;
        Ok(FeedbackSummary {
            count,
            value,
            decimals,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_round_trips_and_rejects_dirty_words() {
        let registry = wallets::Address([0x11; 20]);
        let agent = wallets::Address([0x22; 20]);
        let bytes = link_bytes(registry, agent);
        assert_eq!(bytes.len(), 64);
        assert_eq!(parse_link(&bytes), Some((registry, agent)));
        let mut dirty = bytes.clone();
        dirty[0] = 1;
        assert_eq!(parse_link(&dirty), None);
        assert_eq!(parse_link(&bytes[..63]), None);
        assert_eq!(parse_link(b""), None);
    }

    #[test]
    fn stars_are_erc8004_starred_ratings() {
        let f = FeedbackInput::stars(87, "weather.forecast")
            .with_endpoint("http://a/x402/weather.forecast")
            .with_file("ipfs://f", wallets::B256([7; 32]));
        assert_eq!((f.value, f.value_decimals), (87, 0));
        assert_eq!(f.tag1, "starred");
        let t = f.to_tuple();
        assert_eq!(t.tag_2, "weather.forecast");
        assert_eq!(t.feedback_hash, [7; 32]);
    }
}
