//! `agora audit`: replays payment journals, cross-checks them and matches payments
//! on chain (see `negotiation::audit`); with `--model`, re-runs every attested LLM
//! inference the journals' deliveries keep (see `llm::service::InferenceAudit`);
//! with `--html FILE`, writes the report as a page too (see `crate::audit_html`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use negotiation::audit::{audit, AuditReport, ChainCheck};
use registry::chain::Addresses;

/// Exit status when the journals were audited and hold discrepancies.
const DISCREPANCIES: u8 = 1;
/// Exit status on usage and I/O errors (clap uses it for bad arguments too).
const USAGE_OR_IO: u8 = 2;

/// `agora audit`.
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// Journal files to audit; the buyer's and the seller's journals of a deal given
    /// together are cross-checked.
    #[arg(required = true, value_name = "JOURNAL")]
    journals: Vec<PathBuf>,
    /// Print the report as JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Also write the report as a self-contained HTML page to FILE: a summary, each
    /// deal's timeline, every discrepancy marked at its entry (byte-identical for
    /// the same journals).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// JSON-RPC URL of a node to match each payment against the chain.
    #[arg(long, value_name = "URL", requires = "addresses")]
    rpc: Option<String>,
    /// The deployment's addresses.json (as `agora chain` writes it), with --rpc.
    #[arg(long, value_name = "FILE", requires = "rpc")]
    addresses: Option<PathBuf>,
    /// A model file (GGUF): re-run every attested inference found in the journals'
    /// deliveries with it, alone, and report each mismatch at its entry. Inferences
    /// of other models are left alone (and counted).
    #[cfg(feature = "llm")]
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
}

/// Runs the audit; exits 0 when clean, 1 on discrepancies, 2 on usage or I/O errors.
pub(crate) async fn run_audit(args: AuditArgs) -> Result<ExitCode> {
    match report(&args).await {
        Ok((text, clean)) => {
            print!("{text}");
            Ok(if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(DISCREPANCIES)
            })
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(USAGE_OR_IO))
        }
    }
}

/// The audit, re-running attested inferences with `--model` when given.
#[cfg(feature = "llm")]
async fn audit_or_rerun(args: &AuditArgs, chain: Option<&ChainCheck>) -> Result<AuditReport> {
    let Some(path) = &args.model else {
        return Ok(audit(&args.journals, chain).await?);
    };
    let config = llm::LlmConfig::new(path.clone());
    let engine = tokio::task::spawn_blocking(move || llm::LlmEngine::shared(config))
        .await?
        .with_context(|| format!("loading the model {}", path.display()))?;
    Ok(llm::service::rerun_journals(&args.journals, chain, engine).await?)
}

/// The audit (this build has no inference engine to re-run with).
#[cfg(not(feature = "llm"))]
async fn audit_or_rerun(args: &AuditArgs, chain: Option<&ChainCheck>) -> Result<AuditReport> {
    Ok(audit(&args.journals, chain).await?)
}

async fn report(args: &AuditArgs) -> Result<(String, bool)> {
    let chain = match (&args.rpc, &args.addresses) {
        (Some(rpc), Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let addresses: Addresses = serde_json::from_str(&text)
                .with_context(|| format!("{}: not an addresses file", path.display()))?;
            Some(ChainCheck::new(rpc.clone(), addresses))
        }
        _ => None,
    };
    let report = audit_or_rerun(args, chain.as_ref()).await?;
    if let Some(path) = &args.html {
        let page = crate::audit_html::render(&report)?;
        std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))?;
    }
    let text = if args.json {
        report.to_json()
    } else {
        report.to_table()
    };
    Ok((text, report.is_clean()))
}
