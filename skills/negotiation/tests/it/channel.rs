//! `channel` mode on the embedded devnet over loopback WebSocket: one funding, many
//! orders paid by vouchers, one settlement; balances match the journals to the base
//! unit, the audit is clean against the chain, and a voucher buys one order only.

use std::sync::Arc;

use agent_sdk::prelude::*;
use negotiation::audit::{audit, ChainCheck};
use negotiation::test_utils::{entries, kinds, usdc, Market, KIND, TOKEN};
use negotiation::{
    negotiation_domain, order_id, token_domain, Buyer, BuyerDeal, ChannelState, Order, PaymentMode,
    Receipt, ReceiptNote, Receipts, CHANNEL_SETTLE_WINDOW, MAX_RECEIPTS,
};
use wallets::{Payment, Voucher};

#[tokio::test(flavor = "multi_thread")]
async fn a_channel_pays_many_orders_with_vouchers_and_settles_them_in_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), "s", 5, usdc("0.5")).await;
    let (chain, s) = (&m.chain, &m.seller);
    let chain_id = chain.addresses.chain_id;
    // The deposit of 8 orders (4 USDC) counts against the per-deal limit.
    let mut b = m.buyer(dir.path(), usdc("4")).await;
    b.buyer = b.buyer.clone().with_channel_orders(8);
    let me = b.handle.address();
    let seller_address = s.handle.address();
    let ctx = b.handle.context();

    let mut deals = Vec::new();
    for i in 0..5 {
        let task = format!("Forecast for Porto, day {i}");
        let deal = b
            .buyer
            .hire(&ctx, &task, KIND, usdc("1"), PaymentMode::Channel)
            .await
            .unwrap();
        assert_eq!(deal.result()["task"], task.as_str());
        deals.push(deal);
    }
    // One agreement, one channel: the first order opened it, the others reused it.
    let agreement = deals[0].agreement.agreement.hash();
    assert_eq!(deals[0].agreement.agreement.mode, PaymentMode::Channel);
    for (k, deal) in deals.iter().enumerate() {
        assert_eq!(deal.agreement.agreement.hash(), agreement);
        let cumulative = usdc("0.5").checked_mul(k as u128 + 1).unwrap();
        assert_eq!(deal.payment.payment.amount(), cumulative);
        assert_eq!(deal.dialogue, order_id(&agreement, cumulative));
        assert_eq!(deal.delivery.agreement, deal.dialogue);
        assert_eq!(
            deal.delivery.settlement.tx_hash,
            wallets::B256::ZERO,
            "no transaction per order"
        );
    }
    let Payment::ChannelVoucher { channel, .. } = deals[0].payment.payment else {
        panic!("a voucher: {:?}", deals[0].payment);
    };
    // The deposit (8 orders) is in the channel; nothing is paid before settlement.
    let contract = wallets::Address(chain.addresses.channel.0);
    assert_eq!(chain.balance(me).await, usdc("6"));
    assert_eq!(chain.balance(contract).await, usdc("4"));
    assert_eq!(chain.balance(seller_address).await, Amount::ZERO);
    let record = chain.minter.channel_record(channel.id()).await.unwrap();
    assert_eq!(record.state, ChannelState::Open);
    assert_eq!(
        record.expires_at,
        deals[0].agreement.agreement.deadline + CHANNEL_SETTLE_WINDOW
    );

    // A voucher buys one order: the same voucher with another task is refused, and so
    // is a voucher for part of an order.
    let last = deals[4].payment.clone();
    let replay = Order {
        channel_dialogue: deals[0].agreement.agreement.dialogue,
        agreement,
        task: "one more, on the same voucher".into(),
        payment: last.clone(),
    };
    let err = ctx
        .ask_in(
            deals[4].dialogue,
            seller_address,
            replay.clone(),
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already has a deal"), "{err}");
    let err = ctx
        .ask_in(
            ctx.new_dialogue(),
            seller_address,
            replay,
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not in its order's dialogue"),
        "{err}"
    );
    let odd = b
        .policy
        .authorize(&Payment::ChannelVoucher {
            domain: Voucher::domain(chain_id, contract),
            channel,
            voucher: Voucher {
                channel_id: channel.id(),
                cumulative_amount: usdc("2.75"),
            },
        })
        .unwrap();
    let err = ctx
        .ask_in(
            order_id(&agreement, usdc("2.75")),
            seller_address,
            Order {
                channel_dialogue: deals[0].agreement.agreement.dialogue,
                agreement,
                task: "a quarter order".into(),
                payment: odd,
            },
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("whole number of orders"), "{err}");

    // `hire` returned once the seller confirmed the order's receipt: all five are in
    // the seller's journal already.
    let theirs = wallets::journal::read_entries(&s.journal).unwrap();
    let count = |e: &[wallets::JournalEntry]| kinds(e).iter().filter(|k| **k == "receipt").count();
    assert_eq!(count(&theirs), 5, "{:?}", kinds(&theirs));
    // A batch of receipts: one already recorded is confirmed again and kept once; one
    // for an order never delivered is named in the refusal; too many are refused.
    let receipt_of = |id, result_hash| {
        let note = ReceiptNote {
            agreement: id,
            result_hash,
        };
        Receipt {
            agreement: id,
            result_hash,
            signature: b
                .wallet
                .sign_typed(&negotiation_domain(chain_id), &note)
                .unwrap(),
        }
    };
    let again = receipt_of(deals[1].dialogue, deals[1].delivery.result_hash);
    let never = order_id(&agreement, usdc("3.5"));
    let batch = Receipts {
        receipts: vec![
            again.clone(),
            receipt_of(never, deals[1].delivery.result_hash),
        ],
    };
    let channel_dialogue = deals[0].agreement.agreement.dialogue;
    let ask = |batch: Receipts| {
        ctx.ask_in(
            channel_dialogue,
            seller_address,
            batch,
            std::time::Duration::from_secs(10),
        )
    };
    let err = ask(batch).await.unwrap_err().to_string();
    assert!(err.contains(&format!("receipt for {never}")), "{err}");
    assert!(err.contains("nothing was delivered"), "{err}");
    let err = ask(Receipts {
        receipts: vec![again.clone(); MAX_RECEIPTS + 1],
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("at most 256"), "{err}");
    ask(Receipts {
        receipts: vec![again],
    })
    .await
    .unwrap();
    let theirs = wallets::journal::read_entries(&s.journal).unwrap();
    assert_eq!(count(&theirs), 5, "{:?}", kinds(&theirs));

    let settled = s
        .seller
        .settle_channels(&s.handle.context(), true)
        .await
        .unwrap();
    assert_eq!(settled.len(), 1);
    eprintln!(
        "negotiation (channel): settle+close {} gas for 5 orders",
        settled[0].1.gas_used
    );
    assert_eq!(chain.balance(seller_address).await, usdc("2.5"));
    assert_eq!(chain.balance(me).await, usdc("7.5"));
    assert_eq!(chain.balance(contract).await, Amount::ZERO);
    let record = chain.minter.channel_record(channel.id()).await.unwrap();
    assert_eq!(record.state, ChannelState::Closed);
    assert_eq!(record.paid, usdc("2.5"));

    // The journals: one funding, five voucher payments, deliveries and receipts on
    // each side, matched with each other and the chain.
    let ours = entries(&b, "receipt").await;
    let k = kinds(&ours);
    assert_eq!(k.iter().filter(|k| **k == "funding").count(), 1, "{k:?}");
    assert_eq!(k.iter().filter(|k| **k == "payment").count(), 5, "{k:?}");
    assert_eq!(k.iter().filter(|k| **k == "receipt").count(), 5, "{k:?}");
    let check = ChainCheck::new(chain.node.http_url(), chain.addresses);
    let report = audit(&[b.journal.clone(), s.journal.clone()], Some(&check))
        .await
        .unwrap();
    assert!(report.is_clean(), "{}", report.to_table());
    // The agreement and its five orders; funding and settlement on chain.
    assert_eq!(report.deals.len(), 6, "{}", report.to_table());
    let orders: Vec<_> = report
        .deals
        .iter()
        .filter(|d| d.channel_agreement == Some(agreement))
        .collect();
    assert_eq!(orders.len(), 5);
    assert!(orders.iter().all(|d| d.matched && d.stage == "received"));
    assert_eq!(report.chain.transactions_checked, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn channel_vouchers_count_against_the_spending_policy() {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), "s", 6, usdc("0.4")).await;
    let (chain, s) = (&m.chain, &m.seller);
    let directory = m.directory();
    let wallet = Arc::new(Wallet::random());
    // A daily budget of one USDC: two orders at 0.40, not three.
    let policy = wallets::SpendingPolicy::open(
        dir.path().join("tight.policy"),
        wallet.clone(),
        wallets::Limits {
            daily: Some(usdc("1")),
            ..wallets::Limits::default()
        },
    )
    .unwrap();
    let policy = chain.addresses.pin(policy, TOKEN);
    let handle = AgentBuilder::new("tight")
        .wallet(wallet.clone())
        .policy(Arc::new(policy))
        .directory(directory)
        .spawn(&m.hosts.0)
        .unwrap();
    let journal = wallets::Journal::open(dir.path().join("tight.journal"), wallet.clone()).unwrap();
    let settlement = chain.settlement(wallet.clone()).await;
    let buyer = negotiation::Buyer::new(
        wallet,
        negotiation::token_domain(&chain.addresses, TOKEN),
        journal,
    )
    .with_settlement(settlement);
    chain
        .minter
        .mint(handle.address(), usdc("10"))
        .await
        .unwrap();
    let ctx = handle.context();
    for _ in 0..2 {
        buyer
            .hire(
                &ctx,
                "Forecast for Braga",
                KIND,
                usdc("1"),
                PaymentMode::Channel,
            )
            .await
            .unwrap();
    }
    let err = buyer
        .hire(
            &ctx,
            "Forecast for Braga",
            KIND,
            usdc("1"),
            PaymentMode::Channel,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, negotiation::Error::PaymentRefused { .. }),
        "the third voucher is over the daily budget: {err}"
    );
    // Nothing beyond the two vouchers can be settled.
    s.seller
        .settle_channels(&s.handle.context(), true)
        .await
        .unwrap();
    assert_eq!(chain.balance(s.handle.address()).await, usdc("0.8"));
    assert_eq!(chain.balance(handle.address()).await, usdc("9.2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_channel_deposit_is_sized_to_the_buyers_balance() {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), "s", 7, usdc("0.4")).await;
    let contract = wallets::Address(m.chain.addresses.channel.0);

    let faro = |b: &negotiation::test_utils::BuyerAgent| {
        let (buyer, ctx) = (b.buyer.clone(), b.handle.context());
        async move {
            buyer
                .hire(
                    &ctx,
                    "Forecast for Faro",
                    KIND,
                    usdc("1"),
                    PaymentMode::Channel,
                )
                .await
        }
    };

    // 40 orders would need 16 USDC; the buyer holds 10, which pays for 25.
    let mut rich = m.buyer(&dir.path().join("rich"), usdc("10")).await;
    rich.buyer = rich.buyer.clone().with_channel_orders(40);
    let deal = faro(&rich).await.unwrap();
    assert_eq!(deal.payment.payment.amount(), usdc("0.4"));
    assert_eq!(m.chain.balance(contract).await, usdc("10"));
    assert_eq!(m.chain.balance(rich.handle.address()).await, Amount::ZERO);

    // A buyer holding nothing is refused before it signs a funding: nothing moves.
    let poor = m
        .buyer_holding(&dir.path().join("poor"), usdc("1"), Amount::ZERO)
        .await;
    let err = faro(&poor).await.unwrap_err();
    assert!(
        matches!(err, negotiation::Error::InsufficientBalance { balance, price, .. }
            if balance == Amount::ZERO && price == usdc("0.4")),
        "{err}"
    );
    assert!(err.to_string().contains("nothing was paid"), "{err}");
    assert_eq!(m.chain.balance(contract).await, usdc("10"));
    let kinds_of = |p: &std::path::Path| {
        wallets::journal::read_entries(p)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect::<Vec<_>>()
    };
    assert!(!kinds_of(&poor.journal).iter().any(|k| k == "funding"));

    // Regression: the deposit counted nothing against the per-deal limit. A buyer
    // allowed 1 USDC a deal opens a channel of 2 orders (0.80), whatever it asked for.
    let mut capped = m.buyer(&dir.path().join("capped"), usdc("1")).await;
    capped.buyer = capped.buyer.clone().with_channel_orders(40);
    faro(&capped).await.unwrap();
    assert_eq!(m.chain.balance(contract).await, usdc("10.8"));
    assert_eq!(m.chain.balance(capped.handle.address()).await, usdc("9.2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_voucher_of_an_order_the_seller_refused_pays_the_next_order() {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), "s", 8, usdc("0.25")).await;
    let (chain, s) = (&m.chain, &m.seller);
    let mut b = m.buyer(dir.path(), usdc("2")).await;
    b.buyer = b.buyer.clone().with_channel_orders(8);
    let ctx = b.handle.context();
    let hire = |buyer: &Buyer, task: &'static str| {
        let (buyer, ctx) = (buyer.clone(), ctx.clone());
        async move {
            buyer
                .hire(&ctx, task, KIND, usdc("1"), PaymentMode::Channel)
                .await
        }
    };
    let first = hire(&b.buyer, "Forecast for Braga").await.unwrap();
    let agreement = first.agreement.agreement.hash();
    // The second order is paid (its voucher leaves), then the seller's service fails:
    // the seller answers with its service's error and records nothing.
    let err = hire(&b.buyer, "fail: Forecast for Braga")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("service is down"), "{err}");
    let failed = order_id(&agreement, usdc("0.5"));
    let ours = entries(&b, "payment").await;
    let of_order = |entries: &[wallets::JournalEntry], id: wallets::B256, kind: &str| {
        entries
            .iter()
            .filter(|e| e.kind == kind)
            .filter(|e| e.body.get("orderId").and_then(|v| v.as_str()) == Some(&id.to_string()))
            .count()
    };
    // The voucher that left is journaled, alone.
    assert_eq!(of_order(&ours, failed, "payment"), 1, "{:?}", kinds(&ours));
    assert_eq!(of_order(&ours, failed, "delivery"), 0);
    let audit_stage = |id: wallets::B256| {
        let journal = b.journal.clone();
        async move {
            let report = audit(std::slice::from_ref(&journal), None).await.unwrap();
            report
                .deals
                .iter()
                .find(|d| d.agreement == id)
                .map(|d| d.stage.clone())
        }
    };
    assert_eq!(audit_stage(failed).await.as_deref(), Some("paid"));
    // The voucher is kept in the agent's store, so a buyer that restarts finds it: the
    // rest of the test runs on a new buyer skill (its own channel book, loaded from
    // the store) over the same journal, as after a restart.
    match ctx.state::<BuyerDeal>(failed).unwrap() {
        Some(BuyerDeal::Unused { payment, .. }) => {
            assert_eq!(payment.payment.amount(), usdc("0.5"));
        }
        other => panic!("the refused order's state: {other:?}"),
    }
    let wallet = b.wallet.clone();
    let settlement = chain.settlement(wallet.clone()).await;
    let restarted = Buyer::new(
        wallet.clone(),
        token_domain(&chain.addresses, TOKEN),
        wallets::Journal::open(&b.journal, wallet).unwrap(),
    )
    .with_settlement(settlement)
    .with_channel_orders(8);
    b.buyer = restarted.clone();

    // The next order is paid with that voucher, in the same dialogue, instead of a
    // voucher for 0.75 that would also pay for the refused order.
    let second = hire(&restarted, "Forecast for Braga, again").await.unwrap();
    assert_eq!(second.dialogue, failed);
    assert_eq!(second.payment.payment.amount(), usdc("0.5"));
    assert_eq!(second.result()["task"], "Forecast for Braga, again");
    // Then vouchers carry on.
    let third = hire(&restarted, "Forecast for Braga, once more")
        .await
        .unwrap();
    assert_eq!(third.payment.payment.amount(), usdc("0.75"));
    let ours = wallets::journal::read_entries(&b.journal).unwrap();
    assert_eq!(of_order(&ours, failed, "payment"), 1, "journaled once");
    assert_eq!(of_order(&ours, failed, "delivery"), 1);
    assert_eq!(audit_stage(failed).await.as_deref(), Some("received"));

    // Three orders delivered, three paid: the settlement moves 0.75, not 1.00.
    let seller_before = chain.balance(s.handle.address()).await;
    let settled = s
        .seller
        .settle_channels(&s.handle.context(), true)
        .await
        .unwrap();
    assert_eq!(settled.len(), 1);
    assert_eq!(
        chain.balance(s.handle.address()).await,
        seller_before.checked_add(usdc("0.75")).unwrap()
    );
    let report = audit(&[b.journal.clone(), s.journal.clone()], None)
        .await
        .unwrap();
    assert!(report.is_clean(), "{}", report.to_table());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seller_upkeep_settles_and_closes_a_channel_once_its_deadline_passes() {
    let dir = tempfile::tempdir().unwrap();
    let m = Market::start(dir.path(), "s", 9, usdc("0.5")).await;
    let (chain, s) = (&m.chain, &m.seller);
    let mut b = m.buyer(dir.path(), usdc("2")).await;
    // Orders may come for the next few seconds only; the deposit pays for 4.
    b.buyer = b
        .buyer
        .clone()
        .with_channel_orders(4)
        .with_channel_validity(std::time::Duration::from_secs(4));
    let me = b.handle.address();
    let deal = b
        .buyer
        .hire(
            &b.handle.context(),
            "Forecast for Lagos",
            KIND,
            usdc("1"),
            PaymentMode::Channel,
        )
        .await
        .unwrap();
    let contract = wallets::Address(chain.addresses.channel.0);
    assert_eq!(chain.balance(contract).await, usdc("2"));
    let seller_before = chain.balance(s.handle.address()).await;
    let ctx = s.handle.context();
    // Before the deadline the channel still takes orders: the upkeep leaves it open.
    let early = s.seller.upkeep(&ctx).await.unwrap();
    assert!(early.settled.is_empty(), "{early:?}");

    // The upkeep as `agora up` runs it, on a timer, settles once the deadline passed.
    let upkeep = s
        .seller
        .spawn_upkeep(ctx.clone(), std::time::Duration::from_millis(250));
    // Waits for the upkeep's write to the journal.
    let settled = entries(s, "channel_settlement")
        .await
        .into_iter()
        .find(|e| e.kind == "channel_settlement")
        .expect("the upkeep settles the channel after its deadline");
    upkeep.abort();
    assert!(deal.agreement.agreement.deadline <= settled.time / 1000 + 1);
    assert_eq!(settled.body["close"], true);
    assert_eq!(
        settled.body["agreementHash"],
        deal.agreement.agreement.hash().to_string()
    );
    // One order paid to the seller, the rest of the deposit back to the buyer.
    assert_eq!(chain.balance(contract).await, Amount::ZERO);
    assert_eq!(
        chain.balance(s.handle.address()).await,
        seller_before.checked_add(usdc("0.5")).unwrap()
    );
    assert_eq!(chain.balance(me).await, usdc("9.5"));
    let Payment::ChannelVoucher { channel, .. } = deal.payment.payment else {
        panic!("a voucher: {:?}", deal.payment);
    };
    let record = chain.minter.channel_record(channel.id()).await.unwrap();
    assert_eq!(record.state, ChannelState::Closed);
    assert_eq!(record.paid, usdc("0.5"));
    // Nothing is left to do.
    let later = s.seller.upkeep(&ctx).await.unwrap();
    assert!(later.settled.is_empty() && later.expired == 0, "{later:?}");
}
