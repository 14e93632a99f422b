//! `negotiation::audit` on the journals of real deals on the embedded devnet.

use std::fs;
use std::path::{Path, PathBuf};

use negotiation::audit::{audit, AuditReport, ChainCheck};
use negotiation::journal::JournalBody;
use negotiation::test_utils::{settled_deal, settled_deal_on, usdc, Chain, SettledDeal};
use negotiation::PaymentMode;
use serde_json::Value;
use wallets::journal::{self, canonical_json};
use wallets::Journal;

fn chain_check(f: &SettledDeal) -> ChainCheck {
    ChainCheck::new(f.chain.node.http_url(), f.chain.addresses)
}

fn journals(f: &SettledDeal) -> Vec<PathBuf> {
    vec![f.buyer.journal.clone(), f.seller.journal.clone()]
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(path, text).unwrap();
}

fn at<'a>(report: &'a AuditReport, path: &Path, entry: u64) -> Vec<&'a str> {
    let path = path.display().to_string();
    report
        .discrepancies
        .iter()
        .filter(|d| d.journal == path && d.entry == Some(entry))
        .map(|d| d.reason.as_str())
        .collect()
}

async fn clean_with_chain(mode: PaymentMode) {
    let dir = tempfile::tempdir().unwrap();
    let f = settled_deal(dir.path(), mode).await;
    let check = chain_check(&f);
    let report = audit(&journals(&f), Some(&check)).await.unwrap();
    assert!(report.is_clean(), "{}", report.to_table());
    assert!(report.chain.checked);
    // authorization: the transfer; escrow: the delivery and the lock and the release.
    let txs = if mode == PaymentMode::Escrow { 3 } else { 1 };
    assert_eq!(report.chain.transactions_checked, txs, "{report:?}");
    assert_eq!(report.deals.len(), 1);
    let deal = &report.deals[0];
    assert_eq!(deal.agreement, f.deal.agreement.agreement.hash());
    assert_eq!(deal.price, f.deal.price());
    assert_eq!(deal.stage, "received");
    assert!(deal.matched);
    for (j, path) in report
        .journals
        .iter()
        .zip([&f.buyer.journal, &f.seller.journal])
    {
        assert_eq!(j.path, path.display().to_string());
        assert_eq!(j.entries_checked, lines(path).len() as u64);
        assert!(j.verified);
        assert_eq!((j.deals, j.deals_matched), (1, 1));
    }
    let table = report.to_table();
    assert!(table.contains("no discrepancies"), "{table}");
    // Every entry reads into its typed body, which writes the same canonical bytes.
    for path in journals(&f) {
        for e in journal::read_entries(&path).unwrap() {
            let body = JournalBody::from_entry(&e).unwrap();
            assert_eq!(body.kind(), e.kind);
            assert_eq!(
                canonical_json(&body.to_value().unwrap()),
                canonical_json(&e.body)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_journals_of_an_authorization_deal_audit_clean_against_the_chain() {
    clean_with_chain(PaymentMode::Authorization).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_journals_of_an_escrow_deal_audit_clean_against_the_chain() {
    clean_with_chain(PaymentMode::Escrow).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_that_does_not_match_the_chain_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let f = settled_deal(dir.path(), PaymentMode::Authorization).await;
    // The buyer's journal re-signed by the buyer, with the payment's transaction
    // swapped for another one (the mint): internally consistent, but not on chain.
    let mint = f
        .chain
        .minter
        .mint(f.buyer.handle.address(), negotiation::test_utils::usdc("1"))
        .await
        .unwrap();
    let forged = dir.path().join("forged.journal");
    let mut j = Journal::open(&forged, f.buyer.wallet.clone()).unwrap();
    let mut payment_index = None;
    for e in journal::read_entries(&f.buyer.journal).unwrap() {
        let mut body = e.body.clone();
        if e.kind == "payment" {
            body["settlement"]["txHash"] = serde_json::json!(mint.tx_hash);
            payment_index = Some(e.index);
        }
        if e.kind == "delivery" {
            body["txHash"] = serde_json::json!(mint.tx_hash);
        }
        j.append(&e.kind, body).unwrap();
    }
    let report = audit(std::slice::from_ref(&forged), Some(&chain_check(&f)))
        .await
        .unwrap();
    let reasons = at(&report, &forged, payment_index.unwrap());
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("moved no 1500000 base units")),
        "{}",
        report.to_table()
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("did not use the payment's authorization")),
        "{}",
        report.to_table()
    );
}

/// Changes one leaf of a JSON value by one character (or one unit).
fn mutate(v: &mut Value, target: usize, seen: &mut usize) -> bool {
    match v {
        Value::Object(map) => map.values_mut().any(|x| mutate(x, target, seen)),
        Value::Array(items) => items.iter_mut().any(|x| mutate(x, target, seen)),
        Value::Null => false,
        leaf => {
            if *seen != target {
                *seen += 1;
                return false;
            }
            *leaf = match leaf {
                Value::Bool(b) => Value::Bool(!*b),
                Value::Number(n) => Value::from(n.as_u64().unwrap() ^ 1),
                Value::String(s) => {
                    let last = s.pop().unwrap_or('x');
                    s.push(if last == '0' { '1' } else { '0' });
                    Value::String(s.clone())
                }
                _ => unreachable!(),
            };
            true
        }
    }
}

/// A one-character change in any field of any entry of either journal is reported
/// at that entry.
#[tokio::test(flavor = "multi_thread")]
async fn a_change_to_any_field_of_any_entry_is_reported_at_that_entry() {
    let dir = tempfile::tempdir().unwrap();
    let f = settled_deal(dir.path(), PaymentMode::Authorization).await;
    let paths = journals(&f);
    let mut checked = 0;
    for (which, path) in paths.iter().enumerate() {
        let original = lines(path);
        let copy = dir.path().join(format!("tampered-{which}.journal"));
        let other = paths[1 - which].clone();
        for (i, line) in original.iter().enumerate() {
            for field in 0.. {
                let mut entry: Value = serde_json::from_str(line).unwrap();
                if !mutate(&mut entry, field, &mut 0) {
                    break;
                }
                let mut tampered = original.clone();
                tampered[i] = canonical_json(&entry);
                write_lines(&copy, &tampered);
                let report = audit(&[copy.clone(), other.clone()], None).await.unwrap();
                let reasons = at(&report, &copy, i as u64);
                assert!(
                    reasons
                        .iter()
                        .any(|r| r.starts_with("journal does not verify")),
                    "journal {which}, entry {i}, field {field}: {}\n{}",
                    tampered[i],
                    report.to_table()
                );
                assert!(!report.is_clean());
                checked += 1;
            }
        }
    }
    eprintln!("audit: {checked} one-field changes, each reported at its entry");
    assert!(checked > 200, "{checked}");
}

/// The seller's journal stops before its payment: the buyer's payment, delivery and
/// receipt have no counterpart.
#[tokio::test(flavor = "multi_thread")]
async fn a_buyer_payment_the_seller_never_journaled_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let f = settled_deal(dir.path(), PaymentMode::Authorization).await;
    let seller = lines(&f.seller.journal);
    let cut = seller
        .iter()
        .position(|l| l.contains(r#""kind":"payment""#))
        .unwrap();
    let short = dir.path().join("seller-short.journal");
    write_lines(&short, &seller[..cut]);
    let buyer = journal::read_entries(&f.buyer.journal).unwrap();
    let index_of = |kind: &str| buyer.iter().find(|e| e.kind == kind).unwrap().index;

    let report = audit(&[f.buyer.journal.clone(), short.clone()], None)
        .await
        .unwrap();
    assert!(!report.is_clean());
    for kind in ["payment", "delivery", "receipt"] {
        let reasons = at(&report, &f.buyer.journal, index_of(kind));
        let wanted = format!("buyer journaled a {kind} that the seller's journal");
        assert!(
            reasons.iter().any(|r| r.contains(&wanted)),
            "{kind}: {}",
            report.to_table()
        );
    }
    assert!(!report.deals[0].matched);
    assert_eq!(
        report.journals.iter().map(|j| j.deals_matched).sum::<u64>(),
        0
    );
}

/// A journal, re-signed by its owner, with an entry of a kind no negotiation writes
/// and a receipt with a field none writes: each is reported at its entry, naming its
/// index and kind, and the audit goes on.
#[tokio::test(flavor = "multi_thread")]
async fn unknown_kinds_and_fields_are_reported_at_their_entry() {
    let dir = tempfile::tempdir().unwrap();
    let f = settled_deal(dir.path(), PaymentMode::Authorization).await;
    let forged = dir.path().join("forged.journal");
    let mut j = Journal::open(&forged, f.buyer.wallet.clone()).unwrap();
    let (mut offer, mut receipt) = (None, None);
    for e in journal::read_entries(&f.buyer.journal).unwrap() {
        let mut body = e.body.clone();
        if e.kind == "receipt" {
            body["note"] = serde_json::json!("thanks");
        }
        let written = j.append(&e.kind, body).unwrap();
        if e.kind == "receipt" {
            receipt = Some(written.index);
            offer = Some(j.append("offer", serde_json::json!({})).unwrap().index);
        }
    }
    let report = audit(std::slice::from_ref(&forged), None).await.unwrap();
    let (offer, receipt) = (offer.unwrap(), receipt.unwrap());
    let reasons = at(&report, &forged, offer);
    assert!(
        reasons.iter().any(|r| r.starts_with(&format!(
            "malformed entry: journal entry {offer} (offer): unknown entry kind"
        ))),
        "{}",
        report.to_table()
    );
    let reasons = at(&report, &forged, receipt);
    assert!(
        reasons.iter().any(|r| r.starts_with(&format!(
            "malformed entry: journal entry {receipt} (receipt): unknown field `note`"
        ))),
        "{}",
        report.to_table()
    );
    // The entries before were audited: the acceptance and the payment are there.
    assert_eq!(report.deals.len(), 1, "{}", report.to_table());
    assert_eq!(report.deals[0].stage, "delivered");
}

/// A buyer's journal, re-signed by the buyer, without its delivery entry: its receipt
/// acknowledges a delivery it never journaled.
#[tokio::test(flavor = "multi_thread")]
async fn a_receipt_without_a_delivery_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let f = settled_deal(dir.path(), PaymentMode::Authorization).await;
    let forged = dir.path().join("forged.journal");
    let mut j = Journal::open(&forged, f.buyer.wallet.clone()).unwrap();
    let mut receipt_index = None;
    for e in journal::read_entries(&f.buyer.journal).unwrap() {
        if e.kind != "delivery" {
            let written = j.append(&e.kind, e.body.clone()).unwrap();
            if e.kind == "receipt" {
                receipt_index = Some(written.index);
            }
        }
    }
    let report = audit(std::slice::from_ref(&forged), None).await.unwrap();
    let reasons = at(&report, &forged, receipt_index.unwrap());
    assert!(
        reasons.contains(&"receipt without a delivery for the agreement"),
        "{}",
        report.to_table()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn audits_are_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let f = settled_deal(dir.path(), PaymentMode::Authorization).await;
    let check = chain_check(&f);
    let mut paths = journals(&f);
    // A second journal of the seller (a discrepancy too, so ordering is covered).
    let short = dir.path().join("short.journal");
    let seller = lines(&f.seller.journal);
    write_lines(&short, &seller[..seller.len() - 1]);
    paths.push(short.clone());
    let first = audit(&paths, Some(&check)).await.unwrap();
    paths.reverse();
    paths.push(paths[0].clone());
    let second = audit(&paths, Some(&check)).await.unwrap();
    assert_eq!(first.to_json(), second.to_json());
    assert_eq!(first.to_table(), second.to_table());
    let short = short.display().to_string();
    assert!(
        first.discrepancies.iter().any(|d| d.journal == short
            && d.entry.is_none()
            && d.reason.contains("only that journal is cross-checked")),
        "{}",
        first.to_table()
    );
    assert!(
        first.deals[0].matched,
        "the seller's full journal is the one matched"
    );
}

/// A crash mid-append leaves a partial last line: ignored, as readers do, and noted.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_append_is_noted_not_reported() {
    let dir = tempfile::tempdir().unwrap();
    let f = settled_deal(dir.path(), PaymentMode::Authorization).await;
    let torn = dir.path().join("torn.journal");
    let mut bytes = fs::read(&f.buyer.journal).unwrap();
    bytes.extend_from_slice(br#"{"body":{"agree"#);
    fs::write(&torn, bytes).unwrap();
    let report = audit(&[torn, f.seller.journal.clone()], None)
        .await
        .unwrap();
    assert!(report.is_clean(), "{}", report.to_table());
    assert_eq!(report.journals[1].torn_tail_bytes, 15);
    assert!(report
        .to_table()
        .contains("15 bytes of an interrupted append"));
}

/// The three payment modes on anvil (a real node, from the npm registry): each deal is
/// paid on chain to the base unit and both journals audit clean against it.
#[tokio::test(flavor = "multi_thread")]
async fn each_payment_mode_settles_and_audits_clean_on_anvil() {
    for mode in [
        PaymentMode::Authorization,
        PaymentMode::Escrow,
        PaymentMode::Channel,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let f = settled_deal_on(Chain::start_on_anvil().await, dir.path(), mode).await;
        assert_eq!(f.deal.price(), usdc("1.5"), "{mode}");
        let seller = f.seller.handle.address();
        assert_eq!(f.chain.balance(seller).await, usdc("1.5"), "{mode}");
        assert_eq!(
            f.chain.balance(f.buyer.handle.address()).await,
            usdc("8.5"),
            "{mode}"
        );
        let report = audit(&journals(&f), Some(&chain_check(&f))).await.unwrap();
        assert!(report.is_clean(), "{mode}: {}", report.to_table());
        assert!(report.chain.transactions_checked >= 1, "{mode}");
    }
}

/// Flips one hex digit inside the first signature string of `v` (`signature`, or the
/// agreement's `sellerSignature`; in its `r` half, so that it still parses); whether
/// one was found.
fn flip_signature(v: &mut Value) -> bool {
    match v {
        Value::Object(map) => {
            let key = ["signature", "sellerSignature"]
                .into_iter()
                .find(|k| map.get(*k).is_some_and(Value::is_string));
            if let Some(Value::String(s)) = key.and_then(|k| map.get_mut(k)) {
                let flipped = if s.as_bytes()[10] == b'a' { "b" } else { "a" };
                s.replace_range(10..11, flipped);
                return true;
            }
            map.values_mut().any(flip_signature)
        }
        Value::Array(items) => items.iter_mut().any(flip_signature),
        _ => false,
    }
}

/// A step journaled twice is fine when both entries agree (a retried step may do
/// that); a second one that differs is reported at its own entry.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_step_that_disagrees_with_the_first_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let f = settled_deal(dir.path(), PaymentMode::Authorization).await;
    let kinds = [
        (
            "acceptance",
            "a second acceptance of the agreement disagrees with entry",
        ),
        (
            "payment",
            "a second payment for the agreement disagrees with entry",
        ),
        (
            "delivery",
            "a second delivery for the agreement disagrees with entry",
        ),
        (
            "receipt",
            "a second receipt for the agreement disagrees with entry",
        ),
    ];
    let original = journal::read_entries(&f.buyer.journal).unwrap();
    for (kind, expected) in kinds {
        let forged = dir.path().join(format!("second-{kind}.journal"));
        let mut j = Journal::open(&forged, f.buyer.wallet.clone()).unwrap();
        let mut first = None;
        for e in &original {
            let written = j.append(&e.kind, e.body.clone()).unwrap();
            if e.kind == kind {
                first = Some(written.index);
            }
        }
        let step = original.iter().find(|e| e.kind == kind).unwrap();
        // The same step again agrees with the first.
        let same = j.append(kind, step.body.clone()).unwrap();
        let mut body = step.body.clone();
        assert!(flip_signature(&mut body), "{kind} carries a signature");
        let differing = j.append(kind, body).unwrap();
        let report = audit(std::slice::from_ref(&forged), None).await.unwrap();
        let first = first.unwrap();
        assert!(
            !at(&report, &forged, same.index)
                .iter()
                .any(|r| r.starts_with("a second")),
            "{kind}: {}",
            report.to_table()
        );
        assert!(
            at(&report, &forged, differing.index).contains(&format!("{expected} {first}").as_str()),
            "{kind}: {}",
            report.to_table()
        );
    }
}
