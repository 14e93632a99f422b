//! `agora audit --html FILE`: the audit report as one self-contained HTML page.
//!
//! The page holds a summary (verdict, journals, deals, totals, the chain check and
//! every discrepancy, each a link to where it was found), each deal's timeline (the
//! entries of both parties' journals in time order: kind, time, amounts,
//! counterparty, transaction hashes) and the journals' other entries. Every entry
//! has an anchor (`j<journal>-e<index>`, journals numbered in the report's order),
//! and an entry with a discrepancy carries the class `discrepancy` and its reasons.
//!
//! Styles are inline, there is no script and no external asset. Every journal-derived
//! text goes through maud's escaping. Nothing about the run (time, host) enters
//! the page, so the same journals give a byte-identical file, as with the text
//! report. The journals are read again for their entries, as lines, without
//! verifying them: a tampered entry is shown as it is written, with what the audit
//! said about it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use negotiation::audit::{AuditReport, DealSummary, Discrepancy};
use serde_json::Value;
use wallets::journal::JournalEntry;
use wallets::{Address, Amount, B256};

const STYLE: &str = "
body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1b1f24;background:#fff}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:.5rem 0;width:100%}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}
code,.mono{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all}
.verdict{font-size:1.1rem;font-weight:600;padding:.5rem 1rem;border-radius:6px;display:inline-block}
.clean{background:#dafbe1;color:#116329}.dirty{background:#ffebe9;color:#a40e26}
tr.discrepancy,li.discrepancy{background:#ffebe9;outline:2px solid #cf222e}
.reason{color:#a40e26;font-weight:600}
:target{box-shadow:0 0 0 3px #0969da}
";

/// One line of a journal as the page shows it.
struct Row {
    /// The journal's number in the report.
    journal: usize,
    /// The entry's index (the line's, when it is not an entry).
    index: u64,
    /// The entry, or why the line is not one.
    entry: std::result::Result<JournalEntry, String>,
}

impl Row {
    fn anchor(&self) -> String {
        anchor(self.journal, self.index)
    }

    fn time(&self) -> u64 {
        self.entry.as_ref().map_or(0, |e| e.time)
    }
}

fn anchor(journal: usize, entry: u64) -> String {
    format!("j{journal}-e{entry}")
}

/// Reads a journal's lines (a torn final line, without its newline, is left out as
/// the audit leaves it out).
fn rows(journal: usize, path: &str) -> Result<Vec<Row>> {
    let text =
        std::fs::read_to_string(Path::new(path)).with_context(|| format!("reading {path}"))?;
    Ok(text
        .split_inclusive('\n')
        .filter(|line| line.ends_with('\n'))
        .zip(0u64..)
        .map(|(line, n)| {
            let entry = serde_json::from_str::<JournalEntry>(line.trim_end())
                .map_err(|e| format!("line {} is not an entry: {e}", n + 1));
            let index = entry.as_ref().map_or(n, |e| e.index);
            Row {
                journal,
                index,
                entry,
            }
        })
        .collect())
}

/// What the page shows of an entry's body: amounts, counterparties and
/// transaction hashes, in the body's order.
#[derive(Default)]
struct Facts {
    amounts: Vec<String>,
    parties: Vec<String>,
    transactions: Vec<String>,
}

impl Facts {
    fn of(entry: &JournalEntry) -> Self {
        let mut facts = Self::default();
        facts.walk(&entry.body, entry.signer, 0);
        facts
    }

    fn push(list: &mut Vec<String>, item: String) {
        if !list.contains(&item) {
            list.push(item);
        }
    }

    fn walk(&mut self, v: &Value, signer: Address, depth: u8) {
        if depth > 8 {
            return;
        }
        match v {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("price" | "value" | "amount" | "cumulativeAmount", Value::String(s)) => {
                            let shown = s
                                .parse::<u128>()
                                .map(|u| Amount::from_base_units(u).to_string())
                                .unwrap_or_else(|_| s.clone());
                            Self::push(&mut self.amounts, format!("{key} {shown}"));
                        }
                        (
                            "buyer" | "seller" | "payee" | "payer" | "from" | "to" | "by",
                            Value::String(s),
                        ) => {
                            if s.parse::<Address>().is_ok_and(|a| a != signer) {
                                Self::push(&mut self.parties, format!("{key} {s}"));
                            }
                        }
                        ("txHash", Value::String(s)) => {
                            Self::push(&mut self.transactions, s.clone())
                        }
                        _ => self.walk(value, signer, depth + 1),
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.walk(item, signer, depth + 1);
                }
            }
            _ => {}
        }
    }
}

/// The deal an entry is about: a channel order's id, else its agreement hash.
fn deal_of(entry: &JournalEntry) -> Option<B256> {
    ["orderId", "agreementHash"]
        .iter()
        .find_map(|key| entry.body.get(key)?.as_str()?.parse().ok())
}

/// Unix milliseconds as UTC.
fn utc(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || format!("{ms} ms"),
            |t| t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string(),
        )
}

/// The page for `report`, reading the journals it names for their entries.
///
/// # Errors
/// When a journal cannot be read.
pub(crate) fn render(report: &AuditReport) -> Result<String> {
    let numbers: BTreeMap<&str, usize> = report
        .journals
        .iter()
        .enumerate()
        .map(|(i, j)| (j.path.as_str(), i))
        .collect();
    let mut journals: Vec<Vec<Row>> = Vec::new();
    for (i, j) in report.journals.iter().enumerate() {
        journals.push(rows(i, &j.path)?);
    }
    // Reasons by entry anchor; where each discrepancy links to.
    let mut reasons: BTreeMap<String, Vec<&Discrepancy>> = BTreeMap::new();
    let mut links: Vec<(String, &Discrepancy)> = Vec::new();
    let present: BTreeSet<String> = journals.iter().flatten().map(Row::anchor).collect();
    for d in &report.discrepancies {
        let link = match (numbers.get(d.journal.as_str()), d.entry) {
            (Some(&j), Some(e)) => anchor(j, e),
            (Some(&j), None) => format!("j{j}"),
            (None, _) => "discrepancies".to_owned(),
        };
        reasons.entry(link.clone()).or_default().push(d);
        links.push((link, d));
    }
    let deals: BTreeSet<B256> = report.deals.iter().map(|d| d.agreement).collect();
    let mut timelines: BTreeMap<B256, Vec<&Row>> = BTreeMap::new();
    let mut others: Vec<Vec<&Row>> = vec![Vec::new(); journals.len()];
    for (j, rows) in journals.iter().enumerate() {
        for row in rows {
            let deal = row.entry.as_ref().ok().and_then(deal_of);
            match deal.filter(|d| deals.contains(d)) {
                Some(d) => timelines.entry(d).or_default().push(row),
                None => others[j].push(row),
            }
        }
    }
    for rows in timelines.values_mut() {
        rows.sort_by_key(|r| (r.time(), r.journal, r.index));
    }
    let entries: u64 = report.journals.iter().map(|j| j.entries_checked).sum();
    let total = report
        .deals
        .iter()
        .try_fold(Amount::ZERO, |sum, d| sum.checked_add(d.price))
        .map_or_else(|_| "overflow".to_owned(), |a| a.to_string());
    let clean = report.is_clean();
    let context = Page {
        report,
        reasons: &reasons,
        present: &present,
    };
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Agora audit report" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { "Agora audit report" }
                p #verdict .verdict .clean[clean] .dirty[!clean] {
                    @if clean { "Clean: no discrepancies" }
                    @else { (report.discrepancies.len()) " discrepancies" }
                }
                h2 { "Summary" }
                table #totals {
                    tr { th { "journals" } td { (report.journals.len()) } }
                    tr { th { "entries verified" } td { (entries) } }
                    tr { th { "deals" } td { (report.deals.len()) } }
                    tr { th { "deals matched" } td { (report.deals.iter().filter(|d| d.matched).count()) } }
                    tr { th { "total price of the deals" } td { (total) } }
                    @if !report.sales.is_empty() {
                        tr { th { "x402 sales" } td { (report.sales.len()) } }
                    }
                    tr { th { "chain" } td { (report.chain.note) } }
                    @if let Some(a) = &report.attestations {
                        tr { th { "attestations" } td { (a.name) ": " (a.checked) " checked, " (a.skipped) " left alone" } }
                    }
                }
                table #journals {
                    tr { th { "journal" } th { "signer" } th { "entries" } th { "verified" } th { "deals" } th { "matched" } th { "torn tail (bytes)" } }
                    @for (i, j) in report.journals.iter().enumerate() {
                        tr {
                            td { a href={ "#j" (i) } { (j.path) } }
                            td .mono { (j.signer.map_or_else(|| "-".to_owned(), |s| s.to_string())) }
                            td { (j.entries_checked) }
                            td { @if j.verified { "yes" } @else { strong .reason { "NO" } } }
                            td { (j.deals) }
                            td { (j.deals_matched) }
                            td { (j.torn_tail_bytes) }
                        }
                    }
                }
                @if !report.deals.is_empty() {
                    table #deals {
                        tr { th { "deal (agreement)" } th { "mode" } th { "price" } th { "stage" } th { "matched" } }
                        @for d in &report.deals {
                            tr {
                                td .mono { a href={ "#deal-" (d.agreement) } { (d.agreement) } }
                                td { (d.mode.as_str()) }
                                td { (d.price) }
                                td { (d.stage) }
                                td { @if d.matched { "yes" } @else { "no" } }
                            }
                        }
                    }
                }
                h2 #discrepancies { "Discrepancies" }
                @if links.is_empty() {
                    p { "None." }
                } @else {
                    ol {
                        @for (link, d) in &links {
                            li .discrepancy {
                                a href={ "#" (link) } {
                                    (d.journal)
                                    @if let Some(e) = d.entry { " entry " (e) }
                                }
                                ": " span .reason { (d.reason) }
                            }
                        }
                    }
                }
                h2 { "Deals" }
                @for d in &report.deals {
                    (deal(&context, d, timelines.get(&d.agreement).map_or(&[][..], Vec::as_slice)))
                }
                h2 { "Journals" }
                @for (i, j) in report.journals.iter().enumerate() {
                    section id={ "j" (i) } {
                        h3 { (j.path) }
                        (context.reasons_at(&format!("j{i}")))
                        @let unplaced = context.unplaced(i);
                        @if !unplaced.is_empty() {
                            ul {
                                @for (e, d) in unplaced {
                                    li.discrepancy id=(anchor(i, e)) {
                                        "entry " (e) " (not in the file): " span .reason { (d.reason) }
                                    }
                                }
                            }
                        }
                        @if others[i].is_empty() {
                            p { "Every entry belongs to a deal above." }
                        } @else {
                            p { "Entries outside the deals above:" }
                            (timeline(&context, &others[i]))
                        }
                    }
                }
            }
        }
    };
    Ok(page.into_string())
}

/// What rendering an entry needs to know about the report.
struct Page<'a> {
    report: &'a AuditReport,
    reasons: &'a BTreeMap<String, Vec<&'a Discrepancy>>,
    present: &'a BTreeSet<String>,
}

impl Page<'_> {
    /// The reasons of the discrepancies anchored at `anchor`, if any.
    fn reasons_at(&self, anchor: &str) -> Markup {
        html! {
            @if let Some(found) = self.reasons.get(anchor) {
                ul {
                    @for d in found {
                        li .reason { (d.reason) }
                    }
                }
            }
        }
    }

    /// Discrepancies about entries of journal `j` that its file does not hold.
    fn unplaced(&self, j: usize) -> Vec<(u64, &Discrepancy)> {
        let path = self.report.journals.get(j).map(|s| s.path.as_str());
        self.report
            .discrepancies
            .iter()
            .filter(|d| Some(d.journal.as_str()) == path)
            .filter_map(|d| d.entry.map(|e| (e, d)))
            .filter(|(e, _)| !self.present.contains(&anchor(j, *e)))
            .collect()
    }

    fn journal_path(&self, j: usize) -> &str {
        self.report.journals.get(j).map_or("", |s| s.path.as_str())
    }
}

fn deal(context: &Page<'_>, d: &DealSummary, rows: &[&Row]) -> Markup {
    let role = |j: usize| {
        let path = Some(context.journal_path(j));
        if d.buyer_journal.as_deref() == path {
            "buyer"
        } else if d.seller_journal.as_deref() == path {
            "seller"
        } else {
            ""
        }
    };
    html! {
        section.deal id={ "deal-" (d.agreement) } {
            h3 .mono { (d.agreement) }
            p {
                (d.mode.as_str()) ", " (d.price) ", " (d.stage)
                @if d.matched { ", matched" } @else { ", not matched" }
                br;
                "buyer " code { (d.buyer) } ", seller " code { (d.seller) }
                @if let Some(c) = d.channel_agreement { br; "channel agreement " code { (c) } }
            }
            @if rows.is_empty() {
                p { "No entries of this deal in the given journals." }
            } @else {
                (timeline_with(context, rows, &role))
            }
        }
    }
}

fn timeline(context: &Page<'_>, rows: &[&Row]) -> Markup {
    timeline_with(context, rows, &|_| "")
}

fn timeline_with(
    context: &Page<'_>,
    rows: &[&Row],
    role: &dyn Fn(usize) -> &'static str,
) -> Markup {
    html! {
        table .timeline {
            tr { th { "entry" } th { "time" } th { "kind" } th { "amounts" } th { "counterparty" } th { "transactions" } }
            @for row in rows {
                @let id = row.anchor();
                @let found = context.reasons.contains_key(&id);
                tr class=[found.then_some("discrepancy")] id=(id) {
                    td {
                        a href={ "#j" (row.journal) } { (context.journal_path(row.journal)) }
                        " #" (row.index)
                        @let r = role(row.journal);
                        @if !r.is_empty() { " (" (r) ")" }
                    }
                    @match &row.entry {
                        Ok(e) => {
                            @let facts = Facts::of(e);
                            td { (utc(e.time)) }
                            td { (e.kind) }
                            td { @for a in &facts.amounts { (a) br; } }
                            td .mono { @for p in &facts.parties { (p) br; } }
                            td .mono { @for t in &facts.transactions { (t) br; } }
                        }
                        Err(why) => {
                            td colspan="5" { (why) }
                        }
                    }
                }
                @if found {
                    tr .discrepancy {
                        td colspan="6" { (context.reasons_at(&id)) }
                    }
                }
            }
        }
    }
}
