//! Fixtures: a devnet with the contracts deployed, a facilitator whose relayer is dev
//! account 1, a funded payer behind a spending policy, and payments it signs.

use std::path::PathBuf;
use std::sync::Arc;

use registry::chain::{self, Addresses, DeployConfig, Deployment};
use registry::devnet::{dev_wallet, Devnet, DevnetConfig, DevnetHandle};
use serde_json::json;
use wallets::{
    Address, Amount, Eip712Domain, Limits, Payment, SignedPayment, SpendingPolicy,
    TransferWithAuthorization, Wallet, B256,
};
use x402::wire::{ExactEvmPayload, PaymentPayload, PaymentRequirements, VerifyRequest};
use x402::{Facilitator, FacilitatorConfig};

/// The stablecoin's EIP-712 domain name ([`DeployConfig::dev`]).
pub(crate) const TOKEN: &str = "USD Coin";
/// The price the tests pay, in base units.
pub(crate) const PRICE: u128 = 950_000;
/// What the payer holds at the start, in base units.
pub(crate) const FUNDS: u128 = 10_000_000;

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A chain, a facilitator on it, a payer and a seller.
pub(crate) struct Setup {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) node: DevnetHandle,
    pub(crate) addresses: Addresses,
    pub(crate) minter: Deployment,
    pub(crate) facilitator: Arc<Facilitator>,
    pub(crate) payer: Payer,
    pub(crate) seller: Address,
}

/// A wallet behind a spending policy without limits (the only way to sign payments),
/// which pins each token domain it is asked to sign in: tests sign in wrong domains on
/// purpose.
pub(crate) struct Payer {
    policy: std::sync::Mutex<Option<SpendingPolicy>>,
    address: Address,
}

impl Payer {
    pub(crate) fn new(dir: PathBuf, wallet: Wallet) -> Self {
        let policy = SpendingPolicy::open(dir, Arc::new(wallet), Limits::default()).unwrap();
        Self {
            address: policy.address(),
            policy: std::sync::Mutex::new(Some(policy)),
        }
    }

    pub(crate) fn address(&self) -> Address {
        self.address
    }

    /// Signs `transfer` in `domain`.
    pub(crate) fn sign(
        &self,
        domain: Eip712Domain,
        transfer: TransferWithAuthorization,
    ) -> SignedPayment {
        let mut slot = self.policy.lock().unwrap();
        let policy = slot.take().unwrap().pin_token(domain.clone());
        let signed = policy
            .authorize(&Payment::Authorization { domain, transfer })
            .unwrap();
        *slot = Some(policy);
        signed
    }
}

impl Setup {
    pub(crate) async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let node = Devnet::spawn(DevnetConfig::new(dir.path().join("chain")))
            .await
            .unwrap();
        let deployer = chain::connect(&node.http_url(), Arc::new(dev_wallet(0)))
            .await
            .unwrap();
        let (minter, addresses) = Deployment::deploy(deployer, &DeployConfig::dev())
            .await
            .unwrap();
        let payer = Payer::new(dir.path().join("payer"), Wallet::random());
        minter
            .mint(payer.address(), Amount::from_base_units(FUNDS))
            .await
            .unwrap();
        let facilitator =
            Arc::new(facilitator(&node, &addresses, &dir.path().join("settled")).await);
        Self {
            seller: Wallet::random().address(),
            dir,
            node,
            addresses,
            minter,
            facilitator,
            payer,
        }
    }

    pub(crate) fn stablecoin(&self) -> Address {
        Address(self.addresses.stablecoin.0)
    }

    pub(crate) async fn balance(&self, who: Address) -> u128 {
        self.minter.balance_of(who).await.unwrap().base_units()
    }

    /// What a seller asks: [`PRICE`] of the stablecoin to [`Setup::seller`], with the
    /// payee in lower case as the Python seller copies it.
    pub(crate) fn requirements(&self) -> PaymentRequirements {
        serde_json::from_value(json!({
            "scheme": "exact",
            "network": format!("eip155:{}", self.addresses.chain_id),
            "amount": PRICE.to_string(),
            "asset": self.stablecoin().to_string(),
            "payTo": self.seller.to_string().to_ascii_lowercase(),
            "maxTimeoutSeconds": 60,
            "extra": {"name": TOKEN, "version": "2"}
        }))
        .unwrap()
    }

    /// A transfer of `value` to `to`, valid from `valid_after` to `valid_before`.
    pub(crate) fn transfer(
        &self,
        to: Address,
        value: u128,
        valid_after: u64,
        valid_before: u64,
    ) -> TransferWithAuthorization {
        TransferWithAuthorization {
            from: self.payer.address(),
            to,
            value: Amount::from_base_units(value),
            valid_after,
            valid_before,
            nonce: B256::random(),
        }
    }

    /// The token's domain, named `name`.
    pub(crate) fn domain(&self, name: &str) -> Eip712Domain {
        self.addresses.token_domain(name)
    }

    /// A facilitator request for `requirements`, paid with `signed`.
    pub(crate) fn request(
        &self,
        requirements: &PaymentRequirements,
        signed: &SignedPayment,
    ) -> VerifyRequest {
        let exact = ExactEvmPayload::of(signed).expect("an authorization");
        VerifyRequest {
            x402_version: 2,
            payment_payload: PaymentPayload {
                x402_version: 2,
                payload: serde_json::to_value(exact).unwrap(),
                accepted: requirements.clone(),
                ..PaymentPayload::default()
            },
            payment_requirements: requirements.clone(),
        }
    }

    /// A good payment of [`Setup::requirements`].
    pub(crate) fn good_request(&self) -> VerifyRequest {
        let now = unix_now();
        let transfer = self.transfer(self.seller, PRICE, 0, now + 120);
        self.request(
            &self.requirements(),
            &self.payer.sign(self.domain(TOKEN), transfer),
        )
    }
}

/// A facilitator of the deployment's stablecoin on `node`, relaying from dev account 1,
/// recording settlements in `store`.
pub(crate) async fn facilitator(
    node: &DevnetHandle,
    addresses: &Addresses,
    store: &std::path::Path,
) -> Facilitator {
    Facilitator::connect(
        &node.http_url(),
        Arc::new(dev_wallet(1)),
        FacilitatorConfig {
            assets: vec![Address(addresses.stablecoin.0)],
            store: store.to_owned(),
            from_block: addresses.deployed_at,
        },
    )
    .await
    .unwrap()
}

/// An agent selling over x402 on the setup's chain: dev account 3's wallet (it pays
/// the settlements' gas), its journal, its sale store, served on loopback.
pub(crate) struct Shop {
    pub(crate) wallet: Arc<Wallet>,
    pub(crate) journal: PathBuf,
    pub(crate) seller: Arc<x402::X402Seller>,
    pub(crate) server: x402::seller::SellerServer,
    pub(crate) http: reqwest::Client,
    _host: agent_sdk::Host,
    _agent: agent_sdk::AgentHandle,
}

impl Shop {
    /// Sells `services` from dev account 3, its store and journal under `dir`.
    pub(crate) async fn open(
        s: &Setup,
        dir: &std::path::Path,
        services: Vec<x402::PricedService>,
    ) -> Self {
        let wallet = Arc::new(dev_wallet(3));
        let host = agent_sdk::Host::spawn(agent_sdk::HostConfig::new(
            s.addresses.chain_id,
            dir.join("host"),
        ))
        .unwrap();
        let agent = agent_sdk::AgentBuilder::new("shop")
            .wallet(wallet.clone())
            .spawn(&host)
            .unwrap();
        let client = chain::connect(&s.node.http_url(), wallet.clone())
            .await
            .unwrap();
        let journal = dir.join("shop.journal");
        let store = dir.join("sales");
        let shared = negotiation::SharedJournal::new(
            wallets::Journal::open(&journal, wallet.clone()).unwrap(),
        );
        let mut seller = x402::X402Seller::new(
            agent.context(),
            client,
            s.stablecoin(),
            shared,
            x402::SellerConfig::new(&store, TOKEN),
        )
        .unwrap();
        for service in services {
            seller = seller.sell(service).unwrap();
        }
        let seller = Arc::new(seller);
        let server = x402::seller::serve(seller.clone(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        Self {
            wallet,
            journal,
            seller,
            server,
            http: reqwest::Client::new(),
            _host: host,
            _agent: agent,
        }
    }

    pub(crate) fn address(&self) -> Address {
        self.wallet.address()
    }

    pub(crate) fn url(&self, skill: &str) -> String {
        format!("{}/x402/{skill}", self.server.url())
    }

    /// POSTs `body` to `skill`, with `payment` as PAYMENT-SIGNATURE.
    pub(crate) async fn post(
        &self,
        skill: &str,
        payment: Option<&str>,
        body: &str,
    ) -> reqwest::Response {
        let mut request = self.http.post(self.url(skill)).body(body.to_owned());
        if let Some(p) = payment {
            request = request.header("PAYMENT-SIGNATURE", p);
        }
        request.send().await.unwrap()
    }

    /// The journal's entries' kinds.
    pub(crate) fn journaled(&self) -> Vec<String> {
        wallets::journal::read_entries(&self.journal)
            .map(|entries| entries.into_iter().map(|e| e.kind).collect())
            .unwrap_or_default()
    }

    /// Stops serving and closes the store (so that a test can open it).
    pub(crate) async fn close(self) {
        self.server.shutdown().await;
        drop(self.seller);
        drop(self._agent);
        let host = self._host;
        tokio::task::spawn_blocking(move || host.shutdown())
            .await
            .unwrap();
    }
}

impl Setup {
    /// A PAYMENT-SIGNATURE header paying `requirements` with `transfer`, signed in
    /// the token's domain named `name`.
    pub(crate) fn payment_header(
        &self,
        requirements: &PaymentRequirements,
        transfer: TransferWithAuthorization,
        name: &str,
    ) -> String {
        let signed = self.payer.sign(self.domain(name), transfer);
        x402::wire::encode_header(&self.request(requirements, &signed).payment_payload).unwrap()
    }
}

/// The official Python Flask seller middleware (`seller.py`): `GET /weather` for
/// [`PRICE`] of the setup's stablecoin, paid to [`Setup::seller`], settled through the
/// facilitator at `facilitator`.
pub(crate) async fn flask_seller(
    python: &std::path::Path,
    s: &Setup,
    facilitator: &str,
) -> x402::test_utils::Served {
    let args = [
        ("--facilitator", facilitator.to_owned()),
        ("--network", format!("eip155:{}", s.addresses.chain_id)),
        ("--asset", s.stablecoin().to_string()),
        ("--pay-to", s.seller.to_string()),
        ("--amount", PRICE.to_string()),
        ("--token-name", TOKEN.to_owned()),
    ];
    let args: Vec<String> = args
        .into_iter()
        .flat_map(|(k, v)| [k.to_owned(), v])
        .collect();
    x402::test_utils::serve_script(python, "seller.py", &args, &[]).await
}
