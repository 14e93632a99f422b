//! Integration tests of the wallets crate (one binary, a module per area).

mod journal_crash;
mod signing;
