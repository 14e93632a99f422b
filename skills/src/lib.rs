//! # skills
//!
//! Ready skills built on `agent-sdk`: local LLM inference (llama-cpp-2), negotiation
//! (buyer and seller strategies), weather and travel.
//!
//! Not built yet: this crate is the placeholder the workspace layout fixes, and it
//! exports nothing so far.
