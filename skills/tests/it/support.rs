//! The shared model and engine of the integration tests.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use skills::llm::{GrammarLimits, LlmConfig, LlmEngine, ModelSpec, ModelStore, MODEL_PATH_ENV};

/// Where the tests keep the default model between runs.
pub(crate) fn model_cache() -> PathBuf {
    std::env::var_os("AGORA_MODEL_CACHE")
        .map_or_else(|| PathBuf::from("/var/cache/agora/models"), PathBuf::from)
}

/// The model under test: `$AGORA_MODEL_PATH`, else the default model, fetched through
/// [`ModelStore::ensure`] if it is not cached yet.
pub(crate) fn model_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(path) = std::env::var_os(MODEL_PATH_ENV) {
            return PathBuf::from(path);
        }
        let store = ModelStore::new(model_cache());
        store
            .ensure(&ModelSpec::smollm2_135m(), &mut |event| {
                eprintln!("model fetch: {event:?}")
            })
            .expect("fetching the default model")
    })
    .clone()
}

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
