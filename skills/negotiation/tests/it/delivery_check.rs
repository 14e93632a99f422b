//! The buyer's own delivery check (`Buyer::with_delivery_check`): a refused delivery
//! takes the dispute path in every mode.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use negotiation::test_utils::*;
use negotiation::{
    escrow_id_of, escrow_job_id, DeliveryCheck, DeliveryToCheck, EscrowState, PaymentMode,
};
use registry::devnet::dev_wallet;
use wallets::Amount;

/// Refuses results whose task asks for it; counts what it saw.
#[derive(Debug, Default)]
struct RefuseMarked {
    seen: AtomicUsize,
    with_task: AtomicUsize,
}

#[async_trait]
impl DeliveryCheck for RefuseMarked {
    async fn check(&self, d: DeliveryToCheck<'_>) -> negotiation::Result<Option<String>> {
        self.seen.fetch_add(1, Ordering::SeqCst);
        if d.task.is_some() {
            self.with_task.fetch_add(1, Ordering::SeqCst);
        }
        assert_eq!(d.seller(), d.agreement.seller);
        let task = d.delivery.result["task"].as_str().unwrap_or_default();
        Ok(task
            .starts_with("refuse")
            .then(|| format!("the result for {task:?} is refused")))
    }
}

async fn market_with_checking_buyer(
    dir: &std::path::Path,
    check: Arc<RefuseMarked>,
) -> (Market, BuyerAgent) {
    let m = Market::start(dir, "s", 5, usdc("0.5")).await;
    let wallet = Arc::new(dev_wallet(6)); // gas for escrow
    let mut b = buyer_with(
        &m.hosts.0,
        dir,
        &m.chain,
        usdc("5"),
        m.directory(),
        wallet.clone(),
    )
    .await;
    b.buyer = b
        .buyer
        .clone()
        .with_settlement(m.chain.settlement(wallet).await)
        .with_channel_orders(4)
        .with_delivery_check(check);
    m.chain
        .minter
        .mint(b.handle.address(), usdc("10"))
        .await
        .unwrap();
    (m, b)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_channel_order_the_check_refuses_gets_no_receipt_and_a_dispute() {
    let dir = tempfile::tempdir().unwrap();
    let check = Arc::new(RefuseMarked::default());
    let (m, b) = market_with_checking_buyer(dir.path(), check.clone()).await;
    let ctx = b.handle.context();
    let hire = |task: &'static str| {
        b.buyer
            .hire(&ctx, task, KIND, usdc("1"), PaymentMode::Channel)
    };
    hire("fine 1").await.unwrap();
    let err = hire("refuse 2").await.unwrap_err();
    match &err {
        negotiation::Error::Protocol { reason, .. } => {
            assert!(reason.contains("the delivery check refused it"), "{reason}");
            assert!(reason.contains("refuse 2"), "{reason}");
        }
        other => panic!("not a protocol error: {other}"),
    }
    // The channel goes on.
    let deal = hire("fine 3").await.unwrap();
    assert_eq!(deal.result()["task"], "fine 3");
    assert_eq!(check.seen.load(Ordering::SeqCst), 3);
    assert_eq!(check.with_task.load(Ordering::SeqCst), 3);

    let ours = entries(&b, "receipt").await;
    let disputes: Vec<_> = ours.iter().filter(|e| e.kind == "dispute").collect();
    assert_eq!(disputes.len(), 1, "{:?}", kinds(&ours));
    assert_eq!(disputes[0].body["delivery"]["result"]["task"], "refuse 2");
    assert!(disputes[0].body.get("escrowDispute").is_none());
    // Two receipts, one per accepted order; the refused order's voucher is journaled.
    assert_eq!(ours.iter().filter(|e| e.kind == "receipt").count(), 2);
    let receipts: Vec<_> = ours
        .iter()
        .filter(|e| e.kind == "receipt")
        .map(|e| e.body["receipt"]["resultHash"].clone())
        .collect();
    assert!(!receipts.contains(&disputes[0].body["delivery"]["resultHash"]));
    let _ = &m;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_escrow_delivery_the_check_refuses_is_disputed_on_chain_and_the_arbiter_can_refund_it() {
    let dir = tempfile::tempdir().unwrap();
    let check = Arc::new(RefuseMarked::default());
    let (m, b) = market_with_checking_buyer(dir.path(), check.clone()).await;
    let ctx = b.handle.context();
    let me = b.handle.address();
    let seller = m.seller.handle.address();
    let err = b
        .buyer
        .hire(&ctx, "refuse this", KIND, usdc("1"), PaymentMode::Escrow)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
    let ours = wallets::journal::read_entries(&b.journal).unwrap();
    let dispute = ours.iter().find(|e| e.kind == "dispute").unwrap();
    assert!(dispute.body["escrowDispute"]["txHash"].is_string());
    assert_eq!(ours.iter().filter(|e| e.kind == "receipt").count(), 0);
    let hash = dispute.body["agreementHash"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let escrow = escrow_id_of(me, escrow_job_id(&hash));
    let job = m.chain.minter.escrow_job(escrow).await.unwrap();
    assert_eq!(job.state, EscrowState::Disputed);
    assert_eq!(m.chain.balance(me).await, usdc("9.5"));
    assert_eq!(m.chain.balance(seller).await, Amount::ZERO);

    // The deployer is the dev deployment's arbiter: it refunds the buyer in full.
    m.chain
        .minter
        .resolve_escrow_dispute(escrow, job.amount)
        .await
        .unwrap();
    assert_eq!(
        m.chain.minter.escrow_job(escrow).await.unwrap().state,
        EscrowState::Resolved
    );
    assert_eq!(m.chain.balance(me).await, usdc("10"));
    assert_eq!(m.chain.balance(seller).await, Amount::ZERO);
    // Only once.
    assert!(m
        .chain
        .minter
        .resolve_escrow_dispute(escrow, Amount::ZERO)
        .await
        .is_err());
}
