//! Integration tests of the `agora` binary and of the crates working together.

mod wallet_cli;
