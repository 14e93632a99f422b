//! JobEscrow paid through the spending policy: release on acceptance, refund after a
//! missed deadline, and release by anyone after the review window, on both nodes.

use std::sync::Arc;

use ethers::types::{Address as EAddress, U256 as EU256};
use registry::chain::{self, Client, DeployConfig, Deployment};
use registry::devnet::dev_wallet;
use wallets::{Amount, Eip712Domain, Limits, Payment, Permit, SpendingPolicy, Wallet, B256};

use crate::support::Node;

struct Parties {
    contracts: Deployment,
    buyer: Arc<Wallet>,
    buyer_client: Arc<Client>,
    seller: Arc<Wallet>,
    seller_client: Arc<Client>,
    policy: SpendingPolicy,
    domain: Eip712Domain,
    chain_id: u64,
}

fn ea(a: wallets::Address) -> EAddress {
    EAddress::from(a.0)
}

async fn setup(node: &Node, dir: &std::path::Path) -> Parties {
    let url = node.url();
    let deployer = chain::connect(&url, Arc::new(dev_wallet(0))).await.unwrap();
    let (contracts, addresses) = Deployment::deploy(deployer.clone(), &DeployConfig::dev())
        .await
        .unwrap();
    let buyer = Arc::new(dev_wallet(1));
    let seller = Arc::new(dev_wallet(2));
    contracts
        .stablecoin
        .mint(ea(buyer.address()), EU256::from(100_000_000u64))
        .send()
        .await
        .unwrap()
        .await
        .unwrap();
    let policy = SpendingPolicy::open(
        dir.join("policy"),
        buyer.clone(),
        Limits {
            per_peer_daily: Some("10 USDC".parse().unwrap()),
            ..Limits::default()
        },
    )
    .map(|p| addresses.pin(p, "USD Coin"))
    .unwrap();
    let domain = Eip712Domain::new(
        "USD Coin",
        "2",
        addresses.chain_id,
        wallets::Address(addresses.stablecoin.0),
    );
    let buyer_client = chain::connect(&url, buyer.clone()).await.unwrap();
    let seller_client = chain::connect(&url, seller.clone()).await.unwrap();
    Parties {
        contracts: Deployment::at(buyer_client.clone(), &addresses),
        buyer,
        buyer_client,
        seller,
        seller_client,
        policy,
        domain,
        chain_id: addresses.chain_id,
    }
}

impl Parties {
    /// Locks `price` for the seller under `job` through the policy and lockWithPermit.
    async fn lock(
        &self,
        job: B256,
        price: &str,
        deadline_in: u64,
        review: u32,
    ) -> Result<[u8; 32], String> {
        let price: Amount = format!("{price} USDC").parse().unwrap();
        let now = chain::chain_time(&self.buyer_client).await.unwrap();
        let token = &self.contracts.stablecoin;
        let nonce = token.nonces(ea(self.buyer.address())).call().await.unwrap();
        let signed = self
            .policy
            .authorize(&Payment::EscrowDeposit {
                domain: self.domain.clone(),
                permit: Permit {
                    owner: self.buyer.address(),
                    spender: wallets::Address(self.contracts.escrow.address().0),
                    value: price,
                    nonce: nonce.as_u64(),
                    deadline: now + 3_600,
                },
                seller: self.seller.address(),
                job_id: job,
            })
            .map_err(|e| e.to_string())?;
        let sig = signed.signature;
        let call = self.contracts.escrow.lock_with_permit(
            job.0,
            ea(self.seller.address()),
            EU256::from(price.base_units()),
            now + deadline_in,
            review,
            EU256::from(now + 3_600),
            sig.v(),
            sig.r().0,
            sig.s().0,
        );
        call.send()
            .await
            .map_err(|e| chain::contract_error("JobEscrow.lockWithPermit", e).to_string())?
            .await
            .unwrap();
        Ok(self
            .contracts
            .escrow
            .escrow_id_of(ea(self.buyer.address()), job.0)
            .call()
            .await
            .unwrap())
    }

    async fn balance(&self, who: &Wallet) -> u64 {
        self.contracts
            .stablecoin
            .balance_of(ea(who.address()))
            .call()
            .await
            .unwrap()
            .as_u64()
    }

    fn as_seller(&self) -> Deployment {
        let mut d = self.contracts.clone();
        registry::chain::allow_contract(
            &self.seller_client,
            d.escrow.address(),
            &registry::chain::bindings::job_escrow::JOBESCROW_ABI,
        );
        d.escrow = registry::chain::JobEscrow::new(d.escrow.address(), self.seller_client.clone());
        d
    }
}

async fn escrow_paths(node: &Node, dir: &std::path::Path) {
    let p = setup(node, dir).await;
    let seller = p.as_seller();
    assert!(p.chain_id > 0);

    // 1. Lock, deliver, accept: the seller is paid once.
    let id = p.lock(B256([1; 32]), "3", 600, 300).await.unwrap();
    assert_eq!(p.balance(&p.buyer).await, 97_000_000);
    seller
        .escrow
        .deliver(id, [0xaa; 32])
        .send()
        .await
        .unwrap()
        .await
        .unwrap();
    p.contracts
        .escrow
        .accept(id)
        .send()
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(p.balance(&p.seller).await, 3_000_000);
    let refund = seller.escrow.refund(id);
    assert!(
        refund.send().await.is_err(),
        "{}: refund after release",
        node.name()
    );

    // 2. The seller misses the deadline: anyone refunds the buyer; late delivery fails.
    let id = p.lock(B256([2; 32]), "2", 60, 300).await.unwrap();
    chain::advance_time(&p.buyer_client, 120).await.unwrap();
    let late = seller.escrow.deliver(id, [0xbb; 32]);
    assert!(
        late.send().await.is_err(),
        "{}: delivery after the deadline",
        node.name()
    );
    seller
        .escrow
        .refund(id)
        .send()
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(p.balance(&p.buyer).await, 97_000_000);

    // 3. Delivered, buyer silent: after the review window anyone releases.
    let id = p.lock(B256([3; 32]), "4", 600, 100).await.unwrap();
    seller
        .escrow
        .deliver(id, [0xcc; 32])
        .send()
        .await
        .unwrap()
        .await
        .unwrap();
    let early = seller.escrow.release(id);
    assert!(
        early.send().await.is_err(),
        "{}: release inside the review window",
        node.name()
    );
    chain::advance_time(&p.buyer_client, 101).await.unwrap();
    seller
        .escrow
        .release(id)
        .send()
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(p.balance(&p.seller).await, 7_000_000);

    // The policy counted 3 + 2 + 4 = 9 USDC to this seller today; 2 more is refused
    // before anything is signed or sent.
    let err = p.lock(B256([4; 32]), "2", 600, 100).await.unwrap_err();
    assert!(
        err.contains("per_peer") || err.contains("this peer"),
        "{err}"
    );
    assert_eq!(p.balance(&p.buyer).await, 93_000_000);
}

on_devnet_and_anvil!(
    escrow_release_refund_and_timeout_on_the_embedded_devnet,
    escrow_release_refund_and_timeout_on_anvil,
    escrow_paths
);
