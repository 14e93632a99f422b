//! A market of inference on the embedded devnet (features `service` and
//! `test-utils`): one seller of `llm.complete` or `llm.extract` registered with its
//! model, honest or cheating, and one buyer that checks deliveries.
#![allow(clippy::unwrap_used, missing_debug_implementations, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent_sdk::prelude::*;
use agent_sdk::{Peer, StaticDirectory};
use negotiation::audit::ChainCheck;
use negotiation::test_utils::{buyer_with, host, usdc, BuyerAgent, Chain};
use negotiation::{
    DefaultSellerStrategy, DeliveryCheck, DeliveryToCheck, PaymentMode, Seller, Service,
    ServiceOutput,
};
use registry::chain::{self, Deployment};
use registry::devnet::dev_wallet;
use registry::discovery::Discovery;
use wallets::{Amount, Journal, B256};

use crate::service::{
    inference_result, AttestationCheck, AttestedInference, InferenceKind, InferenceTask, LlmService,
};
use crate::{attestation_domain, Prompt, SamplingParams, SignedAttestation};

/// The seller's dev account.
pub const SELLER_ACCOUNT: u32 = 5;
/// The buyer's dev account (it pays gas in escrow mode).
pub const BUYER_ACCOUNT: u32 = 6;

/// How a cheating seller alters its output, on tasks whose text contains `cheat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cheat {
    /// Changes the delivered output, keeps the attestation of the real run.
    KeepSignature,
    /// Changes the output in the record too, and signs the changed record.
    Resign,
}

/// An [`LlmService`] that alters its output (appends ` (cheaper)`) on tasks that ask
/// for it.
pub struct Cheater {
    inner: LlmService,
    cheat: Cheat,
    wallet: Arc<Wallet>,
    chain_id: u64,
}

#[async_trait]
impl Service for Cheater {
    async fn perform(&self, ctx: &Context, task: &str) -> Result<ServiceOutput, SkillError> {
        let out = self.inner.perform(ctx, task).await?;
        if !task.contains("cheat") {
            return Ok(out);
        }
        let value = out.attestation.as_ref().expect("an attestation");
        let mut attested = AttestedInference::from_value(value)
            .expect("well-formed")
            .expect("an inference");
        attested.record.output = format!("{} (cheaper)", attested.record.output);
        let result = inference_result(&attested.record);
        let attestation = match self.cheat {
            Cheat::KeepSignature => out.attestation,
            Cheat::Resign => {
                attested.signed = SignedAttestation::sign(
                    &self.wallet,
                    &attestation_domain(Some(self.chain_id)),
                    attested.record.attestation(),
                )
                .expect("signing");
                Some(attested.to_value())
            }
        };
        Ok(ServiceOutput {
            result,
            attestation,
        })
    }
}

/// A buyer's check that refuses every delivery (to dispute an honest one).
pub struct RefuseAll;

#[async_trait]
impl DeliveryCheck for RefuseAll {
    async fn check(&self, _: DeliveryToCheck<'_>) -> negotiation::Result<Option<String>> {
        Ok(Some("the buyer does not like it".into()))
    }
}

/// How the market's buyer checks deliveries.
#[derive(Clone, Copy, Debug)]
pub enum Check {
    /// [`AttestationCheck`], re-running this share of the jobs on the shared engine.
    Attestations {
        /// The share, 0..=1.
        rerun_share: f64,
    },
    /// [`RefuseAll`].
    RefuseAll,
}

/// What [`LlmMarket::start`] sets up.
#[derive(Clone, Copy, Debug)]
pub struct MarketConfig {
    /// The service sold.
    pub kind: InferenceKind,
    /// How the seller cheats, if it does.
    pub cheat: Option<Cheat>,
    /// The model the seller registers (default: the engine's).
    pub registered: Option<B256>,
    /// The price of one job.
    pub price: Amount,
    /// The buyer's check.
    pub check: Check,
}

impl MarketConfig {
    /// An honest seller of `kind` at 0.01 USDC, a buyer that re-runs every job.
    pub fn new(kind: InferenceKind) -> Self {
        Self {
            kind,
            cheat: None,
            registered: None,
            price: usdc("0.01"),
            check: Check::Attestations { rerun_share: 1.0 },
        }
    }
}

/// A devnet, a seller (dev account [`SELLER_ACCOUNT`], registered in the
/// `AgentRegistry` with its model) and a buyer (dev account [`BUYER_ACCOUNT`], 10
/// USDC, a channel deposit of 20 jobs) on two hosts over loopback.
pub struct LlmMarket {
    pub chain: Chain,
    pub hosts: (Host, Host),
    pub seller_agent: AgentHandle,
    pub seller: Seller,
    pub seller_address: Address,
    pub seller_journal: PathBuf,
    pub buyer: BuyerAgent,
    pub kind: InferenceKind,
}

/// A boxed service (the seller takes `impl Service`).
struct BoxedService(Box<dyn Service>);

#[async_trait]
impl Service for BoxedService {
    async fn perform(&self, ctx: &Context, task: &str) -> Result<ServiceOutput, SkillError> {
        self.0.perform(ctx, task).await
    }
}

impl LlmMarket {
    /// Starts the market of `config` in `dir` (the chain, the hosts' stores, the
    /// journals) on the shared engine ([`super::shared_engine`]).
    pub async fn start(dir: &Path, config: MarketConfig) -> Self {
        let MarketConfig {
            kind,
            cheat,
            registered,
            price,
            check,
        } = config;
        let chain = Chain::start(dir).await;
        let chain_id = chain.addresses.chain_id;
        let url = chain.node.http_url();
        let hosts = (host(dir, "h1", chain_id), host(dir, "h2", chain_id));
        let engine = super::shared_engine();

        // The seller registers its model in the AgentRegistry.
        let wallet = Arc::new(dev_wallet(SELLER_ACCOUNT));
        let mine = Deployment::at(
            chain::connect(&url, wallet.clone()).await.unwrap(),
            &chain.addresses,
        );
        let model = registered.unwrap_or(engine.fingerprint().to_b256());
        mine.register_agent(
            &hosts.1.url().unwrap(),
            "https://agents.example/llm-seller.json",
            model,
            vec![chain::service(kind.as_str(), price, "job").unwrap()],
        )
        .await
        .unwrap();
        let service = LlmService::new(kind, engine.clone(), wallet.clone(), chain_id);
        let service: Box<dyn Service> = match cheat {
            None => Box::new(service),
            Some(cheat) => Box::new(Cheater {
                inner: service,
                cheat,
                wallet: wallet.clone(),
                chain_id,
            }),
        };
        let seller_journal = dir.join("seller.journal");
        let seller = Seller::new(
            kind.as_str(),
            wallet.clone(),
            DefaultSellerStrategy::fixed(price),
            BoxedService(service),
            chain.settlement(wallet.clone()).await,
            Journal::open(&seller_journal, wallet.clone()).unwrap(),
        );
        let seller_agent = seller
            .install(AgentBuilder::new("llm-seller").wallet(wallet))
            .spawn(&hosts.1)
            .unwrap();
        let seller_address = seller_agent.address();

        let directory = StaticDirectory::default().with(
            kind.as_str(),
            Peer {
                address: seller_address,
                endpoint: hosts.1.url(),
                price: None,
            },
        );
        let buyer_wallet = Arc::new(dev_wallet(BUYER_ACCOUNT));
        let mut buyer = buyer_with(
            &hosts.0,
            dir,
            &chain,
            usdc("1"),
            directory,
            buyer_wallet.clone(),
        )
        .await;
        let b = buyer
            .buyer
            .clone()
            .with_settlement(chain.settlement(buyer_wallet).await)
            .with_channel_orders(20);
        buyer.buyer = match check {
            Check::Attestations { rerun_share } => {
                let discovery = Discovery::open(dir.join("discovery"), &url, chain.addresses)
                    .await
                    .unwrap();
                b.with_delivery_check(
                    AttestationCheck::new(Arc::new(discovery)).with_rerun(engine, rerun_share),
                )
            }
            Check::RefuseAll => b.with_delivery_check(RefuseAll),
        };
        chain
            .minter
            .mint(buyer.handle.address(), usdc("10"))
            .await
            .unwrap();
        Self {
            chain,
            hosts,
            seller_agent,
            seller,
            seller_address,
            seller_journal,
            buyer,
            kind,
        }
    }

    /// The buyer hires the seller for `task` (at most 0.5 USDC) in `mode`.
    pub async fn hire(
        &self,
        task: &InferenceTask,
        mode: PaymentMode,
    ) -> negotiation::Result<negotiation::Deal> {
        self.buyer
            .buyer
            .hire(
                &self.buyer.handle.context(),
                &task.to_task(),
                self.kind.as_str(),
                usdc("0.5"),
                mode,
            )
            .await
    }

    /// The buyer's and the seller's journals.
    pub fn journals(&self) -> Vec<PathBuf> {
        vec![self.buyer.journal.clone(), self.seller_journal.clone()]
    }

    /// The audit's chain check on this chain.
    pub fn chain_check(&self) -> ChainCheck {
        ChainCheck::new(self.chain.node.http_url(), self.chain.addresses)
    }

    /// Waits until both journals hold `n` receipts (the seller journals a receipt
    /// after the buyer: receipts are tells).
    ///
    /// # Panics
    /// When they do not within a minute.
    pub async fn receipts(&self, n: usize) {
        let count = |path: &Path| {
            wallets::journal::read_entries(path)
                .map(|e| e.iter().filter(|e| e.kind == "receipt").count())
                .unwrap_or(0)
        };
        let mut writes = (
            self.buyer.buyer.journal_writes(),
            self.seller.journal_writes(),
        );
        let waited = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            while count(&self.buyer.journal) < n || count(&self.seller_journal) < n {
                tokio::select! {
                    _ = writes.0.changed() => {}
                    _ = writes.1.changed() => {}
                }
            }
        });
        waited.await.expect("the receipts are journaled");
    }

    /// The buyer's and the seller's balances, in base units.
    pub async fn balances(&self) -> (u128, u128) {
        (
            self.chain
                .balance(self.buyer.handle.address())
                .await
                .base_units(),
            self.chain.balance(self.seller_address).await.base_units(),
        )
    }
}

/// A short completion task `i` (seed `i`, 8 tokens): `what`, answered in a few words.
pub fn task(i: u32, what: &str) -> InferenceTask {
    InferenceTask::complete(Prompt::user(format!("{what} Answer in a few words. ({i})")))
        .with_params(SamplingParams::default().with_seed(i).with_max_tokens(8))
}
