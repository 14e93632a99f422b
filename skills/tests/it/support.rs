//! The shared model and engine of the integration tests.

use std::sync::{Arc, OnceLock};

pub(crate) use skills::llm::test_utils::{model_cache, model_path};
use skills::llm::{GrammarLimits, LlmConfig, LlmEngine};

/// Settings of the shared engine: 2 threads, 8 sequences of 512 tokens, small grammar
/// bounds so structured outputs stay short.
pub(crate) fn config() -> LlmConfig {
    LlmConfig::new(model_path())
        .with_threads(2)
        .with_max_sequences(8)
        .with_context_per_sequence(512)
        .with_grammar_limits(GrammarLimits {
            max_string_chars: 40,
            max_array_items: 3,
            max_fraction_digits: 2,
        })
}

/// The engine every test shares, as agents of one process do.
pub(crate) fn engine() -> Arc<LlmEngine> {
    static ENGINE: OnceLock<Arc<LlmEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| LlmEngine::shared(config()).expect("loading the model"))
        .clone()
}
