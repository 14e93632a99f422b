//! Integration tests of the wallets crate (one binary, a module per area).

mod atomic_crash;
mod journal_crash;
mod signing;
