//! Integration tests of the `weather` crate, one binary (see STYLE.md).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod providers;
