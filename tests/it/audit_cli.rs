//! `agora audit` on the journals of a real deal on the embedded devnet: exit codes,
//! tables, JSON, determinism, the chain check.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use negotiation::test_utils::{settled_deal, SettledDeal};
use negotiation::PaymentMode;

fn agora_audit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agora"))
        .arg("audit")
        .args(args)
        .output()
        .unwrap()
}

fn text(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn agora_audit_reports_clean_journals_discrepancies_and_errors_by_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let f = settled_deal(dir.path(), PaymentMode::Authorization).await;
    let addresses = dir.path().join("addresses.json");
    std::fs::write(
        &addresses,
        serde_json::to_string_pretty(&f.chain.addresses).unwrap(),
    )
    .unwrap();
    let url = f.chain.node.http_url();
    let (buyer, seller) = (text(&f.buyer.journal), text(&f.seller.journal));

    // Clean, with the chain check, as JSON: exit 0, and byte-identical when run again.
    let args = [
        buyer,
        seller,
        "--json",
        "--rpc",
        &url,
        "--addresses",
        text(&addresses),
    ];
    let first = agora_audit(&args);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&first.stdout),
        String::from_utf8_lossy(&first.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(json["discrepancies"], serde_json::json!([]));
    assert_eq!(json["chain"]["checked"], true);
    assert_eq!(json["deals"][0]["matched"], true);
    assert_eq!(json["deals"][0]["stage"], "received");
    let again = agora_audit(&[
        seller,
        buyer,
        "--json",
        "--rpc",
        &url,
        "--addresses",
        text(&addresses),
    ]);
    assert_eq!(first.stdout, again.stdout, "same journals, same report");

    // Without --rpc: tables, and a note that the chain was not checked.
    let table = agora_audit(&[buyer, seller]);
    assert_eq!(table.status.code(), Some(0));
    let out = String::from_utf8(table.stdout).unwrap();
    assert!(out.contains("no discrepancies"), "{out}");
    assert!(out.contains("chain: skipped"), "{out}");

    // The seller's journal without its last entry (the receipt): exit 1, named at the
    // buyer's receipt.
    let short = dir.path().join("short.journal");
    let content = std::fs::read_to_string(&f.seller.journal).unwrap();
    let kept: Vec<&str> = content.lines().collect();
    std::fs::write(&short, kept[..kept.len() - 1].join("\n") + "\n").unwrap();
    let found = agora_audit(&[buyer, text(&short)]);
    assert_eq!(found.status.code(), Some(1));
    let out = String::from_utf8(found.stdout).unwrap();
    assert!(
        out.contains("buyer journaled a receipt that the seller's journal"),
        "{out}"
    );

    // Usage and I/O errors: exit 2.
    let missing = dir.path().join("missing.journal");
    let io = agora_audit(&[text(&missing)]);
    assert_eq!(io.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&io.stderr).contains("missing.journal"));
    assert_eq!(agora_audit(&[buyer, "--rpc", &url]).status.code(), Some(2));
    assert_eq!(agora_audit(&[]).status.code(), Some(2));
}

/// The line of `journal` whose entry is of `kind`: its index and text.
fn entry_of_kind(journal: &Path, kind: &str) -> (usize, String) {
    let content = std::fs::read_to_string(journal).unwrap();
    content
        .lines()
        .enumerate()
        .find(|(_, l)| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"] == kind)
        .map(|(i, l)| (i, l.to_owned()))
        .unwrap()
}

/// A settled deal's journals audited after tampering: the buyer's payment entry, in
/// a copy of the buyer's journal, has its kind rewritten into markup, so its hash no
/// longer verifies.
pub(crate) struct TamperedAudit {
    /// The tampered copy of the buyer's journal.
    pub(crate) journal: PathBuf,
    /// The index of the tampered entry.
    pub(crate) entry: usize,
    /// The page `agora audit --html` wrote for the copy and the seller's journal.
    pub(crate) html: PathBuf,
    /// The tampered entry's anchor on that page: `j<journal>-e<entry>`.
    pub(crate) anchor: String,
    /// The same audit as JSON (`--json`).
    pub(crate) json: serde_json::Value,
}

/// Tampers with the buyer's payment entry of `f` in a copy in `dir`, and audits the
/// copy with the seller's journal into `dir/tampered.html`: exit 1, with a
/// discrepancy at that entry.
pub(crate) fn audit_tampered(dir: &Path, f: &SettledDeal) -> TamperedAudit {
    let (at, line) = entry_of_kind(&f.buyer.journal, "payment");
    let evil = "<script>alert(1)</script>";
    let content = std::fs::read_to_string(&f.buyer.journal).unwrap();
    let tampered_line = line.replace("\"kind\":\"payment\"", &format!("\"kind\":\"{evil}\""));
    assert_ne!(tampered_line, line);
    let tampered = dir.join("tampered.journal");
    std::fs::write(&tampered, content.replacen(&line, &tampered_line, 1)).unwrap();
    let seller = text(&f.seller.journal);
    let html = dir.join("tampered.html");
    let found = agora_audit(&[text(&tampered), seller, "--html", text(&html)]);
    assert_eq!(found.status.code(), Some(1));

    // The journals in the report's order give the anchors: `j<journal>-e<entry>`.
    let json = agora_audit(&[text(&tampered), seller, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let journal = json["journals"]
        .as_array()
        .unwrap()
        .iter()
        .position(|j| j["path"] == text(&tampered))
        .unwrap();
    assert!(
        json["discrepancies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["journal"] == text(&tampered) && d["entry"] == at),
        "{json:#}"
    );
    TamperedAudit {
        journal: tampered,
        entry: at,
        html,
        anchor: format!("j{journal}-e{at}"),
        json,
    }
}

/// `agora audit --html`: a clean report, and a tampered journal whose discrepancy is
/// marked at its entry; byte-identical across runs; journal text escaped.
#[tokio::test(flavor = "multi_thread")]
async fn agora_audit_html_marks_the_discrepancy_at_its_entry_and_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let f = settled_deal(dir.path(), PaymentMode::Authorization).await;
    let (buyer, seller) = (text(&f.buyer.journal), text(&f.seller.journal));
    let page = |name: &str| dir.path().join(name);

    // Clean: the verdict, the deal's timeline with its transaction, no marks.
    let clean = agora_audit(&[buyer, seller, "--html", text(&page("clean.html"))]);
    assert_eq!(clean.status.code(), Some(0));
    let html = std::fs::read_to_string(page("clean.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(html.contains("Clean: no discrepancies"));
    assert!(!html.contains("discrepancy\""));
    let (_, payment) = entry_of_kind(&f.buyer.journal, "payment");
    let payment: serde_json::Value = serde_json::from_str(&payment).unwrap();
    let tx = payment["body"]["settlement"]["txHash"].as_str().unwrap();
    assert!(
        html.contains(tx),
        "the payment's transaction in the timeline"
    );
    let agreement = payment["body"]["agreementHash"].as_str().unwrap();
    assert!(html.contains(&format!("id=\"deal-{agreement}\"")));
    // Self-contained: no script, nothing fetched.
    for outside in ["<script", "src=", "<link", "http://", "https://"] {
        assert!(!html.contains(outside), "{outside}");
    }
    // The same journals, the other way round: the same bytes.
    agora_audit(&[seller, buyer, "--html", text(&page("again.html"))]);
    assert_eq!(html, std::fs::read_to_string(page("again.html")).unwrap());

    // The buyer's payment entry, its kind rewritten into markup.
    let t = audit_tampered(dir.path(), &f);
    let html = std::fs::read_to_string(&t.html).unwrap();
    assert!(!html.contains("<script"), "journal text is escaped");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let anchor = &t.anchor;
    let discrepancies = t.json["discrepancies"].as_array().unwrap();
    assert!(
        html.contains(&format!("<tr class=\"discrepancy\" id=\"{anchor}\">")),
        "the tampered entry is marked: {html}"
    );
    assert!(
        html.contains(&format!("href=\"#{anchor}\"")),
        "and linked from the summary"
    );
    assert!(html.contains(&format!("{} discrepancies", discrepancies.len())));
    // Each discrepancy at an entry is marked there, once.
    let marked = html.matches("<tr class=\"discrepancy\" id=").count();
    let at_entries: BTreeSet<(String, u64)> = discrepancies
        .iter()
        .filter_map(|d| Some((d["journal"].as_str()?.to_owned(), d["entry"].as_u64()?)))
        .collect();
    assert_eq!(marked, at_entries.len(), "{html}");

    let again = page("tampered-again.html");
    agora_audit(&[seller, text(&t.journal), "--html", text(&again)]);
    assert_eq!(html, std::fs::read_to_string(&again).unwrap());
}

/// `agora audit --model` re-runs the attested inferences the journals keep: clean for
/// honest jobs, a discrepancy naming the delivery entry and the field for an output
/// the seller altered (and re-signed) that the buyer did not spot-check.
#[cfg(feature = "llm")]
#[tokio::test(flavor = "multi_thread")]
async fn agora_audit_model_re_runs_attested_inferences_and_catches_a_tampered_output() {
    use llm::service::InferenceKind;
    use llm::test_utils::market::{task, Cheat, Check, LlmMarket, MarketConfig};

    let dir = tempfile::tempdir().unwrap();
    let m = LlmMarket::start(
        dir.path(),
        MarketConfig {
            cheat: Some(Cheat::Resign),
            check: Check::Attestations { rerun_share: 0.0 },
            ..MarketConfig::new(InferenceKind::Complete)
        },
    )
    .await;
    m.hire(&task(1, "Name a colour."), PaymentMode::Channel)
        .await
        .unwrap();
    m.receipts(1).await;
    let model = llm::test_utils::model_path();
    let (buyer, seller) = (text(&m.buyer.journal), text(&m.seller_journal));

    // Honest so far: clean, both deliveries re-run.
    let clean = agora_audit(&[buyer, seller, "--model", text(&model)]);
    let out = String::from_utf8_lossy(&clean.stdout);
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    assert!(out.contains("no discrepancies"), "{out}");
    assert!(
        out.contains("attestations: inference re-run of 2 deliveries"),
        "{out}"
    );

    // A tampered output the buyer accepted: exit 1, at both journals' delivery entry.
    let tampered = m
        .hire(&task(2, "Name a fruit (cheat)."), PaymentMode::Channel)
        .await
        .unwrap();
    m.receipts(2).await;
    let caught = agora_audit(&[buyer, seller, "--model", text(&model), "--json"]);
    assert_eq!(caught.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&caught.stdout).unwrap();
    let found = json["discrepancies"].as_array().unwrap();
    assert_eq!(found.len(), 2, "{json:#}");
    for d in found {
        assert_eq!(d["agreement"], serde_json::json!(tampered.dialogue));
        let reason = d["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("inference re-run: outputHash: attested"),
            "{reason}"
        );
        let entries =
            wallets::journal::read_entries(Path::new(d["journal"].as_str().unwrap())).unwrap();
        let at = &entries[d["entry"].as_u64().unwrap() as usize];
        assert_eq!(at.kind, "delivery");
    }
    let again = agora_audit(&[seller, buyer, "--model", text(&model), "--json"]);
    assert_eq!(caught.stdout, again.stdout, "same journals, same report");
    // Without --model, nothing is re-run: the journals hold together.
    assert_eq!(agora_audit(&[buyer, seller]).status.code(), Some(0));
}
