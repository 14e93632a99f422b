//! Pay a peer through a spending policy and record it in a signed journal.
//!
//! Run: `cargo run -p wallets --example pay_within_policy`
//!
//! Prints the buyer's address, the signed EIP-3009 authorization for a 2.50 USDC
//! payment, the refusal of a 9.00 USDC payment that breaks the per-deal limit, and
//! the verified journal (two entries) written to a temporary directory.

use std::sync::Arc;

use wallets::{
    journal, Address, Eip712Domain, Journal, Limits, Payment, SpendingPolicy,
    TransferWithAuthorization, Wallet, B256,
};

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let buyer = Arc::new(Wallet::random());
    let seller: Address = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".parse()?;
    println!("buyer:   {}", buyer.address());

    // The buyer may spend at most 5 USDC a deal and 20 USDC a rolling day.
    let limits = Limits {
        per_deal: Some("5 USDC".parse()?),
        daily: Some("20 USDC".parse()?),
        ..Limits::default()
    };
    // The stablecoin's EIP-712 domain, laid out as USDC's (chain 31337, a dev token):
    // the policy signs payments in this domain only.
    let token = Eip712Domain::new("USD Coin", "2", 31337, Address([0x11; 20]));
    let policy = SpendingPolicy::open(dir.path().join("policy"), buyer.clone(), limits)?
        .pin_token(token.clone());
    let mut journal = Journal::open(dir.path().join("journal.jsonl"), buyer.clone())?;
    let agreement = wallets::keccak256("forecast for Lisbon, 2026-12-01..03, 2.50 USDC");
    let payment = |value: &str, nonce: B256| -> anyhow::Result<Payment> {
        Ok(Payment::Authorization {
            domain: token.clone(),
            transfer: TransferWithAuthorization {
                from: buyer.address(),
                to: seller,
                value: value.parse()?,
                valid_after: 0,
                valid_before: u64::MAX,
                nonce,
            },
        })
    };

    // The nonce is derived from the agreement, so a retry is the same payment.
    let nonce = TransferWithAuthorization::derive_nonce(buyer.address(), &agreement);
    let signed = policy.authorize(&payment("2.50", nonce)?)?;
    signed.verify()?;
    println!(
        "paid:    {} to {}",
        signed.payment.amount(),
        signed.payment.payee()
    );
    println!("sig:     {}", signed.signature);
    journal.append(
        "payment",
        serde_json::json!({ "agreement": agreement, "payment": signed }),
    )?;

    match policy.authorize(&payment("9 USDC", B256::random())?) {
        Ok(_) => anyhow::bail!("the policy should have refused 9 USDC"),
        Err(e) => {
            println!("refused: {e}");
            journal.append("refusal", serde_json::json!({ "reason": e.to_string() }))?;
        }
    }

    let report = journal::verify(journal.path(), Some(buyer.address()))?;
    println!(
        "journal: {} entries, head {}, verified",
        report.entries, report.head
    );
    Ok(())
}
