//! Inference as a service on the real model and the embedded devnet: sellers of
//! `llm.complete` / `llm.extract`, buyers that check attestations and re-run jobs,
//! the escrow arbiter and the audit that re-runs journals.

use std::path::Path;

use llm::service::{
    rerun_journals, AttestedInference, DisputedInference, InferenceArbiter, InferenceKind,
    InferenceTask, Ruling, COMPLETE_KIND, EXTRACT_KIND,
};
use llm::test_utils::market::{task, Cheat, Check, LlmMarket, MarketConfig};
use llm::test_utils::shared_engine as engine;
use llm::{attestation_domain, Prompt, SamplingParams};
use negotiation::test_utils::{entries, usdc};
use negotiation::PaymentMode;
use serde_json::{json, Value};
use wallets::{Amount, B256};

async fn market(dir: &Path, config: MarketConfig) -> LlmMarket {
    LlmMarket::start(dir, config).await
}

fn reason(e: negotiation::Error) -> String {
    match e {
        negotiation::Error::Protocol { reason, .. } => reason,
        other => panic!("not a protocol error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_buyer_pays_one_seller_for_20_completions_in_one_channel_and_every_attestation_verifies()
{
    // Spot-check share 1.0: the buyer re-runs every one of the 20 jobs.
    let dir = tempfile::tempdir().unwrap();
    let m = market(
        dir.path(),
        MarketConfig {
            cheat: None,
            registered: None,
            price: usdc("0.01"),
            check: Check::Attestations { rerun_share: 1.0 },
            ..MarketConfig::new(InferenceKind::Complete)
        },
    )
    .await;
    let chain_id = m.chain.addresses.chain_id;
    let mut deals = Vec::new();
    for i in 0..20u32 {
        let deal = m
            .hire(&task(i, "Name a colour."), PaymentMode::Channel)
            .await
            .unwrap();
        deals.push(deal);
    }
    let agreement = deals[0].agreement.agreement.hash();
    let domain = attestation_domain(Some(chain_id));
    for (i, deal) in deals.iter().enumerate() {
        assert_eq!(deal.agreement.agreement.hash(), agreement, "one channel");
        assert_eq!(deal.agreement.agreement.kind, COMPLETE_KIND);
        let attested = AttestedInference::from_value(deal.delivery.attestation.as_ref().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(
            attested
                .signed
                .verify_record(&domain, &attested.record, Some(m.seller_address))
                .unwrap(),
            m.seller_address
        );
        assert_eq!(attested.record.model, engine().fingerprint());
        assert_eq!(attested.record.params.seed(), i as u32);
        assert_eq!(deal.result()["output"], attested.record.output.as_str());
        // And it re-runs to the same output here too.
        engine()
            .verify(
                &domain,
                &attested.record,
                &attested.signed,
                Some(m.seller_address),
            )
            .await
            .unwrap();
    }
    // 20 × 0.01 USDC, settled in one transaction.
    m.receipts(20).await;
    m.seller
        .settle_channels(&m.seller_agent.context(), true)
        .await
        .unwrap();
    assert_eq!(m.balances().await, (10_000_000 - 200_000, 200_000));

    // The journals keep the attestations: the audit re-runs all 40 deliveries (20 in
    // each journal) and finds nothing.
    let report = rerun_journals(&m.journals(), Some(&m.chain_check()), engine())
        .await
        .unwrap();
    assert!(report.is_clean(), "{}", report.to_table());
    let summary = report.attestations.as_ref().unwrap();
    assert_eq!((summary.checked, summary.skipped), (40, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_extraction_is_constrained_by_the_task_schema_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let m = market(
        dir.path(),
        MarketConfig {
            cheat: None,
            registered: None,
            price: usdc("0.01"),
            check: Check::Attestations { rerun_share: 1.0 },
            ..MarketConfig::new(InferenceKind::Extract)
        },
    )
    .await;
    let schema = json!({
        "type": "object",
        "properties": {"colour": {"type": "string", "maxLength": 12}},
        "required": ["colour"],
        "additionalProperties": false
    });
    let task = InferenceTask::extract(Prompt::user("Name a colour."), schema)
        .with_params(SamplingParams::greedy().with_seed(1));
    let deal = m.hire(&task, PaymentMode::Channel).await.unwrap();
    assert_eq!(deal.agreement.agreement.kind, EXTRACT_KIND);
    let output: Value = serde_json::from_str(deal.result()["output"].as_str().unwrap()).unwrap();
    assert!(output["colour"].is_string(), "{output}");
    // A completion task sent to an extraction seller is refused with a clear reason.
    let err = m
        .hire(&InferenceTask::complete("hi"), PaymentMode::Channel)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("this seller sells llm.extract"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn altered_outputs_are_caught_by_the_hash_check_and_by_the_re_run() {
    for (cheat, caught_by) in [
        (
            Cheat::KeepSignature,
            "the result is not the attested record's output",
        ),
        (
            Cheat::Resign,
            "the re-run does not match the attested inference: outputHash",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let m = market(
            dir.path(),
            MarketConfig {
                cheat: Some(cheat),
                registered: None,
                price: usdc("0.01"),
                check: Check::Attestations { rerun_share: 1.0 },
                ..MarketConfig::new(InferenceKind::Complete)
            },
        )
        .await;
        m.hire(&task(1, "Name a colour."), PaymentMode::Channel)
            .await
            .unwrap();
        let err = m
            .hire(&task(2, "Name a fruit (cheat)."), PaymentMode::Channel)
            .await
            .unwrap_err();
        let why = reason(err);
        assert!(why.contains(caught_by), "{cheat:?}: {why}");
        m.hire(&task(3, "Name a tree."), PaymentMode::Channel)
            .await
            .unwrap();
        // Channel mode: no receipt for the altered job, a dispute in the journal.
        let ours = entries(&m.buyer, "receipt").await;
        let disputes: Vec<_> = ours.iter().filter(|e| e.kind == "dispute").collect();
        assert_eq!(disputes.len(), 1, "{cheat:?}");
        assert!(disputes[0].body["delivery"]["result"]["output"]
            .as_str()
            .unwrap()
            .ends_with("(cheaper)"));
        assert_eq!(ours.iter().filter(|e| e.kind == "receipt").count(), 2);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_escrow_seller_caught_by_the_re_run_is_disputed_and_the_arbiter_refunds_the_buyer() {
    let dir = tempfile::tempdir().unwrap();
    let m = market(
        dir.path(),
        MarketConfig {
            cheat: Some(Cheat::Resign),
            registered: None,
            price: usdc("0.25"),
            check: Check::Attestations { rerun_share: 1.0 },
            ..MarketConfig::new(InferenceKind::Complete)
        },
    )
    .await;
    let err = m
        .hire(&task(7, "Name a river (cheat)."), PaymentMode::Escrow)
        .await
        .unwrap_err();
    assert!(reason(err).contains("outputHash"));
    // The price is held in escrow, disputed.
    assert_eq!(m.balances().await, (10_000_000 - 250_000, 0));
    let ours = wallets::journal::read_entries(&m.buyer.journal).unwrap();
    let dispute = ours.iter().find(|e| e.kind == "dispute").unwrap();
    assert!(dispute.body["escrowDispute"]["txHash"].is_string());
    let hash: B256 = dispute.body["agreementHash"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // The arbiter (the dev deployment's: the deployer) re-runs the job from the
    // buyer's journal and refunds the buyer in full.
    let evidence = DisputedInference::from_buyer_journal(&m.buyer.journal, hash).unwrap();
    let arbiter = InferenceArbiter::new(engine(), m.chain.minter.clone());
    let resolution = arbiter.resolve(&evidence).await.unwrap();
    match &resolution.ruling {
        Ruling::RefundBuyer { reason } => assert!(reason.contains("outputHash"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(resolution.to_buyer.base_units(), 250_000);
    assert_eq!(m.balances().await, (10_000_000, 0));
    let escrow = wallets::Address(m.chain.addresses.escrow.0);
    assert_eq!(m.chain.balance(escrow).await, Amount::ZERO);
    // Ruled once.
    assert!(arbiter.resolve(&evidence).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_honest_seller_disputed_by_its_buyer_is_paid_by_the_arbiter() {
    let dir = tempfile::tempdir().unwrap();
    let m = market(
        dir.path(),
        MarketConfig {
            cheat: None,
            registered: None,
            price: usdc("0.25"),
            check: Check::RefuseAll,
            ..MarketConfig::new(InferenceKind::Complete)
        },
    )
    .await;
    let err = m
        .hire(&task(8, "Name a mountain."), PaymentMode::Escrow)
        .await
        .unwrap_err();
    assert!(reason(err).contains("does not like it"));
    let ours = wallets::journal::read_entries(&m.buyer.journal).unwrap();
    let hash: B256 = ours.iter().find(|e| e.kind == "dispute").unwrap().body["agreementHash"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let evidence = DisputedInference::from_buyer_journal(&m.buyer.journal, hash).unwrap();
    let resolution = InferenceArbiter::new(engine(), m.chain.minter.clone())
        .resolve(&evidence)
        .await
        .unwrap();
    assert_eq!(resolution.ruling, Ruling::PaySeller);
    assert_eq!(resolution.to_buyer, Amount::ZERO);
    assert_eq!(m.balances().await, (10_000_000 - 250_000, 250_000));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_buyer_refuses_a_seller_whose_registered_model_is_not_the_attested_one() {
    let other = B256([0x11; 32]);
    let dir = tempfile::tempdir().unwrap();
    let m = market(
        dir.path(),
        MarketConfig {
            cheat: None,
            registered: Some(other),
            price: usdc("0.01"),
            check: Check::Attestations { rerun_share: 0.0 },
            ..MarketConfig::new(InferenceKind::Complete)
        },
    )
    .await;
    let why = reason(
        m.hire(&task(1, "Name a colour."), PaymentMode::Channel)
            .await
            .unwrap_err(),
    );
    assert!(
        why.contains(&format!(
            "the attested model {} is not the seller's registered model {other}",
            engine().fingerprint().to_b256()
        )),
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_buyer_refuses_a_suspended_model() {
    let dir = tempfile::tempdir().unwrap();
    let m = market(
        dir.path(),
        MarketConfig {
            cheat: None,
            registered: None,
            price: usdc("0.01"),
            check: Check::Attestations { rerun_share: 0.0 },
            ..MarketConfig::new(InferenceKind::Complete)
        },
    )
    .await;
    m.hire(&task(1, "Name a colour."), PaymentMode::Channel)
        .await
        .unwrap();
    // The governor (the deployer on a dev chain) pulls the kill switch.
    m.chain
        .minter
        .registry
        .suspend_model(engine().fingerprint().to_b256().0, "test".into())
        .send()
        .await
        .unwrap()
        .await
        .unwrap();
    let why = reason(
        m.hire(&task(2, "Name a colour."), PaymentMode::Channel)
            .await
            .unwrap_err(),
    );
    assert!(why.contains("is suspended"), "{why}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_re_runs_journals_and_catches_a_tampered_output_the_buyer_did_not_spot() {
    // A buyer that re-runs nothing accepts a re-signed altered output: the
    // attestation's hashes hold, only a re-run shows the output is not the model's.
    let dir = tempfile::tempdir().unwrap();
    let m = market(
        dir.path(),
        MarketConfig {
            cheat: Some(Cheat::Resign),
            registered: None,
            price: usdc("0.01"),
            check: Check::Attestations { rerun_share: 0.0 },
            ..MarketConfig::new(InferenceKind::Complete)
        },
    )
    .await;
    m.hire(&task(1, "Name a colour."), PaymentMode::Channel)
        .await
        .unwrap();
    let tampered = m
        .hire(&task(2, "Name a fruit (cheat)."), PaymentMode::Channel)
        .await
        .unwrap();
    m.receipts(2).await;
    let journals = m.journals();
    let without = negotiation::audit::audit(&journals, None).await.unwrap();
    assert!(without.is_clean(), "{}", without.to_table());

    let report = rerun_journals(&journals, None, engine()).await.unwrap();
    let found: Vec<_> = report
        .discrepancies
        .iter()
        .map(|d| (d.journal.as_str(), d.entry, d.agreement, d.reason.as_str()))
        .collect();
    // Once in each journal, at its delivery entry of the tampered order.
    assert_eq!(found.len(), 2, "{}", report.to_table());
    for (journal, entry, agreement, why) in &found {
        assert_eq!(*agreement, Some(tampered.dialogue));
        assert!(
            why.starts_with("inference re-run: outputHash: attested"),
            "{why}"
        );
        let entries = wallets::journal::read_entries(Path::new(journal)).unwrap();
        let at = &entries[entry.unwrap() as usize];
        assert_eq!(at.kind, "delivery");
        assert_eq!(at.body["orderId"], json!(tampered.dialogue));
    }
    let summary = report.attestations.as_ref().unwrap();
    assert_eq!((summary.checked, summary.skipped), (4, 0));
    // Deterministic: the same journals give the same report.
    let again = rerun_journals(&journals, None, engine()).await.unwrap();
    assert_eq!(again.to_json(), report.to_json());
    assert_eq!(again.to_table(), report.to_table());
}
