//! Integration tests of the `travel` crate, one binary (see STYLE.md), on the real
//! default model (see `llm::test_utils::model_path`).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod planner;
